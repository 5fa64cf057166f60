"""CRD structural-schema validation, pruning and defaulting, as apiextensions-apiserver does it.

Contract:
- `validate(body) -> list[str]`: schema violations of a custom resource body, each `"<field path>: <message>"`
  (e.g. `spec.tfReplicaSpecs.Worker.replicas: Invalid value: "two": ... must be of type integer`); the CRD is
  picked by apiVersion/kind from the copies shipped in `kubesim/crds/`.
- `pruned_fields(body) -> list[str]`: paths of unknown fields a real server would drop (`spec.foo`).
- `check(res, body) -> SchemaResult`: what the server uses: pruned + defaulted object, `StatusCause`s, pruned paths.
Each takes `dialect=` ("training-operator" by default, or "tf-operator"): the older tf-operator's TFJob CRD
also accepts the run-policy fields directly under `spec` (seeds 000-002), which the v1.9.0 CRD would prune.
Supported keywords: type, nullable, properties, additionalProperties, items, required, enum, minimum/maximum
(+exclusive), minLength/maxLength, minItems/maxItems, minProperties/maxProperties, pattern, format
int32/int64 ranges, default, x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields,
x-kubernetes-embedded-resource. CEL rules (x-kubernetes-validations) are not evaluated.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubesim.store import COMMANDS, JOBSETS, TFJOBS, VCJOBS, Resource, clone

CRD_DIR = Path(__file__).parent / "crds"
CRD_FILES: dict[Resource, str] = {
    TFJOBS: "kubeflow.org_tfjobs.yaml",
    VCJOBS: "batch.volcano.sh_jobs.yaml",
    COMMANDS: "bus.volcano.sh_commands.yaml",
    JOBSETS: "jobset.x-k8s.io_jobsets.yaml",
}

# ObjectMeta fields a client may set and the server keeps on the root object of a custom resource.
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
})
# Embedded resources (x-kubernetes-embedded-resource) keep only these metadata fields.
EMBEDDED_META_FIELDS = frozenset({"name", "namespace", "labels", "annotations", "finalizers", "generateName"})

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class SchemaResult:
    """Outcome of checking one object against its CRD schema."""

    object: dict[str, Any]
    causes: list[dict[str, str]] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)


# kubeflow/tf-operator's TFJobSpec (v1, before the run policy moved under spec.runPolicy) had these directly.
TF_OPERATOR_SPEC_FIELDS: dict[str, dict[str, Any]] = {
    "activeDeadlineSeconds": {"type": "integer", "format": "int64"},
    "backoffLimit": {"type": "integer", "format": "int32"},
    "cleanPodPolicy": {"type": "string"},
    "ttlSecondsAfterFinished": {"type": "integer", "format": "int32"},
}


@functools.cache
def crd_schema(res: Resource, dialect: str = "training-operator") -> dict[str, Any] | None:
    """The openAPIV3Schema of the served version of `res` (for `dialect`), or None if no CRD is shipped."""
    schema = _upstream_schema(res)
    if schema is None or res != TFJOBS or dialect != "tf-operator":
        return schema
    older = copy.deepcopy(schema)
    older["properties"]["spec"]["properties"].update(copy.deepcopy(TF_OPERATOR_SPEC_FIELDS))
    return older


@functools.cache
def _upstream_schema(res: Resource) -> dict[str, Any] | None:
    filename = CRD_FILES.get(res)
    if filename is None:
        return None
    with open(CRD_DIR / filename, encoding="utf-8") as fh:
        crd = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    for version in crd["spec"]["versions"]:
        if version["name"] == res.version:
            schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
            return schema
    return None


def crd_document(res: Resource) -> dict[str, Any] | None:
    """The whole CRD manifest for `res` (for discovery details such as shortNames)."""
    filename = CRD_FILES.get(res)
    if filename is None:
        return None
    with open(CRD_DIR / filename, encoding="utf-8") as fh:
        loaded: dict[str, Any] = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return loaded


def resource_of(body: dict[str, Any]) -> Resource | None:
    """The custom Resource a body declares through apiVersion/kind."""
    for res in CRD_FILES:
        if body.get("apiVersion") == res.api_version and body.get("kind") == res.kind:
            return res
    return None


def check(res: Resource, body: dict[str, Any], *, dialect: str = "training-operator",
          owned: bool = False) -> SchemaResult:
    """Prune unknown fields, apply defaults and validate `body` against the CRD schema of `res`.

    `owned=True`: the caller gives `body` up (the API server, for a body it decoded): it is not copied first,
    so it may be changed, and the result may share parts of it."""
    obj = body if owned else clone(body)
    result = SchemaResult(obj)
    schema = crd_schema(res, dialect)
    if schema is None:
        return result
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        for key in sorted(set(meta) - OBJECT_META_FIELDS):
            result.pruned.append(f"metadata.{key}")
            del meta[key]
    root_props = schema.get("properties", {})
    for key in list(obj):
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if key not in root_props:
            result.pruned.append(key)
            del obj[key]
            continue
        value = obj[key]
        new_value, keep = _walk(value, root_props[key], key, result)
        if keep:
            obj[key] = new_value
        else:
            del obj[key]
    _apply_default_properties(obj, schema, "", result, skip=("apiVersion", "kind", "metadata"))
    for name in schema.get("required", []):
        if name not in obj:
            result.causes.append(_cause(name, "Required value", "FieldValueRequired"))
    return result


def validate(body: dict[str, Any], *, dialect: str = "training-operator") -> list[str]:
    """Schema violations of a custom resource body as `"path: message"` strings ([] = valid)."""
    res = resource_of(body)
    if res is None:
        return [f"apiVersion/kind: no CRD shipped for {body.get('apiVersion')!r}/{body.get('kind')!r}"]
    return [f"{c['field']}: {c['message']}" for c in check(res, body, dialect=dialect).causes]


def pruned_fields(body: dict[str, Any], *, dialect: str = "training-operator") -> list[str]:
    """Field paths a real API server would prune from this body as unknown."""
    res = resource_of(body)
    if res is None:
        return []
    return check(res, body, dialect=dialect).pruned


# ----- the walker ------------------------------------------------------------------------------------------


def _cause(path: str, message: str, reason: str = "FieldValueInvalid") -> dict[str, str]:
    return {"reason": reason, "message": message, "field": path}


def _go_repr(value: Any) -> str:
    """Render a value the way apimachinery's field.Invalid prints it."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_repr(v)}" for k, v in value.items()) + "]"
    return "[]interface {}{...}" if isinstance(value, list) else repr(value)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: Any, expected: str) -> bool:
    actual = _type_name(value)
    if expected == "number":
        return actual in ("number", "integer")
    if expected == "integer" and isinstance(value, float) and value.is_integer():
        return True
    return actual == expected


