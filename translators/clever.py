"""The legacy Clever tfjob-admin API: a tolerant reader into JobSpec and the canonical renderer.

Reading (DESIGN §1): generous in spelling, strict in meaning. Accepted spellings:
`environment`/`enviroment`/`env`; `workdir`/`workerdir`/`workDir`; `count`/`conut`;
`resource`/`resources`; numbers as JSON numbers or strings; `args` as a list or one string split
like a shell (`shlex.split`); environment as `K=V` pairs separated by `,` `;` or newlines, a JSON
object, or a list of `K=V` strings; replicas as top-level `type`/`count` (+ `cpu`/`memory`/`gpu`),
as a list `replicas: [{type, count, resource: {cpu, memory, gpu}}]`, or wrapped
`replicas: {count, replicas: [...]}` (the outer `count` must be a whole number and is otherwise
ignored: the seed's own example is ambiguous about it). Top-level `cpu`/`memory`/`gpu` are the
defaults of replicas that give none. A body shaped like our own response (`{metadata, spec,
status}`) is read from its `spec` (name from `metadata.name`). Unknown keys are ignored; a known
key with the wrong JSON type is an error. When two spellings of one field disagree, that is an error.

Canonical spec decisions:
- replicas are sorted chief, worker, ps, evaluator; a type with count 0 is kept (the user asked for
  it, the seed's example has `ps` with count 0) but left out of Kubernetes bodies, which would
  otherwise carry `replicas: 0` specs/tasks. At least one chief or worker must have count ≥ 1.
- quantities keep the user's suffix, number normalised (`translators.quantity`). cpu must be a
  multiple of 1m, memory a whole number of bytes (`"2048m"` is 2.048 bytes: refused).
- environment keeps the user's order; names are C identifiers; `TF_CONFIG` (TensorFlow's cluster
  spec, which every backend writes) is refused, and so is `CHECKPOINT_DIR` / `EVENT_DIR` /
  `MODEL_DIR` / `LOG_DIR` when the matching directory field is set (the gateway sets those).
- runtime is stored as the catalog key it matched (spaces/underscores/case ignored).

Rendering: the seed's response object, valid JSON. `spec.environment` is the legacy string
`"K=V,K2=V2"`; because a value may itself contain `,`, the exact list is also given as the extra
field `spec.environmentList` (`["K=V", ...]`, accepted on input as a list). `spec.workerdir` echoes
`workdir` for clients written against the seed's get/create examples. Counts and gpu are strings.

Updates (DESIGN §4): `parse_update` applies a PATCH body to the current spec; `changed_fields` names
what changed in legacy words.

The reader knows no backend: `read_create` / `read_update` are the legacy reader alone. What one
backend cannot run although the reader accepts it (variables its controller sets, say) is that
backend's `check` (translators.backends). FACADES kept for the gateway, which calls them today, each
resolving the cluster's backend through the registry and adding nothing: `parse_create` /
`parse_update` (the reader, then `JobBackend.check`) and `classify_update(old, new, profile=)`
(`JobBackend.classify_update`: which changes a live object takes in place).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from translators.backends.base import UpdateKind
from translators.backends.registry import backend_for
from translators.errors import FieldError, NotTranslatable, SpecError
from translators.labels import run_policy_to_dict, spec_to_json
from translators.naming import namespace_for
from translators.quantity import QuantityError, parse_quantity
from translators.spec import (
    DIRECTORY_ENV,
    REPLICA_TYPES,
    ClusterProfile,
    JobIdentity,
    JobSpec,
    JobStatus,
    Replica,
    ReplicaStatus,
    ReplicaType,
    Resources,
    RunPolicy,
    resolve_runtime,
)

MAX_NAME_LENGTH = 63
MAX_DESCRIPTION_LENGTH = 1024
MAX_PATH_LENGTH = 4096
# The spec is stored as one annotation; Kubernetes allows 256 KiB of annotations per object.
MAX_SPEC_BYTES = 200_000
MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")
# NUL and the C0/C1-free controls other than tab, newline and carriage return, DEL, and lone surrogates
# (which no UTF-8 body can carry, but a caller of these pure functions might).
_FORBIDDEN_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# TensorFlow's cluster spec is the gateway's to write, on every backend.
RESERVED_ENV = frozenset({"TF_CONFIG"})
_TYPE_ALIASES: dict[str, ReplicaType] = {t: t for t in REPLICA_TYPES} | {"master": "chief"}
_TYPE_ORDER = {t: i for i, t in enumerate(REPLICA_TYPES)}

_MISSING = object()


@dataclass
class _Errors:
    fields: list[FieldError] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.fields.append(FieldError(path, message))

    def raise_if_any(self) -> None:
        if self.fields:
            first = self.fields[0]
            # The count comes first: after the first message (which may end in a list, e.g. the known
            # runtimes) "and 2 more" would read as part of that list.
            count = f" ({len(self.fields)} problems, all in details.fields)" if len(self.fields) > 1 else ""
            where = f"{first.path}: " if first.path else ""
            raise SpecError(f"invalid job{count}: {where}{first.message}", fields=list(self.fields))


class _Fail(Exception):
    """Internal: a field could not be read; its FieldError is already recorded."""


# ---------------------------------------------------------------------------------------------
# Small typed readers: each returns the value or records an error and raises _Fail.


def _pick(body: dict[str, Any], errors: _Errors, *keys: str) -> tuple[str, Any]:
    """The first present spelling of a field and its value; disagreeing spellings are an error."""
    present = [(key, body[key]) for key in keys if key in body]
    if not present:
        return keys[0], _MISSING
    key, value = present[0]
    for other_key, other in present[1:]:
        if other != value:
            errors.add(other_key, f"conflicts with {key!r}: give the field once")
            raise _Fail
    return key, value


def _whole(value: Any, path: str, errors: _Errors, *, minimum: int = 0, maximum: int = MAX_INT32) -> int:
    """A JSON integer or a string of ASCII digits (`"1_0"`, `"２"`, `"1.0"` and `2.0` are not counts)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _ASCII_DIGITS.fullmatch(value.strip(" ")):
        number = int(value.strip(" "))
    if number is None:
        errors.add(path, f"must be a whole number (a JSON integer or a string of the digits 0-9), "
                         f"got {_shown(value)}")
        raise _Fail
    if number < minimum or number > maximum:
        errors.add(path, f"must be between {minimum} and {maximum}, got {_shown(value)}")
        raise _Fail
    return number


