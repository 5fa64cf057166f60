"""Labels and annotations that make a cluster object a self-contained Clever record.

The cluster is the source of truth (DESIGN §3): from a job object's metadata alone the gateway
rebuilds the JobSpec and JobIdentity (`record_from_metadata`). Labels are for selection (managed
by, job id, owner in a label-safe form); annotations hold the exact values, including the whole
spec as compact JSON (`ANNOTATION_SPEC`, versioned by its `"v"` key).

Label values must be ≤ 63 chars of `[A-Za-z0-9._-]` starting and ending alphanumeric; a value
that is not (an e-mail as owner, say) is sanitised and suffixed with 8 hex digits of its SHA-256,
so distinct owners (practically) never share a label value. `label_value` is the one function doing that:
selectors must be built with it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from translators.errors import NotTranslatable
from translators.spec import REPLICA_TYPES, JobIdentity, JobSpec, Replica, Resources, RunPolicy

PREFIX = "clever.dev/"

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "clever-gateway"
LABEL_JOB_ID = PREFIX + "job-id"
LABEL_OWNER = PREFIX + "owner"

ANNOTATION_JOB_ID = PREFIX + "job-id"
ANNOTATION_OWNER = PREFIX + "owner"
ANNOTATION_NAME = PREFIX + "name"
ANNOTATION_DESCRIPTION = PREFIX + "description"
ANNOTATION_RUNTIME = PREFIX + "runtime"
ANNOTATION_SPEC = PREFIX + "spec"
ANNOTATION_CREATED = PREFIX + "created"
ANNOTATION_UPDATED = PREFIX + "updated"
ANNOTATION_CLUSTER = PREFIX + "cluster"
ANNOTATION_PARTITION = PREFIX + "partition"

MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"
SPEC_FORMAT_VERSION = 1

_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_value(value: str) -> str:
    """`value` itself when it is a valid label value, else a sanitised, hash-suffixed form."""
    if len(value) <= 63 and _LABEL_VALUE_RE.match(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    cleaned = re.sub(r"[^-A-Za-z0-9_.]", "_", value)
    cleaned = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)[: 63 - 9]
    cleaned = re.sub(r"[^A-Za-z0-9]+$", "", cleaned)
    return f"{cleaned}-{digest}" if cleaned else digest


def pod_selector(job_id: str) -> str:
    """Label selector matching every pod of one Clever job (both operators copy template labels)."""
    return f"{MANAGED_SELECTOR},{LABEL_JOB_ID}={label_value(job_id)}"


def owner_selector(owner: str) -> str:
    """Label selector matching every managed job of one owner."""
    return f"{MANAGED_SELECTOR},{LABEL_OWNER}={label_value(owner)}"


def job_labels(identity: JobIdentity) -> dict[str, str]:
    """Labels of the job object."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY_VALUE,
        LABEL_JOB_ID: label_value(identity.id),
        LABEL_OWNER: label_value(identity.owner),
    }


def pod_template_labels(identity: JobIdentity) -> dict[str, str]:
    """Labels of every pod template, so pods can be watched by job id."""
    return job_labels(identity)


def pod_template_annotations(identity: JobIdentity) -> dict[str, str]:
    """Annotations of every pod template: the exact job id (the label may be a sanitised form)."""
    return {ANNOTATION_JOB_ID: identity.id}


def job_id_of(obj: Any) -> str | None:
    """The Clever job id a managed job or pod carries (exact annotation, else the label), or None."""
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(metadata, dict):
        return None
    for key, source in ((ANNOTATION_JOB_ID, metadata.get("annotations")), (LABEL_JOB_ID, metadata.get("labels"))):
        if isinstance(source, dict) and isinstance(source.get(key), str) and source[key]:
            return str(source[key])
    return None


def job_annotations(spec: JobSpec, identity: JobIdentity) -> dict[str, str]:
    """Annotations holding the exact Clever record."""
    return {
        ANNOTATION_JOB_ID: identity.id,
        ANNOTATION_OWNER: identity.owner,
        ANNOTATION_NAME: spec.name,
        ANNOTATION_DESCRIPTION: spec.description,
        ANNOTATION_RUNTIME: spec.runtime,
        ANNOTATION_SPEC: spec_to_json(spec),
        ANNOTATION_CREATED: identity.created,
        ANNOTATION_UPDATED: identity.updated,
        ANNOTATION_CLUSTER: identity.cluster,
        ANNOTATION_PARTITION: identity.partition,
    }


def update_annotations(spec: JobSpec, identity: JobIdentity) -> dict[str, str]:
    """The annotations an in-place update rewrites."""
    return {
        ANNOTATION_DESCRIPTION: spec.description,
        ANNOTATION_SPEC: spec_to_json(spec),
        ANNOTATION_UPDATED: identity.updated,
    }


def run_policy_to_dict(policy: RunPolicy) -> dict[str, Any]:
    """The set fields of a run policy under their Kubernetes/legacy camelCase names."""
    fields = {
        "activeDeadlineSeconds": policy.active_deadline_seconds,
        "ttlSecondsAfterFinished": policy.ttl_seconds_after_finished,
        "cleanPodPolicy": policy.clean_pod_policy,
        "backoffLimit": policy.backoff_limit,
        "successPolicy": policy.success_policy,
    }
    return {key: value for key, value in fields.items() if value is not None}


