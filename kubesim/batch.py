"""batch/v1 Jobs as kube-apiserver's registry stores them, and the vocabulary the Job controller shares.

Contract:
- `default_job(job)` applies `SetDefaults_Job` (Kubernetes 1.31+) in place: completions and parallelism 1
  when both are unset, parallelism 1, backoffLimit 6 (MaxInt32 with backoffLimitPerIndex),
  completionMode NonIndexed, suspend false, podReplacementPolicy TerminatingOrFailed (Failed with a
  podFailurePolicy), the Job's labels from its pod template when it has none.
- `prepare_for_create(job)` is what the registry does to a new Job: an empty status, the generated selector
  (unless `manualSelector`: the pod template gets `batch.kubernetes.io/controller-uid`,
  `batch.kubernetes.io/job-name`, `controller-uid`, `job-name` and the selector matches
  `batch.kubernetes.io/controller-uid=<metadata.uid>`; the uid must already be set, see
  `Store.create(uid=...)`), then the defaults - so a Job without labels shows its template's, generated
  ones included, as a Job read back from a real API server does.
- `validation_causes(job, old=None)` is a subset of `ValidateJob` / `ValidateJobUpdate`: non-negative
  counts, restartPolicy OnFailure|Never, containers present, Indexed needs completions, successPolicy only
  for Indexed Jobs, selector matches the template labels; on update completions, selector and (unless the
  Job is suspended) the pod template are immutable. Each cause is a `StatusCause` for `errors.invalid`.
- `decode_error(job)` is the typed decoding that comes first: a field of the wrong JSON type (spec, counts,
  template, containers, policies) gives Go's `json: cannot unmarshal ...` text for a 400 BadRequest.
- `parse_intervals` / `format_intervals` read and write index sets like `status.completedIndexes` ("0-2,4").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubesim import errors

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # annotation and (PodIndexLabel) label
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
DEFAULT_BACKOFF_LIMIT = 6
MAX_INT32 = 2**31 - 1
INDEXED = "Indexed"
NON_INDEXED = "NonIndexed"


def default_job(job: dict[str, Any]) -> dict[str, Any]:
    """SetDefaults_Job, in place; returns `job`."""
    spec = job.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        per_index = spec.get("backoffLimitPerIndex") is not None
        spec["backoffLimit"] = MAX_INT32 if per_index else DEFAULT_BACKOFF_LIMIT
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    meta = job.setdefault("metadata", {})
    if template_labels and not meta.get("labels"):
        meta["labels"] = dict(template_labels)
    if not spec.get("completionMode"):
        spec["completionMode"] = NON_INDEXED
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if not spec.get("podReplacementPolicy"):
        spec["podReplacementPolicy"] = "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        for pattern in (rule or {}).get("onPodConditions") or []:
            if isinstance(pattern, dict) and not pattern.get("status"):
                pattern["status"] = "True"
    return job


def prepare_for_create(job: dict[str, Any]) -> dict[str, Any]:
    """A new Job as the registry stores it (see the module docstring), in place; returns `job`."""
    job["status"] = {}
    return default_job(generate_selector(job))


def generate_selector(job: dict[str, Any]) -> dict[str, Any]:
    """The Job strategy's generated selector and template labels, in place; returns `job`."""
    spec = job.setdefault("spec", {})
    if spec.get("manualSelector"):
        return job
    meta = job.get("metadata") or {}
    name, uid = str(meta.get("name") or ""), str(meta.get("uid") or "")
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    labels = template_meta.setdefault("labels", {})
    # a label the user set already wins; validation then reports a conflict with the selector
    for key, value in ((LEGACY_CONTROLLER_UID_LABEL, uid), (CONTROLLER_UID_LABEL, uid),
                       (LEGACY_JOB_NAME_LABEL, name), (JOB_NAME_LABEL, name)):
        labels.setdefault(key, value)
    selector = spec.get("selector") or {}
    match_labels = selector.setdefault("matchLabels", {})
    match_labels.setdefault(CONTROLLER_UID_LABEL, uid)
    spec["selector"] = selector
    return job