def _shown(value: Any) -> str:
    """A client value quoted in a message, cut short: an error must not echo a megabyte back."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _free_text(value: Any, path: str, errors: _Errors) -> str:
    """A string that may hold any text but NUL and control characters (tab and newlines allowed)."""
    text = _string(value, path, errors)
    bad = _FORBIDDEN_IN_TEXT.search(text)
    if bad is not None:
        errors.add(path, f"must not contain the control character U+{ord(bad.group()):04X}")
        raise _Fail
    return text


def _string(value: Any, path: str, errors: _Errors) -> str:
    if not isinstance(value, str):
        errors.add(path, f"must be a string, got {json_type(value)}")
        raise _Fail
    return value


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value, for messages ("a JSON object, not array")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _path_value(value: Any, path: str, errors: _Errors, profile: ClusterProfile, *, file: bool = False) -> str:
    if value is None:
        return ""
    text = _string(value, path, errors)
    if text == "" and not file:
        return ""
    problems = []
    if not text.startswith("/"):
        problems.append("must be an absolute path (start with '/')")
    if ".." in text.split("/"):
        problems.append("must not contain '..' segments")
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in text):
        problems.append("must not contain control characters")
    if len(text) > MAX_PATH_LENGTH:
        problems.append(f"must be at most {MAX_PATH_LENGTH} characters")
    if file and text.endswith("/"):
        problems.append("must name a file, not a directory")
    if not problems and profile.path_root:
        root = posixpath.normpath(profile.path_root)
        normal = posixpath.normpath(text)
        if root != "/" and normal != root and not normal.startswith(root + "/"):
            problems.append(f"must be under {profile.path_root}")
    if problems:
        errors.add(path, "; ".join(problems))
        raise _Fail
    return text


def _quantity(value: Any, path: str, errors: _Errors, *, kind: Literal["cpu", "memory"]) -> str:
    try:
        quantity = parse_quantity(value)
    except QuantityError as e:
        example = '"500m" or "2"' if kind == "cpu" else '"512Mi" or "2Gi"'
        errors.add(path, f"{e}; expected e.g. {example}")
        raise _Fail from e
    if quantity.value <= 0:
        errors.add(path, f"must be greater than zero, got {quantity.text!r}")
        raise _Fail
    if kind == "cpu" and quantity.value != quantity.value.quantize(Decimal("0.001")):
        errors.add(path, f"cpu has a precision of 1m, got {quantity.text!r}")
        raise _Fail
    if kind == "memory" and quantity.value != quantity.value.to_integral_value():
        errors.add(path, f"memory must be a whole number of bytes, got {quantity.text!r} "
                         "(m means milli: did you mean Mi?)")
        raise _Fail
    return quantity.text


# ---------------------------------------------------------------------------------------------
# Field readers


def _read_name(value: Any, errors: _Errors) -> str:
    name = _string(value, "name", errors)
    problems = []
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        problems.append(f"must be 1 to {MAX_NAME_LENGTH} characters")
    if name != name.strip():
        problems.append("must not start or end with whitespace")
    if not name.isprintable() or "/" in name:
        problems.append("must not contain '/' or control characters")
    if problems:
        errors.add("name", "; ".join(problems))
        raise _Fail
    return name


def _read_description(value: Any, errors: _Errors) -> str:
    if value is None:
        return ""
    text = _free_text(value, "description", errors)
    if len(text) > MAX_DESCRIPTION_LENGTH:
        errors.add("description", f"must be at most {MAX_DESCRIPTION_LENGTH} characters")
        raise _Fail
    return text


def _read_runtime(value: Any, errors: _Errors, profile: ClusterProfile) -> str:
    text = _string(value, "runtime", errors)
    key = resolve_runtime(text, profile)
    if key is None:
        known = ", ".join(sorted(profile.runtimes)) or "none configured"
        errors.add("runtime", f"unknown runtime {_shown(text)} on cluster {profile.id!r}; known runtimes: {known}")
        raise _Fail
    return key


def _read_args(value: Any, path: str, errors: _Errors) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        _free_text(value, path, errors)
        try:
            return tuple(shlex.split(value))
        except ValueError as e:
            errors.add(path, f"cannot split into arguments like a shell would: {e}")
            raise _Fail from e
    if isinstance(value, list):
        result = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                result.append(_free_text(item, f"{path}[{i}]", errors))
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                result.append(str(item))
            else:
                errors.add(f"{path}[{i}]", f"must be a string, got {json_type(item)}")
                raise _Fail
        return tuple(result)
    errors.add(path, f"must be a list of strings or one string, got {json_type(value)}")
    raise _Fail


def _env_scalar(value: Any, path: str, errors: _Errors) -> str:
    if isinstance(value, str):
        return _free_text(value, path, errors)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    errors.add(path, f"environment values must be strings, got {json_type(value)}")
    raise _Fail


def _read_environment(value: Any, path: str, errors: _Errors) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str, str]] = []  # (name, value, path of the entry)
    if value is None:
        return ()
    if isinstance(value, str):
        _free_text(value, path, errors)
        for piece in re.split(r"[,;\n]", value):
            piece = piece.strip()
            if not piece:
                continue
            if "=" not in piece:
                errors.add(path, f"expected KEY=VALUE, got {_shown(piece)}")
                raise _Fail
            key, _, val = piece.partition("=")
            pairs.append((key.strip(), val.strip(), path))
    elif isinstance(value, dict):
        for key, val in value.items():
            pairs.append((key, _env_scalar(val, f"{path}.{key}", errors), f"{path}.{key}"))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str) or "=" not in item:
                errors.add(f"{path}[{i}]", f"expected a \"KEY=VALUE\" string, got {_shown(item)}")
                raise _Fail
            key, _, val = _free_text(item, f"{path}[{i}]", errors).partition("=")
            pairs.append((key.strip(), val, f"{path}[{i}]"))
    else:
        errors.add(path, f"must be a \"K=V,K2=V2\" string, an object or a list, got {json_type(value)}")
        raise _Fail
    seen: set[str] = set()
    result = []
    for key, val, where in pairs:
        if not ENV_NAME_RE.match(key):
            errors.add(where, f"invalid environment variable name {_shown(key)}: use letters, digits and '_', "
                              "not starting with a digit")
            raise _Fail
        if key in RESERVED_ENV:
            errors.add(where, f"{key} is set by the gateway/operator and cannot be given")
            raise _Fail
        if key in seen:
            errors.add(where, f"environment variable {key} given twice")
            raise _Fail
        seen.add(key)
        result.append((key, val))
    return tuple(result)


def _exact_environment(body: dict[str, Any], value: Any) -> Any:
    """Our rendered `environmentList` instead of the lossy string when the string is unedited."""
    exact = body.get("environmentList")
    if (isinstance(value, str) and isinstance(exact, list) and all(isinstance(x, str) for x in exact)
            and ",".join(exact) == value):
        return exact
    return value


def _read_run_policy(body: dict[str, Any], errors: _Errors, current: RunPolicy) -> RunPolicy:
    values: dict[str, Any] = {}

    def read(key: str, attr: str, reader: Any) -> None:
        if key not in body:
            return
        raw = body[key]
        try:
            values[attr] = None if raw is None else reader(raw)
        except _Fail:
            pass

    def enum(key: str, options: tuple[str, ...]) -> Any:
        def reader(raw: Any) -> str:
            text = _string(raw, key, errors)
            for option in options:
                if option.casefold() == text.strip().casefold():
                    return option
            shown = ", ".join(repr(o) for o in options)
            errors.add(key, f"must be one of {shown}, got {_shown(text)}")
            raise _Fail
        return reader

    read("activeDeadlineSeconds", "active_deadline_seconds",
         lambda v: _whole(v, "activeDeadlineSeconds", errors, minimum=1, maximum=MAX_INT64))
    read("ttlSecondsAfterFinished", "ttl_seconds_after_finished",
         lambda v: _whole(v, "ttlSecondsAfterFinished", errors))
    read("backoffLimit", "backoff_limit", lambda v: _whole(v, "backoffLimit", errors))
    read("cleanPodPolicy", "clean_pod_policy", enum("cleanPodPolicy", ("All", "Running", "None")))
    read("successPolicy", "success_policy", enum("successPolicy", ("", "AllWorkers")))
    return replace(current, **values)


# ---------------------------------------------------------------------------------------------
# Replicas


def _read_type(value: Any, path: str, errors: _Errors) -> ReplicaType:
    text = _string(value, path, errors)
    replica_type = _TYPE_ALIASES.get(text.strip().lower())
    if replica_type is None:
        errors.add(path, f"unknown replica type {_shown(text)}; use one of {', '.join(REPLICA_TYPES)}")
        raise _Fail
    return replica_type


@dataclass
class _ResourceDefaults:
    """cpu/memory/gpu found at one level (replica resource, replica, top level); None when absent."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int | None = None
    failed: set[str] = field(default_factory=set)  # keys present but invalid (already reported)