def _walk(value: Any, schema: dict[str, Any], path: str, result: SchemaResult) -> tuple[Any, bool]:
    """Validate/prune one value; returns (new value, keep?)."""
    if value is None:
        if schema.get("nullable"):
            return None, True
        # Structural schemas drop nulls of non-nullable fields instead of rejecting them.
        return None, False
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            result.causes.append(_cause(path, f"Invalid value: {_go_repr(value)}: {path} in body must be of "
                                              "type integer,string: " + json.dumps(_type_name(value))))
        return value, True
    expected = schema.get("type")
    if expected and not _type_ok(value, expected):
        result.causes.append(_cause(path, f'Invalid value: "{_type_name(value)}": {path} in body must be of type '
                                          f'{expected}: "{_type_name(value)}"', "FieldValueTypeInvalid"))
        return value, True
    if expected == "integer" and isinstance(value, float):
        value = int(value)
    if isinstance(value, dict):
        value = _walk_object(value, schema, path, result)
    elif isinstance(value, list):
        value = _walk_array(value, schema, path, result)
    _check_scalar(value, schema, path, result)
    return value, True


def _walk_object(value: dict[str, Any], schema: dict[str, Any], path: str, result: SchemaResult) -> dict[str, Any]:
    props: dict[str, Any] = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    embedded = bool(schema.get("x-kubernetes-embedded-resource"))
    out: dict[str, Any] = {}
    for key, item in value.items():
        child = f"{path}.{key}" if path else key
        if embedded and key == "metadata" and isinstance(item, dict):
            kept = {k: v for k, v in item.items() if k in EMBEDDED_META_FIELDS}
            result.pruned.extend(f"{child}.{k}" for k in item if k not in EMBEDDED_META_FIELDS)
            out[key] = kept
            continue
        if embedded and key in ("apiVersion", "kind") and key not in props:
            out[key] = item
            continue
        if key in props:
            sub_schema = props[key]
        elif isinstance(additional, dict):
            sub_schema = additional
        elif additional is True or preserve:
            out[key] = item
            continue
        else:
            result.pruned.append(child)
            continue
        new_item, keep = _walk(item, sub_schema, child, result)
        if keep:
            out[key] = new_item
    _apply_default_properties(out, schema, path, result)
    for name in schema.get("required", []):
        if name not in out:
            result.causes.append(_cause(f"{path}.{name}" if path else name, "Required value", "FieldValueRequired"))
    if "minProperties" in schema and len(out) < schema["minProperties"]:
        result.causes.append(_cause(path, f"Invalid value: {len(out)}: {path} in body should have at least "
                                          f"{schema['minProperties']} properties"))
    if "maxProperties" in schema and len(out) > schema["maxProperties"]:
        result.causes.append(_cause(path, f"Too many: {len(out)}: must have at most {schema['maxProperties']} items",
                                    "FieldValueTooMany"))
    return out


