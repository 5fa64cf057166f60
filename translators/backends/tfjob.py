"""What the two TFJob backends share: JobSpec -> `kubeflow.org/v1` TFJob and back, status, pods.

Both dialects (translators.backends.training_operator, translators.backends.tf_operator) build the
same TFJob and differ only in where the run policy sits; each says so through the two hooks of
`TFJobBackend` (`run_policy_body`, `run_policy_patch`).

Body: one `tfReplicaSpecs` entry per replica type with count > 0 (`Chief`/`Worker`/`PS`/`Evaluator`),
`replicas` = count, the pod template of translators.podtemplate; `successPolicy` when the spec sets one.
Restart policy per replica: `ps` -> `OnFailure` (parameter servers never finish; restart them in
place whatever killed them); `chief`/`worker`/`evaluator` -> `ExitCode`: exit codes 1-127 are
the program's own errors and fail the job at once instead of crash-looping until backoffLimit,
while ≥ 128 (OOM kill, preemption, SIGTERM) restarts the pod, bounded by backoffLimit. The policy
is set on the ReplicaSpec only: the operators overwrite a template-level one (with a warning).

Updates: a live TFJob takes merge patches of labels, annotations and the run-policy fields
`activeDeadlineSeconds`, `ttlSecondsAfterFinished`, `cleanPodPolicy` (seeds 001/002); so the
description and those three change in place, anything else (backoffLimit and successPolicy included)
needs a new object.

Status: `metadata.deletionTimestamp` -> terminating; else the last true Succeeded/Failed condition
decides (terminal, the operator changes nothing after them); else the last true condition among
Created -> pending, Running -> running, Restarting -> restarting, Suspended -> suspended; no status or
no true condition -> pending. A failed job says `BackoffLimitExceeded` / `DeadlineExceeded` when the
operator's reason or message does.

Pods: found by the gateway's job-id label; typed by `training.kubeflow.org/replica-type|index` (or the
older unprefixed `replica-type|index`), else the `<job>-<type>-<index>` name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from translators import labels
from translators.backends.base import (
    ApiResource,
    RbacRule,
    UpdateKind,
    changed_policy,
    classify,
    ensure_runnable,
    job_rules,
    record_of_kind,
)
from translators.errors import FieldError, SpecError
from translators.labels import update_annotations
from translators.naming import object_name
from translators.podtemplate import metadata, pod_spec, pod_template_metadata
from translators.spec import Backend, ClusterProfile, JobIdentity, JobSpec, JobStatus, Phase, RunPolicy
from translators.status import (
    PodProblem,
    as_dict,
    as_str,
    dicts,
    honest,
    no_object,
    replicas_from_pods,
    role_from_metadata,
)

RESOURCE = ApiResource("kubeflow.org", "v1", "tfjobs", "TFJob")

REPLICA_KEYS = {"chief": "Chief", "worker": "Worker", "ps": "PS", "evaluator": "Evaluator"}
RESTART_POLICIES = {"chief": "ExitCode", "worker": "ExitCode", "ps": "OnFailure", "evaluator": "ExitCode"}
# RunPolicy attribute -> Kubernetes field, for the fields that live in runPolicy (or spec).
RUN_POLICY_FIELDS = {
    "active_deadline_seconds": "activeDeadlineSeconds",
    "ttl_seconds_after_finished": "ttlSecondsAfterFinished",
    "clean_pod_policy": "cleanPodPolicy",
    "backoff_limit": "backoffLimit",
}
# Run-policy fields a live TFJob accepts in a merge patch (seeds 001/002 list exactly these).
IN_PLACE_RUN_POLICY_FIELDS = frozenset({"active_deadline_seconds", "ttl_seconds_after_finished",
                                        "clean_pod_policy"})
TYPE_KEYS = ("training.kubeflow.org/replica-type", "replica-type")
INDEX_KEYS = ("training.kubeflow.org/replica-index", "replica-index")
CONDITION_PHASES: dict[str, Phase] = {
    "Created": "pending", "Running": "running", "Restarting": "restarting", "Suspended": "suspended",
    "Succeeded": "succeeded", "Failed": "failed",
}


class TFJobBackend(ABC):
    """A TFJob backend; subclasses name the dialect and place the run policy."""

    name: Backend
    resource = RESOURCE
    in_place_fields = IN_PLACE_RUN_POLICY_FIELDS

    @abstractmethod
    def run_policy_body(self, policy: dict[str, Any], spec: JobSpec,
                        profile: ClusterProfile) -> dict[str, Any]:
        """The `spec` fields that carry `policy` (Kubernetes field -> value, only the set ones)."""

    @abstractmethod
    def run_policy_patch(self, changes: dict[str, Any]) -> dict[str, Any]:
        """The `spec` part of a merge patch changing these run-policy fields."""

    def object_name(self, name: str, job_id: str) -> str:
        """`<name>-<id part>`, ≤ 47 characters (translators.naming)."""
        return object_name(name, job_id)

    def check(self, spec: JobSpec) -> list[FieldError]:
        """Every spec the legacy reader accepts runs on a TFJob."""
        return []

    def build(self, spec: JobSpec, identity: JobIdentity, profile: ClusterProfile) -> dict[str, Any]:
        """The full TFJob body for `spec` in this dialect."""
        ensure_runnable(self.check(spec), profile)
        replica_specs = {
            REPLICA_KEYS[r.type]: {
                "replicas": r.count,
                "restartPolicy": RESTART_POLICIES[r.type],
                "template": {"metadata": pod_template_metadata(identity),
                             "spec": pod_spec(spec, r, profile, restart_policy=None)},
            }
            for r in spec.replicas if r.count > 0
        }
        body_spec: dict[str, Any] = {"tfReplicaSpecs": replica_specs}
        policy = _with_defaults(_policy(spec.run_policy), profile)
        body_spec.update(self.run_policy_body(policy, spec, profile))
        if spec.run_policy.success_policy is not None:
            body_spec["successPolicy"] = spec.run_policy.success_policy
        name = self.object_name(spec.name, identity.id)
        return {"apiVersion": RESOURCE.api_version, "kind": RESOURCE.kind,
                "metadata": metadata(spec, identity, profile, name=name), "spec": body_spec}

    def status(self, obj: dict[str, Any] | None, pods: list[dict[str, Any]],
               last_failure: PodProblem | None) -> JobStatus:
        """Legacy status of a TFJob (either dialect) and its pods (see module docstring)."""
        if obj is None:
            return no_object(pods, self.pod_role)
        status = as_dict(obj.get("status"))
        true = [c for c in dicts(status.get("conditions"))
                if c.get("status") == "True" and as_str(c.get("type")) in CONDITION_PHASES]
        terminal = [c for c in true if c["type"] in ("Succeeded", "Failed")]
        chosen = terminal[-1] if terminal else (true[-1] if true else None)
        phase: Phase = CONDITION_PHASES[chosen["type"]] if chosen else "pending"
        if as_dict(obj.get("metadata")).get("deletionTimestamp"):
            phase = "terminating"
        reason = as_str(chosen.get("reason")) if chosen else None
        message = as_str(chosen.get("message")) if chosen else None
        failed_reason = None
        lowered = (message or "").lower()
        # Job names cannot contain spaces, so these phrases cannot come from a name like "deadline-1".
        if reason in ("BackoffLimitExceeded", "DeadlineExceeded"):
            failed_reason = reason
        elif "backoff limit" in lowered:
            failed_reason = "BackoffLimitExceeded"
        elif "longer than specified deadline" in lowered or "deadline exceeded" in lowered:
            failed_reason = "DeadlineExceeded"
        reason, message = honest(phase, reason, message, pods, self.pod_role, failed_reason=failed_reason,
                                 last_failure=last_failure)
        return JobStatus(phase=phase, reason=reason, message=message,
                         start_time=as_str(status.get("startTime")),
                         completion_time=as_str(status.get("completionTime")),
                         replicas=replicas_from_pods(pods, self.pod_role, last_failure))

    def classify_update(self, old: JobSpec, new: JobSpec) -> UpdateKind:
        """In place: the description, activeDeadlineSeconds, ttlSecondsAfterFinished, cleanPodPolicy."""
        return classify(old, new, self.in_place_fields)

    def in_place_patch(self, old: JobSpec, new: JobSpec, identity: JobIdentity,
                       profile: ClusterProfile) -> dict[str, Any]:
        """Merge patch turning the live TFJob of `old` into `new` (description / run policy only)."""
        if self.classify_update(old, new) == "recreate":
            raise SpecError("this change cannot be applied to a live TFJob; the job must be recreated",
                            fields=[FieldError("", "only description, activeDeadlineSeconds, "
                                                   "ttlSecondsAfterFinished and cleanPodPolicy change "
                                                   "in place")])
        changes = {RUN_POLICY_FIELDS[attr]: getattr(new.run_policy, attr)
                   for attr in changed_policy(old, new, self.in_place_fields)}
        if "cleanPodPolicy" in changes:
            # Cleared: back to what a create gets, not to the operator's own default (None: pods stay).
            changes = _with_defaults(changes, profile)
        patch: dict[str, Any] = {"metadata": {"annotations": update_annotations(new, identity)}}
        if changes:
            patch["spec"] = self.run_policy_patch(changes)
        return patch

    def pod_selector(self, job_id: str) -> str:
        """The gateway's job-id label, which the operator copies from the pod template."""
        return labels.pod_selector(job_id)

    def pod_role(self, pod: dict[str, Any]) -> tuple[str, int] | None:
        """From the operator's replica-type/index labels (either generation), else the pod name."""
        return role_from_metadata(pod, TYPE_KEYS, INDEX_KEYS)

    def rbac_rules(self) -> list[RbacRule]:
        """TFJobs, and read access to their pods."""
        return job_rules(RESOURCE)

    def from_object(self, obj: dict[str, Any]) -> tuple[JobSpec, JobIdentity]:
        """Rebuild (spec, identity) from a TFJob we made."""
        return record_of_kind(obj, RESOURCE.kind, "TFJob")


def _with_defaults(policy: dict[str, Any], profile: ClusterProfile) -> dict[str, Any]:
    """Run-policy fields, with the cluster's default cleanPodPolicy where none is set."""
    if policy.get("cleanPodPolicy") is None and profile.default_clean_pod_policy is not None:
        return {**policy, "cleanPodPolicy": profile.default_clean_pod_policy}
    return policy


def _policy(policy: RunPolicy) -> dict[str, Any]:
    """The set run-policy fields under their TFJob names."""
    return {field: getattr(policy, attr) for attr, field in RUN_POLICY_FIELDS.items()
            if getattr(policy, attr) is not None}