def _read_resource_level(obj: dict[str, Any], prefix: str, errors: _Errors) -> _ResourceDefaults:
    found = _ResourceDefaults()
    for key in ("cpu", "memory", "gpu"):
        if key not in obj or obj[key] is None:
            continue
        path = f"{prefix}{key}"
        try:
            if key == "gpu":
                found.gpu = _whole(obj[key], path, errors)
            else:
                setattr(found, key, _quantity(obj[key], path, errors, kind="cpu" if key == "cpu" else "memory"))
        except _Fail:
            found.failed.add(key)
    return found


def _merge_resources(path: str, errors: _Errors, *levels: _ResourceDefaults | Resources | None) -> Resources:
    cpu = next((lv.cpu for lv in levels if lv is not None and lv.cpu is not None), None)
    memory = next((lv.memory for lv in levels if lv is not None and lv.memory is not None), None)
    gpu = next((lv.gpu for lv in levels if lv is not None and lv.gpu is not None), 0)
    if any(isinstance(lv, _ResourceDefaults) and lv.failed for lv in levels):
        raise _Fail
    missing = [k for k, v in (("cpu", cpu), ("memory", memory)) if v is None]
    for key in missing:
        errors.add(f"{path}.{key}", f"{key} is required (here or as the top-level default {key!r})")
    if cpu is None or memory is None:
        raise _Fail
    return Resources(cpu=cpu, memory=memory, gpu=gpu)