def _walk_array(value: list[Any], schema: dict[str, Any], path: str, result: SchemaResult) -> list[Any]:
    items_schema = schema.get("items")
    out: list[Any] = []
    for index, item in enumerate(value):
        if isinstance(items_schema, dict):
            new_item, keep = _walk(item, items_schema, f"{path}[{index}]", result)
            out.append(new_item if keep else item)
        else:
            out.append(item)
    if "minItems" in schema and len(out) < schema["minItems"]:
        result.causes.append(_cause(path, f"Invalid value: {len(out)}: {path} in body should have at least "
                                          f"{schema['minItems']} items"))
    if "maxItems" in schema and len(out) > schema["maxItems"]:
        result.causes.append(_cause(path, f"Too many: {len(out)}: must have at most {schema['maxItems']} items",
                                    "FieldValueTooMany"))
    return out


def _apply_default_properties(obj: dict[str, Any], schema: dict[str, Any], path: str, result: SchemaResult,
                              skip: tuple[str, ...] = ()) -> None:
    for key, default in _defaults(schema):
        if key in skip or key in obj:
            continue
        obj[key] = clone(default)


# id(schema node) -> (the node, its properties that carry a default): a PodSpec node has dozens of properties
# and almost none with a default, so scanning them all for every object checked was most of the walk.
_DEFAULTS: dict[int, tuple[dict[str, Any], tuple[tuple[str, Any], ...]]] = {}


def _defaults(schema: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    cached = _DEFAULTS.get(id(schema))
    if cached is None or cached[0] is not schema:  # the node itself is kept, so its id cannot be reused
        defaults = tuple((key, sub["default"]) for key, sub in (schema.get("properties") or {}).items()
                         if isinstance(sub, dict) and "default" in sub)
        cached = _DEFAULTS[id(schema)] = (schema, defaults)
    return cached[1]


def _check_scalar(value: Any, schema: dict[str, Any], path: str, result: SchemaResult) -> None:
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_go_repr(v) for v in schema["enum"])
        result.causes.append(_cause(path, f"Unsupported value: {_go_repr(value)}: supported values: {supported}",
                                    "FieldValueNotSupported"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, schema, path, result)
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            result.causes.append(_cause(path, f"Too long: may not be more than {schema['maxLength']} bytes",
                                        "FieldValueTooLong"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            result.causes.append(_cause(path, f"Invalid value: {_go_repr(value)}: {path} in body should be at least "
                                              f"{schema['minLength']} chars long"))
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            result.causes.append(_cause(path, f"Invalid value: {_go_repr(value)}: {path} in body should match "
                                              f"'{schema['pattern']}'"))


def _check_number(value: float, schema: dict[str, Any], path: str, result: SchemaResult) -> None:
    if "minimum" in schema:
        low = schema["minimum"]
        if value < low or (schema.get("exclusiveMinimum") is True and value == low):
            op = "greater than" if schema.get("exclusiveMinimum") is True else "greater than or equal to"
            result.causes.append(_cause(path, f"Invalid value: {_go_repr(value)}: {path} in body should be {op} {low}"))
    if "maximum" in schema:
        high = schema["maximum"]
        if value > high or (schema.get("exclusiveMaximum") is True and value == high):
            op = "less than" if schema.get("exclusiveMaximum") is True else "less than or equal to"
            result.causes.append(_cause(path, f"Invalid value: {_go_repr(value)}: {path} in body should be {op} {high}"))
    bounds = {"int32": _INT32, "int64": _INT64}.get(schema.get("format", ""))
    if bounds and isinstance(value, int) and not bounds[0] <= value <= bounds[1]:
        result.causes.append(_cause(path, f"Invalid value: {_go_repr(value)}: {path} in body must be of type "
                                          f"{schema['format']}: {_go_repr(value)}"))


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


__all__ = ["CRD_DIR", "SchemaResult", "check", "crd_document", "crd_schema", "pruned_fields", "resource_of",
           "validate"]
