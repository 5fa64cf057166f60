"""Backend `volcano`: JobSpec -> `batch.volcano.sh/v1alpha1` Job, validated against the v1.15.1 CRD.

- One task per replica type with count > 0, named `chief`/`worker`/`ps`/`evaluator` (the names the
  `tensorflow` plugin is told about, so it writes TF_CONFIG into every container), each
  `minAvailable` = its replicas; the job's `minAvailable` = total replicas (gang). Pod templates are
  translators.podtemplate's, with restartPolicy `Never`.
- `schedulerName` = profile.scheduler_name or `volcano`; `queue` = profile.queue or `default`;
  `priorityClassName` from the profile.
- plugins: `tensorflow` (`--port=2222 --ps=ps --worker=worker --chief=chief
  --evaluator=evaluator`), `env` and `svc` (hostnames the TF_CONFIG hosts resolve to). The `env`
  plugin sets `VK_TASK_INDEX`/`VC_TASK_INDEX`, so a spec may not (`check`).
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
  a new object.
- status from `status.state.phase`: Pending -> pending, Running/Completing -> running,
  Restarting -> restarting, Completed -> succeeded, Failed/Terminated -> failed,
  Aborting/Aborted -> suspended, Terminating -> terminating; none yet -> pending. A job that ran out
  of retries is `BackoffLimitExceeded`, or `DeadlineExceeded` when its pods kept hitting their deadline.
- pods: found by the gateway's job-id label; typed by `volcano.sh/task-spec|task-index` (labels or
  annotations), else the `<job>-<task>-<index>` name.
"""

from __future__ import annotations

from typing import Any

from translators import labels
from translators.backends.base import (
    ApiResource,
    RbacRule,
    UpdateKind,
    classify,
    ensure_runnable,
    job_rules,
    record_of_kind,
    reserved_env,
)
from translators.errors import FieldError, SpecError
from translators.labels import update_annotations
from translators.naming import object_name
from translators.podtemplate import PORT, metadata, pod_spec, pod_template_metadata
from translators.spec import Backend, ClusterProfile, JobIdentity, JobSpec, JobStatus, Phase
from translators.status import (
    PodProblem,
    as_dict,
    as_int,
    as_str,
    dicts,
    honest,
    no_object,
    replicas_from_pods,
    role_from_metadata,
)

RESOURCE = ApiResource("batch.volcano.sh", "v1alpha1", "jobs", "Job")
DEFAULT_SCHEDULER = "volcano"
DEFAULT_QUEUE = "default"
DEFAULT_MAX_RETRY = 3
TENSORFLOW_PLUGIN_ARGS = [f"--port={PORT}", "--ps=ps", "--worker=worker", "--chief=chief",
                          "--evaluator=evaluator"]
# Set by the `env` plugin on every container.
PLUGIN_ENV = frozenset({"VK_TASK_INDEX", "VC_TASK_INDEX"})
# On Volcano these two have no counterpart in the job body (they live in the spec annotation only),
# while every other field is frozen by Volcano's admission webhook on a live job.
IN_PLACE_RUN_POLICY_FIELDS = frozenset({"clean_pod_policy", "success_policy"})
TYPE_KEYS = ("volcano.sh/task-spec",)
INDEX_KEYS = ("volcano.sh/task-index",)
PHASES: dict[str, Phase] = {
    "Pending": "pending", "Running": "running", "Completing": "running", "Restarting": "restarting",
    "Completed": "succeeded", "Failed": "failed", "Terminated": "failed", "Aborting": "suspended",
    "Aborted": "suspended", "Terminating": "terminating",
}