def _read_replica_entry(item: Any, path: str, errors: _Errors, defaults: _ResourceDefaults,
                        seen: dict[str, str], previous: dict[ReplicaType, Resources]) -> Replica:
    if not isinstance(item, dict):
        errors.add(path, f"must be an object {{type, count, resource}}, got {json_type(item)}")
        raise _Fail
    if "type" not in item or item["type"] is None:
        errors.add(f"{path}.type", f"required: one of {', '.join(REPLICA_TYPES)}")
        raise _Fail
    replica_type = _read_type(item["type"], f"{path}.type", errors)
    if replica_type in seen:
        errors.add(f"{path}.type", f"replica type {replica_type!r} given twice (also at {seen[replica_type]})")
        raise _Fail
    seen[replica_type] = path
    count_key, count_raw = _pick(item, errors, "count", "conut")
    count = 1 if count_raw is _MISSING or count_raw is None else _whole(count_raw, f"{path}.{count_key}", errors)
    resource_key, resource_raw = _pick(item, errors, "resource", "resources")
    nested = _ResourceDefaults()
    if resource_raw is not _MISSING and resource_raw is not None:
        if not isinstance(resource_raw, dict):
            errors.add(f"{path}.{resource_key}", f"must be an object {{cpu, memory, gpu}}, got "
                                                 f"{json_type(resource_raw)}")
            raise _Fail
        nested = _read_resource_level(resource_raw, f"{path}.{resource_key}.", errors)
    inline = _read_resource_level(item, f"{path}.", errors)
    resources = _merge_resources(f"{path}.resource", errors, nested, inline, defaults,
                                 previous.get(replica_type))
    return Replica(type=replica_type, count=count, resources=resources)