# What the API server's typed decoding checks before anything else: (JSON path, Go struct, Go type, JSON kind).
_TYPED_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("spec", "Job", "v1.JobSpec", "object"),
    *((f"spec.{key}", "JobSpec", "int32", "number") for key in (
        "parallelism", "completions", "backoffLimit", "backoffLimitPerIndex", "maxFailedIndexes",
        "ttlSecondsAfterFinished")),
    ("spec.activeDeadlineSeconds", "JobSpec", "int64", "number"),
    ("spec.suspend", "JobSpec", "bool", "bool"),
    ("spec.manualSelector", "JobSpec", "bool", "bool"),
    ("spec.completionMode", "JobSpec", "v1.CompletionMode", "string"),
    ("spec.podReplacementPolicy", "JobSpec", "v1.PodReplacementPolicy", "string"),
    ("spec.selector", "JobSpec", "v1.LabelSelector", "object"),
    ("spec.successPolicy", "JobSpec", "v1.SuccessPolicy", "object"),
    ("spec.successPolicy.rules", "SuccessPolicy", "[]v1.SuccessPolicyRule", "array"),
    ("spec.podFailurePolicy", "JobSpec", "v1.PodFailurePolicy", "object"),
    ("spec.podFailurePolicy.rules", "PodFailurePolicy", "[]v1.PodFailurePolicyRule", "array"),
    ("spec.template", "JobSpec", "v1.PodTemplateSpec", "object"),
    ("spec.template.metadata", "PodTemplateSpec", "v1.ObjectMeta", "object"),
    ("spec.template.metadata.labels", "ObjectMeta", "map[string]string", "object"),
    ("spec.template.metadata.annotations", "ObjectMeta", "map[string]string", "object"),
    ("spec.template.spec", "PodTemplateSpec", "v1.PodSpec", "object"),
    ("spec.template.spec.containers", "PodSpec", "[]v1.Container", "array"),
    ("spec.template.spec.initContainers", "PodSpec", "[]v1.Container", "array"),
    ("spec.template.spec.restartPolicy", "PodSpec", "v1.RestartPolicy", "string"),
)
_ELEMENTS = {"spec.successPolicy.rules": "v1.SuccessPolicyRule", "spec.podFailurePolicy.rules":
             "v1.PodFailurePolicyRule", "spec.template.spec.containers": "v1.Container",
             "spec.template.spec.initContainers": "v1.Container"}


def decode_error(job: dict[str, Any]) -> str | None:
    """Why a Job body cannot be decoded into the Go types (kube-apiserver answers 400 BadRequest with
    `Job in version "v1" cannot be handled as a Job: <this>`), or None."""
    for path, struct, go_type, kind in _TYPED_FIELDS:
        node: Any = job
        for segment in path.split("."):
            node = node.get(segment) if isinstance(node, dict) else None
        if node is None:
            continue
        if _json_kind(node) != kind:
            return f"json: cannot unmarshal {_json_kind(node)} into Go struct field {struct}.{path} of type {go_type}"
        if kind == "number" and isinstance(node, float) and not node.is_integer():
            return f"json: cannot unmarshal number {node} into Go struct field {struct}.{path} of type {go_type}"
        if path in _ELEMENTS and any(not isinstance(item, dict) for item in node):
            bad = next(_json_kind(item) for item in node if not isinstance(item, dict))
            return (f"json: cannot unmarshal {bad} into Go struct field {struct}.{path} of type "
                    f"{_ELEMENTS[path]}")
    return None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def is_indexed(job: Mapping[str, Any]) -> bool:
    """Whether the Job uses Indexed completion."""
    return (job.get("spec") or {}).get("completionMode") == INDEXED