class VolcanoBackend:
    """Volcano Jobs (see module docstring)."""

    name: Backend = "volcano"
    resource = RESOURCE
    in_place_fields = IN_PLACE_RUN_POLICY_FIELDS

    def object_name(self, name: str, job_id: str) -> str:
        """`<name>-<id part>`, ≤ 47 characters, so pod names `<job>-<task>-<i>` fit (translators.naming)."""
        return object_name(name, job_id)

    def check(self, spec: JobSpec) -> list[FieldError]:
        """The `env` plugin's variables are Volcano's to set."""
        return reserved_env(spec, PLUGIN_ENV, setter="Volcano")

    def build(self, spec: JobSpec, identity: JobIdentity, profile: ClusterProfile) -> dict[str, Any]:
        """The full Volcano Job body for `spec`."""
        ensure_runnable(self.check(spec), profile)
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
                "template": {"metadata": pod_template_metadata(identity), "spec": template_spec},
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
        name = self.object_name(spec.name, identity.id)
        return {"apiVersion": RESOURCE.api_version, "kind": RESOURCE.kind,
                "metadata": metadata(spec, identity, profile, name=name), "spec": body_spec}

    def status(self, obj: dict[str, Any] | None, pods: list[dict[str, Any]],
               last_failure: PodProblem | None) -> JobStatus:
        """Legacy status of a Volcano Job and its pods (see module docstring)."""
        if obj is None:
            return no_object(pods, self.pod_role)
        status = as_dict(obj.get("status"))
        state = as_dict(status.get("state"))
        volcano_phase = as_str(state.get("phase")) or ""
        phase: Phase = PHASES.get(volcano_phase, "pending")
        if as_dict(obj.get("metadata")).get("deletionTimestamp"):
            phase = "terminating"
        reason = as_str(state.get("reason")) or volcano_phase or None
        message = as_str(state.get("message")) or None
        conditions = dicts(status.get("conditions"))
        start_time = next((as_str(c.get("lastTransitionTime")) for c in conditions
                           if c.get("status") == "Running"), None)
        completion_time = None
        if volcano_phase in ("Completed", "Failed", "Terminated"):
            completion_time = as_str(state.get("lastTransitionTime")) or next(
                (as_str(c.get("lastTransitionTime")) for c in reversed(conditions)
                 if c.get("status") == volcano_phase), None)
        failed_reason = None
        max_retry = as_int(as_dict(obj.get("spec")).get("maxRetry", DEFAULT_MAX_RETRY))
        retries = as_int(status.get("retryCount"))
        if phase == "failed" and volcano_phase == "Failed" and retries >= max_retry and retries > 0:
            # Volcano has no job deadline: the body puts it on the pods, whose kills use up the retries.
            failed_reason = "DeadlineExceeded" if last_failure and last_failure.reason == "DeadlineExceeded" \
                else "BackoffLimitExceeded"
            message = message or f"the job was restarted {retries} times (maxRetry {max_retry})"
        reason, message = honest(phase, reason, message, pods, self.pod_role, failed_reason=failed_reason,
                                 last_failure=last_failure)
        return JobStatus(phase=phase, reason=reason, message=message, start_time=start_time,
                         completion_time=completion_time, replicas=replicas_from_pods(pods, self.pod_role, last_failure))

    def classify_update(self, old: JobSpec, new: JobSpec) -> UpdateKind:
        """In place: the description, cleanPodPolicy and successPolicy (annotation-only on Volcano)."""
        return classify(old, new, self.in_place_fields)

    def in_place_patch(self, old: JobSpec, new: JobSpec, identity: JobIdentity,
                       profile: ClusterProfile) -> dict[str, Any]:
        """Merge patch for a live Volcano Job: annotations only (see module docstring)."""
        if self.classify_update(old, new) == "recreate":
            raise SpecError("this change cannot be applied to a live Volcano job; the job must be recreated",
                            fields=[FieldError("", "only description, cleanPodPolicy and successPolicy "
                                                   "change in place on Volcano")])
        return {"metadata": {"annotations": update_annotations(new, identity)}}

    def pod_selector(self, job_id: str) -> str:
        """The gateway's job-id label, which Volcano copies from the task templates."""
        return labels.pod_selector(job_id)

    def pod_role(self, pod: dict[str, Any]) -> tuple[str, int] | None:
        """From `volcano.sh/task-spec|task-index` (labels or annotations), else the pod name."""
        return role_from_metadata(pod, TYPE_KEYS, INDEX_KEYS)

    def rbac_rules(self) -> list[RbacRule]:
        """Volcano Jobs, their PodGroups (queue/gang state), job Commands, and read access to pods."""
        return [
            *job_rules(RESOURCE),
            {"apiGroups": ["scheduling.volcano.sh"], "resources": ["podgroups"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["bus.volcano.sh"], "resources": ["commands"], "verbs": ["create"]},
        ]

    def from_object(self, obj: dict[str, Any]) -> tuple[JobSpec, JobIdentity]:
        """Rebuild (spec, identity) from a Volcano Job we made."""
        return record_of_kind(obj, RESOURCE.kind, "Volcano Job")