def _read_replica_list(body: dict[str, Any], errors: _Errors, defaults: _ResourceDefaults,
                       previous: dict[ReplicaType, Resources]) -> list[Replica]:
    raw = body["replicas"]
    base = "replicas"
    if isinstance(raw, dict):
        if "count" in raw and raw["count"] is not None:
            _whole(raw["count"], "replicas.count", errors)
        if "replicas" not in raw:
            errors.add("replicas.replicas", "required: the list of {type, count, resource}")
            raise _Fail
        raw, base = raw["replicas"], "replicas.replicas"
    if not isinstance(raw, list):
        errors.add(base, f"must be a list of {{type, count, resource}}, got {json_type(raw)}")
        raise _Fail
    seen: dict[str, str] = {}
    replicas = []
    failed = False
    for i, item in enumerate(raw):
        try:
            replicas.append(_read_replica_entry(item, f"{base}[{i}]", errors, defaults, seen, previous))
        except _Fail:
            failed = True
    if failed:
        raise _Fail
    if not replicas:
        errors.add(base, "at least one replica group is required")
        raise _Fail
    return replicas


def _read_replicas(body: dict[str, Any], errors: _Errors, current: JobSpec | None) -> tuple[Replica, ...]:
    defaults = _read_resource_level(body, "", errors)
    count_key, count_raw = _pick(body, errors, "count", "conut")
    has_shape = body.get("type") is not None or count_raw not in (_MISSING, None)
    if "replicas" in body and body["replicas"] is not None:
        if has_shape:
            errors.add("type" if body.get("type") is not None else count_key,
                       "give either 'replicas' or top-level 'type'/'count', not both")
            raise _Fail
        kept = {r.type: r.resources for r in current.replicas} if current else {}
        replicas = _read_replica_list(body, errors, defaults, kept)
    elif has_shape or current is None:
        if "type" in body and body["type"] is not None:
            replica_type = _read_type(body["type"], "type", errors)
        elif current is not None and len(current.replicas) == 1:
            replica_type = current.replicas[0].type
        else:
            replica_type = "worker"
        previous = next((r for r in current.replicas if r.type == replica_type), None) if current else None
        if count_raw is not _MISSING and count_raw is not None:
            count = _whole(count_raw, count_key, errors)
        else:
            count = previous.count if previous else 1
        fallback = previous.resources if previous else None
        resources = _merge_resources_top(errors, defaults, fallback)
        replicas = [Replica(type=replica_type, count=count, resources=resources)]
    else:
        replicas = [
            replace(r, resources=Resources(cpu=defaults.cpu or r.resources.cpu,
                                           memory=defaults.memory or r.resources.memory,
                                           gpu=r.resources.gpu if defaults.gpu is None else defaults.gpu))
            for r in current.replicas
        ]
    return tuple(sorted(replicas, key=lambda r: _TYPE_ORDER[r.type]))


def _merge_resources_top(errors: _Errors, defaults: _ResourceDefaults, fallback: Resources | None) -> Resources:
    if defaults.failed:
        raise _Fail
    missing = [key for key in ("cpu", "memory")
               if getattr(defaults, key) is None and fallback is None]
    for key in missing:
        errors.add(key, f"{key} is required (top-level, or per replica in 'replicas')")
    if missing:
        raise _Fail
    return _merge_resources("", errors, defaults, fallback)


def _check_replicas(replicas: tuple[Replica, ...], errors: _Errors, profile: ClusterProfile) -> None:
    total = sum(r.count for r in replicas)
    gpus = sum(r.count * r.resources.gpu for r in replicas)
    if total < 1:
        errors.add("replicas", "at least one replica must have a count of 1 or more")
    elif not any(r.count > 0 and r.type in ("chief", "worker") for r in replicas):
        errors.add("replicas", "at least one chief or worker replica is required (ps and evaluator "
                               "alone never finish)")
    if any(r.type == "chief" and r.count > 1 for r in replicas):
        errors.add("replicas", "at most one chief replica is allowed")
    if total > profile.max_replicas_per_job:
        errors.add("replicas", f"{total} replicas requested; cluster {profile.id!r} allows at most "
                               f"{profile.max_replicas_per_job} per job")
    if gpus > profile.max_gpus_per_job:
        errors.add("replicas", f"{gpus} GPUs requested in all; cluster {profile.id!r} allows at most "
                               f"{profile.max_gpus_per_job} per job")