def spec_to_json(spec: JobSpec) -> str:
    """The whole spec as compact, key-sorted JSON (annotation value)."""
    document: dict[str, Any] = {
        "v": SPEC_FORMAT_VERSION,
        "name": spec.name,
        "runtime": spec.runtime,
        "bootfile": spec.bootfile,
        "description": spec.description,
        "workdir": spec.workdir,
        "args": list(spec.args),
        "environment": [[key, value] for key, value in spec.environment],
        "checkpointDir": spec.checkpoint_dir,
        "eventDir": spec.event_dir,
        "modelDir": spec.model_dir,
        "logDir": spec.log_dir,
        "replicas": [
            {"type": r.type, "count": r.count, "cpu": r.resources.cpu, "memory": r.resources.memory,
             "gpu": r.resources.gpu}
            for r in spec.replicas
        ],
        "runPolicy": run_policy_to_dict(spec.run_policy),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_from_json(text: str) -> JobSpec:
    """Inverse of `spec_to_json`; NotTranslatable when the annotation is damaged."""
    try:
        doc = json.loads(text)
        if doc.get("v") != SPEC_FORMAT_VERSION:
            raise NotTranslatable(f"unsupported spec annotation version {doc.get('v')!r}")
        replicas = []
        for item in doc["replicas"]:
            if item["type"] not in REPLICA_TYPES:
                raise NotTranslatable(f"unknown replica type {item['type']!r} in spec annotation")
            replicas.append(Replica(
                type=item["type"], count=_int(item["count"]),
                resources=Resources(cpu=_str(item["cpu"]), memory=_str(item["memory"]),
                                    gpu=_int(item["gpu"])),
            ))
        policy = doc.get("runPolicy", {})
        if policy.get("cleanPodPolicy") not in (None, "All", "Running", "None"):
            raise NotTranslatable(f"bad cleanPodPolicy {policy.get('cleanPodPolicy')!r} in spec annotation")
        if policy.get("successPolicy") not in (None, "", "AllWorkers"):
            raise NotTranslatable(f"bad successPolicy {policy.get('successPolicy')!r} in spec annotation")
        return JobSpec(
            name=_str(doc["name"]),
            runtime=_str(doc["runtime"]),
            bootfile=_str(doc["bootfile"]),
            replicas=tuple(replicas),
            description=_str(doc.get("description", "")),
            workdir=_str(doc.get("workdir", "")),
            args=tuple(_str(a) for a in doc.get("args", [])),
            environment=tuple((_str(k), _str(v)) for k, v in doc.get("environment", [])),
            checkpoint_dir=_str(doc.get("checkpointDir", "")),
            event_dir=_str(doc.get("eventDir", "")),
            model_dir=_str(doc.get("modelDir", "")),
            log_dir=_str(doc.get("logDir", "")),
            run_policy=RunPolicy(
                active_deadline_seconds=_opt_int(policy.get("activeDeadlineSeconds")),
                ttl_seconds_after_finished=_opt_int(policy.get("ttlSecondsAfterFinished")),
                clean_pod_policy=policy.get("cleanPodPolicy"),
                backoff_limit=_opt_int(policy.get("backoffLimit")),
                success_policy=policy.get("successPolicy"),
            ),
        )
    except NotTranslatable:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise NotTranslatable(f"damaged {ANNOTATION_SPEC} annotation: {e}") from e


def record_from_metadata(metadata: Any) -> tuple[JobSpec, JobIdentity]:
    """Rebuild (spec, identity) from a managed object's metadata; NotTranslatable if not ours."""
    if not isinstance(metadata, dict):
        raise NotTranslatable("object has no metadata")
    raw_labels, raw_annotations = metadata.get("labels"), metadata.get("annotations")
    labels: dict[str, Any] = raw_labels if isinstance(raw_labels, dict) else {}
    annotations: dict[str, Any] = raw_annotations if isinstance(raw_annotations, dict) else {}
    name = metadata.get("name", "?")
    if labels.get(LABEL_MANAGED_BY) != MANAGED_BY_VALUE:
        raise NotTranslatable(f"object {name!r} is not managed by clever-gateway")
    required = (ANNOTATION_JOB_ID, ANNOTATION_OWNER, ANNOTATION_SPEC, ANNOTATION_CREATED,
                ANNOTATION_UPDATED, ANNOTATION_CLUSTER, ANNOTATION_PARTITION)
    missing = [key for key in required if not isinstance(annotations.get(key), str)]
    if missing:
        raise NotTranslatable(f"object {name!r} lost its Clever annotations: {', '.join(missing)}")
    spec = spec_from_json(annotations[ANNOTATION_SPEC])
    identity = JobIdentity(
        id=annotations[ANNOTATION_JOB_ID],
        owner=annotations[ANNOTATION_OWNER],
        cluster=annotations[ANNOTATION_CLUSTER],
        partition=annotations[ANNOTATION_PARTITION],
        created=annotations[ANNOTATION_CREATED],
        updated=annotations[ANNOTATION_UPDATED],
    )
    return spec, identity


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _opt_int(value: object) -> int | None:
    return None if value is None else _int(value)
