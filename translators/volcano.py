"""JobSpec -> `batch.volcano.sh/v1alpha1` Job (Volcano), validated against the v1.15.1 CRD.

- One task per replica type with count > 0, named `chief`/`worker`/`ps`/`evaluator` (the names the
  `tensorflow` plugin is told about, so it writes TF_CONFIG into every container), each
  `minAvailable` = its replicas; the job's `minAvailable` = total replicas (gang).
- `schedulerName` = profile.scheduler_name or `volcano`; `queue` = profile.queue or `default`;
  `priorityClassName` from the profile.
- plugins: `tensorflow` (`--port=2222 --ps=ps --worker=worker --chief=chief
  --evaluator=evaluator`), `env` and `svc` (hostnames the TF_CONFIG hosts resolve to).
- policies: job-level `PodEvicted -> RestartJob` and `PodFailed -> RestartJob` (pods use
  restartPolicy `Never`, so a failed replica restarts the whole gang, at most `maxRetry` times,
  after which the job is Failed; without the PodFailed policy a dead worker would leave the ps
  running forever); on the chief task, or the worker task when there is no chief,
  `TaskCompleted -> CompleteJob`.
- run policy: `backoffLimit` -> `maxRetry` (3 when unset, Volcano's default),
  `ttlSecondsAfterFinished` as is. `activeDeadlineSeconds` has no job-level field in Volcano: it
  becomes the pods' `activeDeadlineSeconds` (each pod is killed that long after it starts; a
  restarted gang starts a new clock, so a job gets up to maxRetry + 1 deadlines before it fails --
  documented approximation; the status then says `DeadlineExceeded`). `cleanPodPolicy` and
  `successPolicy` have no Volcano equivalent (Volcano keeps finished pods; the job completes when
  the chief task, or every worker, completes); they are kept in the spec annotation only.
- updates: Volcano's admission webhook only lets `minAvailable`, `tasks[*].replicas` and
  `priorityClassName` change on a live job, so in-place changes are annotation-only: the
  description, and cleanPodPolicy/successPolicy (no Volcano field). Other run-policy changes mean
  recreate (`classify_update(..., profile=<volcano profile>)` says so).
"""

from __future__ import annotations

from typing import Any

from translators.clever import classify_update
from translators.errors import FieldError, NotTranslatable, SpecError
from translators.labels import (
    pod_template_annotations,
    pod_template_labels,
    record_from_metadata,
    update_annotations,
)
from translators.spec import ClusterProfile, JobIdentity, JobSpec
from translators.tfjob import PORT, metadata, pod_spec

API_VERSION = "batch.volcano.sh/v1alpha1"
KIND = "Job"
DEFAULT_SCHEDULER = "volcano"
DEFAULT_QUEUE = "default"
DEFAULT_MAX_RETRY = 3
_VOLCANO = ClusterProfile(id="volcano", backend="volcano")  # stands for any Volcano cluster in classify_update
TENSORFLOW_PLUGIN_ARGS = [f"--port={PORT}", "--ps=ps", "--worker=worker", "--chief=chief",
                          "--evaluator=evaluator"]


def to_vcjob(spec: JobSpec, identity: JobIdentity, profile: ClusterProfile) -> dict[str, Any]:
    """The full Volcano Job body for `spec`."""
    active = [r for r in spec.replicas if r.count > 0]
    driver = "chief" if any(r.type == "chief" for r in active) else "worker"
    tasks = []
    for replica in active:
        template_spec = pod_spec(spec, replica, profile, restart_policy="Never")
        if spec.run_policy.active_deadline_seconds is not None:
            template_spec["activeDeadlineSeconds"] = spec.run_policy.active_deadline_seconds
        task: dict[str, Any] = {
            "name": replica.type,
            "replicas": replica.count,
            "minAvailable": replica.count,
            "template": {
                "metadata": {"labels": pod_template_labels(identity),
                             "annotations": pod_template_annotations(identity)},
                "spec": template_spec,
            },
        }
        if replica.type == driver:
            task["policies"] = [{"event": "TaskCompleted", "action": "CompleteJob"}]
        tasks.append(task)
    # Volcano's webhook turns maxRetry 0 into 3, so "no retries" (backoffLimit 0) is said with the
    # failure policies instead: the first failed or evicted pod terminates the job.
    on_failure = "TerminateJob" if spec.run_policy.backoff_limit == 0 else "RestartJob"
    body_spec: dict[str, Any] = {
        "schedulerName": profile.scheduler_name or DEFAULT_SCHEDULER,
        "queue": profile.queue or DEFAULT_QUEUE,
        "minAvailable": sum(r.count for r in active),
        "maxRetry": (DEFAULT_MAX_RETRY if not spec.run_policy.backoff_limit
                     else spec.run_policy.backoff_limit),
        "plugins": {"tensorflow": list(TENSORFLOW_PLUGIN_ARGS), "env": [], "svc": []},
        "policies": [{"event": "PodEvicted", "action": on_failure},
                     {"event": "PodFailed", "action": on_failure}],
        "tasks": tasks,
    }
    if spec.run_policy.ttl_seconds_after_finished is not None:
        body_spec["ttlSecondsAfterFinished"] = spec.run_policy.ttl_seconds_after_finished
    if profile.priority_class:
        body_spec["priorityClassName"] = profile.priority_class
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata(spec, identity, profile),
            "spec": body_spec}


def vcjob_in_place_patch(old: JobSpec, new: JobSpec, identity: JobIdentity) -> dict[str, Any]:
    """Merge patch for a live Volcano Job: annotations only (see module docstring)."""
    if classify_update(old, new, profile=_VOLCANO) == "recreate":
        raise SpecError("this change cannot be applied to a live Volcano job; the job must be recreated",
                        fields=[FieldError("", "only description, cleanPodPolicy and successPolicy change "
                                               "in place on Volcano")])
    return {"metadata": {"annotations": update_annotations(new, identity)}}


def vcjob_from_cluster_object(obj: dict[str, Any]) -> tuple[JobSpec, JobIdentity]:
    """Rebuild (spec, identity) from a Volcano Job we made."""
    if obj.get("kind") not in (None, KIND):
        raise NotTranslatable(f"not a Volcano Job: {obj.get('kind')!r}")
    return record_from_metadata(obj.get("metadata"))