def _check_environment_vs_directories(spec: JobSpec, errors: _Errors) -> None:
    names = {key for key, _ in spec.environment}
    for attr, legacy_key, variable in DIRECTORY_ENV:
        if getattr(spec, attr) and variable in names:
            errors.add("environment", f"{variable} is set from {legacy_key}; do not also give it in "
                                      "the environment")


# ---------------------------------------------------------------------------------------------
# Public API


def _unwrap(body: object, errors: _Errors) -> dict[str, Any]:
    if not isinstance(body, dict):
        message = f"the request body must be a JSON object, got {json_type(body)}"
        raise SpecError(f"invalid job: {message}", fields=[*errors.fields, FieldError("", message)])
    flat_keys = {"name", "runtime", "bootfile", "replicas", "type", "cpu", "memory"}
    if isinstance(body.get("spec"), dict) and not flat_keys & body.keys():
        flat = dict(body["spec"])
        metadata = body.get("metadata")
        if "name" not in flat and isinstance(metadata, dict) and "name" in metadata:
            flat["name"] = metadata["name"]
        return flat
    return body


def _read_fields(body: dict[str, Any], errors: _Errors, profile: ClusterProfile,
                 current: JobSpec | None) -> JobSpec | None:
    """Read every field present in `body`; absent ones come from `current` (None: create)."""
    values: dict[str, Any] = {}

    def field_(attr: str, keys: tuple[str, ...], reader: Any, *, required: bool = False) -> None:
        try:
            key, raw = _pick(body, errors, *keys)
        except _Fail:
            return
        if raw is _MISSING:
            if current is None and required:
                errors.add(keys[0], "required")
            return
        if raw is None and required:
            errors.add(key, "required, cannot be null")
            return
        try:
            values[attr] = reader(raw, key)  # readers map null to the field's empty value
        except _Fail:
            pass

    field_("name", ("name",), lambda v, k: _read_name(v, errors), required=True)
    field_("runtime", ("runtime",), lambda v, k: _read_runtime(v, errors, profile), required=True)
    field_("bootfile", ("bootfile",), lambda v, k: _path_value(v, k, errors, profile, file=True), required=True)
    field_("description", ("description",), lambda v, k: _read_description(v, errors))
    field_("workdir", ("workdir", "workerdir", "workDir"), lambda v, k: _path_value(v, k, errors, profile))
    field_("args", ("args",), lambda v, k: _read_args(v, k, errors))
    if not {"environment", "enviroment", "env"} & body.keys() and "environmentList" in body:
        field_("environment", ("environmentList",), lambda v, k: _read_environment(v, k, errors))
    else:
        field_("environment", ("environment", "enviroment", "env"),
               lambda v, k: _read_environment(_exact_environment(body, v), k, errors))
    for attr, key, _ in DIRECTORY_ENV:
        field_(attr, (key,), lambda v, k: _path_value(v, k, errors, profile))
    replicas_changed = current is None or bool(
        {"replicas", "type", "count", "conut", "cpu", "memory", "gpu"} & body.keys())
    try:
        values["replicas"] = _read_replicas(body, errors, current)
    except _Fail:
        pass
    values["run_policy"] = _read_run_policy(body, errors, current.run_policy if current else RunPolicy())

    if current is not None and "name" in values and values["name"] != current.name:
        errors.add("name", f"renaming a job is not supported (current name {current.name!r})")
    if errors.fields:
        return None
    spec = replace(current, **values) if current is not None else JobSpec(**values)
    if replicas_changed:
        _check_replicas(spec.replicas, errors, profile)
    _check_environment_vs_directories(spec, errors)
    if len(spec_to_json(spec).encode()) > MAX_SPEC_BYTES:
        errors.add("", f"the job is too large: args, environment and description together must stay "
                       f"under {MAX_SPEC_BYTES // 1000} kB")
    return spec


def read_create(body: object, *, partition: str, profile: ClusterProfile) -> JobSpec:
    """Read a legacy create body into a validated JobSpec; SpecError lists every bad field."""
    errors = _Errors()
    flat = _unwrap(body, errors)
    try:
        namespace_for(partition, profile)
    except SpecError as e:
        errors.fields.extend(e.fields)
    spec = _read_fields(flat, errors, profile, None)
    errors.raise_if_any()
    assert spec is not None
    return spec


