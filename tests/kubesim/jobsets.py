"""JobSet bodies for the kubesim tests, shaped as KUBERNETES-FACTS §5.3 describes a distributed TensorFlow
job: one replicated job per replica type, `replicas: 1`, `parallelism = completions = count`, the task
index from the completion-index annotation (downward API) and TF_CONFIG referring to it as
`$(TF_TASK_INDEX)`. `clean(body)` asserts a body passes the shipped CRD's schema with nothing pruned.
"""

from __future__ import annotations

import json
from typing import Any

from kubesim import schema
from kubesim.store import JOBSETS

JOBSETS_PATH = "/apis/jobset.x-k8s.io/v1alpha2/namespaces/{ns}/jobsets"
JOBS_PATH = "/apis/batch/v1/namespaces/{ns}/jobs"
INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
PORT = 2222


def cluster_spec(name: str, counts: dict[str, int], *, subdomain: str | None = None) -> dict[str, list[str]]:
    """The TF cluster spec known before any pod exists: `<js>-<type>-0-<i>.<subdomain>:<port>`."""
    host = subdomain or name
    return {rtype: [f"{name}-{rtype}-0-{i}.{host}:{PORT}" for i in range(count)] for rtype, count in counts.items()}


def tf_config_template(name: str, counts: dict[str, int], rtype: str) -> str:
    """TF_CONFIG as the gateway writes it: JSON whose task index is `$(TF_TASK_INDEX)` for the kubelet."""
    body = {"cluster": cluster_spec(name, counts), "task": {"type": rtype, "index": 0}, "environment": "cloud"}
    return json.dumps(body, separators=(",", ":")).replace('"index":0', '"index":$(TF_TASK_INDEX)')


def tf_jobset(name: str = "j1", counts: dict[str, int] | None = None, *, backoff_limit: int | None = None,
              success_targets: list[str] | None = None, failure_policy: dict[str, Any] | None = None,
              annotations: dict[str, str] | None = None, suspend: bool | None = None,
              ttl: int | None = None, job_success_policy: dict[str, dict[str, Any]] | None = None,
              pod_annotations: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """A JobSet running one TensorFlow task per pod (1 chief, 2 ps, 3 workers by default)."""
    counts = counts if counts is not None else {"chief": 1, "ps": 2, "worker": 3}
    replicated = []
    for rtype, count in counts.items():
        job_spec: dict[str, Any] = {"parallelism": count, "completions": count, "template": {
            "metadata": {"labels": {"clever.dev/job": name, "clever.dev/replica-type": rtype}},
            "spec": {"containers": [{
                "name": "tensorflow", "image": "tensorflow/tensorflow:2.15.0",
                "ports": [{"name": "tfjob-port", "containerPort": PORT}],
                "env": [{"name": "TF_TASK_INDEX", "valueFrom": {"fieldRef": {"fieldPath": INDEX_FIELD}}},
                        {"name": "TF_CONFIG", "value": tf_config_template(name, counts, rtype)}]}]}}}
        if backoff_limit is not None:
            job_spec["backoffLimit"] = backoff_limit
        if job_success_policy and rtype in job_success_policy:
            job_spec["successPolicy"] = job_success_policy[rtype]
        if pod_annotations and rtype in pod_annotations:
            job_spec["template"]["metadata"]["annotations"] = dict(pod_annotations[rtype])
        replicated.append({"name": rtype, "replicas": 1, "template": {"spec": job_spec}})
    spec: dict[str, Any] = {"replicatedJobs": replicated}
    if success_targets is not None:
        spec["successPolicy"] = {"operator": "All", "targetReplicatedJobs": success_targets}
    if failure_policy is not None:
        spec["failurePolicy"] = failure_policy
    if suspend is not None:
        spec["suspend"] = suspend
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = dict(annotations)
    return clean({"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": meta, "spec": spec})


def minimal_jobset(name: str = "mini", *, rjob: str = "worker", **spec_extra: Any) -> dict[str, Any]:
    """One replicated job with one container and nothing else."""
    spec = {"replicatedJobs": [{"name": rjob, "template": {"spec": {"template": {"spec": {
        "containers": [{"name": "main", "image": "busybox:1.36"}]}}}}}], **spec_extra}
    return clean({"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": name},
                  "spec": spec})


def clean(body: dict[str, Any]) -> dict[str, Any]:
    """`body`, after asserting the CRD schema accepts it and would prune nothing."""
    checked = schema.check(JOBSETS, body)
    assert checked.causes == [] and checked.pruned == [], (checked.causes, checked.pruned)
    return body


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    """The condition of that type with status True, if any."""
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or []
                 if c.get("type") == ctype and c.get("status") == "True"), None)