def validation_causes(job: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
    """The ValidateJob (and, with `old`, ValidateJobUpdate) errors kubesim checks, as StatusCauses."""
    spec = job.get("spec") or {}
    causes: list[dict[str, str]] = []
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit"):
        value = spec.get(key)
        if isinstance(value, int) and value < 0:
            causes.append(errors.field_cause(f"spec.{key}",
                                             f"Invalid value: {value}: must be greater than or equal to 0"))
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    if not pod_spec.get("containers"):
        causes.append(errors.field_cause("spec.template.spec.containers", "Required value",
                                         reason="FieldValueRequired"))
    policy = pod_spec.get("restartPolicy") or ""
    if policy not in ("OnFailure", "Never"):
        causes.append(errors.field_cause(
            "spec.template.spec.restartPolicy",
            f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
            reason="FieldValueNotSupported"))
    mode = spec.get("completionMode")
    if mode not in (None, INDEXED, NON_INDEXED):
        causes.append(errors.field_cause(
            "spec.completionMode", f'Unsupported value: "{mode}": supported values: "NonIndexed", "Indexed"',
            reason="FieldValueNotSupported"))
    if mode == INDEXED and spec.get("completions") is None:
        causes.append(errors.field_cause("spec.completions", "Required value: when completion mode is "
                                         "Indexed", reason="FieldValueRequired"))
    if spec.get("successPolicy") is not None and mode != INDEXED:
        causes.append(errors.field_cause("spec.successPolicy", "Invalid value: batch.SuccessPolicy{...}: "
                                         "requires indexed completion mode"))
    selector = spec.get("selector")
    if selector is None:
        causes.append(errors.field_cause("spec.selector", "Required value", reason="FieldValueRequired"))
    else:
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        wanted = selector.get("matchLabels") or {}
        if any(labels.get(key) != value for key, value in wanted.items()):
            causes.append(errors.field_cause("spec.template.metadata.labels",
                                             f"Invalid value: {_go_map(labels)}: `selector` does not match "
                                             "template `labels`"))
    if old is not None:
        old_spec = old.get("spec") or {}
        for key in ("completions", "selector"):
            if spec.get(key) != old_spec.get(key):
                causes.append(errors.field_cause(f"spec.{key}", f"Invalid value: {_go_value(spec.get(key))}: "
                                                 "field is immutable"))
        if not old_spec.get("suspend") and spec.get("template") != old_spec.get("template"):
            causes.append(errors.field_cause("spec.template", "Invalid value: core.PodTemplateSpec{...}: "
                                             "field is immutable"))
    return causes


def parse_intervals(text: str | None, limit: int | None = None) -> set[int]:
    """The indexes an interval string names ("1,3-5" → {1, 3, 4, 5}); malformed parts are skipped, and
    with `limit` only indexes below it count (as the Job controller reads completedIndexes)."""
    result: set[int] = set()
    for part in (text or "").split(","):
        first, _, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if last else low
        except ValueError:
            continue
        if low < 0 or high < low:
            continue
        if limit is not None:
            high = min(high, limit - 1)
        result.update(range(low, high + 1))
    return result


def format_intervals(indexes: set[int] | list[int]) -> str:
    """The interval form the Job controller writes: {0, 1, 2, 4} → "0-2,4"; a run of two is "0,1"."""
    ordered = sorted(set(indexes))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        first, last = ordered[i], ordered[j]
        parts.append(str(first) if first == last else f"{first}{',' if last == first + 1 else '-'}{last}")
        i = j + 1
    return ",".join(parts)


def _go_map(labels: dict[str, Any]) -> str:
    return "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items())) + "}"


def _go_value(value: Any) -> str:
    """A bad value as field.Invalid prints it (a struct abbreviated)."""
    if value is None:
        return "null"
    return "v1.LabelSelector{...}" if isinstance(value, dict) else str(value)


__all__ = ["COMPLETION_INDEX", "COMPLETION_INDEX_ENV", "CONTROLLER_UID_LABEL", "DEFAULT_BACKOFF_LIMIT",
           "INDEXED", "JOB_NAME_LABEL", "LEGACY_CONTROLLER_UID_LABEL", "LEGACY_JOB_NAME_LABEL", "NON_INDEXED",
           "decode_error", "default_job", "format_intervals", "generate_selector", "is_indexed",
           "parse_intervals", "prepare_for_create", "validation_causes"]