def read_update(body: object, *, current: JobSpec, profile: ClusterProfile) -> JobSpec:
    """Apply a legacy PATCH body to `current`: present fields override, absent ones are kept.

    `replicas` (or top-level `type`/`count`) replace the replica groups wholesale (a group that
    gives no resources keeps those of the current group of its type); top-level `cpu`/`memory`/`gpu`
    alone set that resource on every current replica group. Renames are refused.
    """
    errors = _Errors()
    flat = _unwrap(body, errors)
    spec = _read_fields(flat, errors, profile, current)
    errors.raise_if_any()
    assert spec is not None
    return spec


def parse_create(body: object, *, partition: str, profile: ClusterProfile) -> JobSpec:
    """Facade: `read_create`, then what the cluster's backend cannot run (`JobBackend.check`)."""
    return _runnable(read_create(body, partition=partition, profile=profile), profile)


def parse_update(body: object, *, current: JobSpec, profile: ClusterProfile) -> JobSpec:
    """Facade: `read_update`, then what the cluster's backend cannot run (`JobBackend.check`)."""
    return _runnable(read_update(body, current=current, profile=profile), profile)


def _runnable(spec: JobSpec, profile: ClusterProfile) -> JobSpec:
    _Errors(backend_for(profile).check(spec)).raise_if_any()
    return spec


def classify_update(old: JobSpec, new: JobSpec, *, profile: ClusterProfile) -> UpdateKind:
    """Facade: how `old` becomes `new` on the cluster's live object (`JobBackend.classify_update`):
    nothing to do, a merge patch, or a new object."""
    return backend_for(profile).classify_update(old, new)


# JobSpec / RunPolicy field -> the legacy field a user would recognise in a message.
LEGACY_FIELD_NAMES: dict[str, str] = {
    "checkpoint_dir": "checkpointDir", "event_dir": "eventDir", "model_dir": "modelDir", "log_dir": "logDir",
    "active_deadline_seconds": "activeDeadlineSeconds", "ttl_seconds_after_finished": "ttlSecondsAfterFinished",
    "clean_pod_policy": "cleanPodPolicy", "backoff_limit": "backoffLimit", "success_policy": "successPolicy",
}


def changed_fields(old: JobSpec, new: JobSpec) -> list[str]:
    """The legacy names of the fields that differ between `old` and `new`, in spec order (any backend)."""
    changed = [f.name for f in fields(JobSpec)
               if f.name != "run_policy" and getattr(old, f.name) != getattr(new, f.name)]
    changed += [f.name for f in fields(RunPolicy)
                if getattr(old.run_policy, f.name) != getattr(new.run_policy, f.name)]
    return [LEGACY_FIELD_NAMES.get(name, name) for name in changed]


def environment_string(environment: tuple[tuple[str, str], ...]) -> str:
    """The legacy environment string, `K=V,K2=V2`."""
    return ",".join(f"{key}={value}" for key, value in environment)


def _duration_seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        seconds = (_parse_time(end) - _parse_time(start)).total_seconds()
    except ValueError:
        return None
    if seconds < 0:
        return None
    return int(seconds) if seconds == int(seconds) else round(seconds, 3)


def _parse_time(text: str) -> datetime:
    # Kubernetes and the seed use RFC 3339, sometimes with nanoseconds; datetime wants ≤ 6 digits.
    # A time without a zone is read as UTC.
    match = re.match(r"^(.*?)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text)
    if not match:
        raise ValueError(text)
    base, fraction, zone = match.groups()
    fraction = (fraction or "")[:7]
    zone = "+00:00" if zone in (None, "Z") else zone
    return datetime.fromisoformat(f"{base}{fraction}{zone}")


def render_spec(spec: JobSpec, *, partition: str) -> dict[str, Any]:
    """The legacy `spec` object of a job."""
    rendered: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "partition": partition,
        "runtime": spec.runtime,
        "workdir": spec.workdir,
        "workerdir": spec.workdir,
        "bootfile": spec.bootfile,
        "args": list(spec.args),
        "environment": environment_string(spec.environment),
        "environmentList": [f"{key}={value}" for key, value in spec.environment],
        "checkpointDir": spec.checkpoint_dir,
        "eventDir": spec.event_dir,
        "modelDir": spec.model_dir,
        "logDir": spec.log_dir,
        "replicas": [
            {"type": r.type, "count": str(r.count),
             "resource": {"cpu": r.resources.cpu, "memory": r.resources.memory,
                          "gpu": str(r.resources.gpu)}}
            for r in spec.replicas
        ],
    }
    rendered.update(run_policy_to_dict(spec.run_policy))
    return rendered


def render_metadata(spec: JobSpec, identity: JobIdentity) -> dict[str, Any]:
    """The legacy `metadata` object of a job."""
    return {
        "uid": identity.owner,
        "id": identity.id,
        "name": spec.name,
        "creationTime": identity.created,
        "lastUpdateTime": identity.updated,
        "cluster": identity.cluster,
        "partition": identity.partition,
    }


def render_status(status: JobStatus) -> dict[str, Any]:
    """The legacy `status` object of a job."""
    return {
        "phase": status.phase,
        "reason": status.reason,
        "message": status.message,
        "startTime": status.start_time,
        "completionTime": status.completion_time,
        "duration": _duration_seconds(status.start_time, status.completion_time),
        "replicas": [
            {"id": r.id, "restartCount": r.restart_count, "status": r.status,
             "startTime": r.start_time, "type": r.type, "index": r.index, "node": r.node,
             "reason": r.reason, "message": r.message, "exitCode": r.exit_code}
            for r in status.replicas
        ],
    }


def render_job(spec: JobSpec, identity: JobIdentity, status: JobStatus) -> dict[str, Any]:
    """The legacy job object (seed 003's response, as valid JSON) for one job."""
    return {"metadata": render_metadata(spec, identity),
            "spec": render_spec(spec, partition=identity.partition),
            "status": render_status(status)}


def spec_from_view(rendered: dict[str, Any]) -> JobSpec:
    """Inverse of `render_spec`, for specs the gateway rendered itself (the stored read model): no
    validation against a cluster profile (the catalog may have changed since), NotTranslatable when the
    document is not one `render_spec` made."""
    try:
        replicas = []
        for item in rendered["replicas"]:
            if item["type"] not in REPLICA_TYPES:
                raise NotTranslatable(f"unknown replica type {item['type']!r}")
            resource = item["resource"]
            replicas.append(Replica(type=item["type"], count=int(item["count"]),
                                    resources=Resources(cpu=str(resource["cpu"]), memory=str(resource["memory"]),
                                                        gpu=int(resource["gpu"]))))
        environment = tuple(tuple(entry.split("=", 1)) for entry in rendered["environmentList"])
        policy = RunPolicy(
            active_deadline_seconds=rendered.get("activeDeadlineSeconds"),
            ttl_seconds_after_finished=rendered.get("ttlSecondsAfterFinished"),
            clean_pod_policy=rendered.get("cleanPodPolicy"),
            backoff_limit=rendered.get("backoffLimit"),
            success_policy=rendered.get("successPolicy"),
        )
        return JobSpec(
            name=str(rendered["name"]), runtime=str(rendered["runtime"]), bootfile=str(rendered["bootfile"]),
            replicas=tuple(replicas), description=str(rendered["description"]), workdir=str(rendered["workdir"]),
            args=tuple(str(a) for a in rendered["args"]),
            environment=tuple((str(k), str(v)) for k, v in environment),
            checkpoint_dir=str(rendered["checkpointDir"]), event_dir=str(rendered["eventDir"]),
            model_dir=str(rendered["modelDir"]), log_dir=str(rendered["logDir"]), run_policy=policy,
        )
    except NotTranslatable:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise NotTranslatable(f"not a rendered job spec: {e}") from e


def status_from_view(rendered: dict[str, Any]) -> JobStatus:
    """Inverse of `render_status` (NotTranslatable when the document is not one it made)."""
    try:
        replicas = tuple(
            ReplicaStatus(id=str(r["id"]), type=str(r["type"]), index=int(r["index"]), status=str(r["status"]),
                          restart_count=int(r["restartCount"]), start_time=r["startTime"], node=r["node"],
                          reason=r["reason"], message=r["message"], exit_code=r["exitCode"])
            for r in rendered["replicas"])
        return JobStatus(phase=rendered["phase"], reason=rendered["reason"], message=rendered["message"],
                         start_time=rendered["startTime"], completion_time=rendered["completionTime"],
                         replicas=replicas)
    except (KeyError, TypeError, ValueError) as e:
        raise NotTranslatable(f"not a rendered job status: {e}") from e


def identity_from_view(metadata: dict[str, Any]) -> JobIdentity:
    """Inverse of `render_metadata` (NotTranslatable when the document is not one it made)."""
    try:
        return JobIdentity(id=str(metadata["id"]), owner=str(metadata["uid"]), cluster=str(metadata["cluster"]),
                           partition=str(metadata["partition"]), created=str(metadata["creationTime"]),
                           updated=str(metadata["lastUpdateTime"]))
    except (KeyError, TypeError) as e:
        raise NotTranslatable(f"not rendered job metadata: {e}") from e


def render_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The legacy list object: `{"metadata": {"total": N}, "items": [...]}`."""
    return {"metadata": {"total": len(items)}, "items": list(items)}
