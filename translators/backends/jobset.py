"""Backend `jobset`: JobSpec -> `jobset.x-k8s.io/v1alpha2` JobSet (kubernetes-sigs/jobset v0.12.0).

One JobSet per Clever job; validates against the v0.12.0 CRD with nothing pruned.

- Shape: one replicated job per replica type with count ≥ 1, named `chief`/`worker`/`ps`/`evaluator`,
  `replicas: 1` (one batch Job), `parallelism = completions = count`, `completionMode: Indexed`;
  `network.enableDNSHostnames: true`, so pod `i` of type `t` answers at `<js>-<t>-0-<i>.<js>` (the
  subdomain defaults to the JobSet's name). The pod template is translators.podtemplate's, the same
  container as on the TFJob backends, with restartPolicy `Never` (profile.queue has no JobSet field
  and is not used).
- TF_CONFIG: the cluster spec is known before any pod exists, so it is written into the template:
  every replica type (evaluator too, like the v1 operator) with hosts `<js>-<t>-0-<i>.<js>:2222`,
  `"environment": "cloud"`, and a task index taken from the pod's completion index through the
  downward API: `TF_TASK_INDEX` from `fieldRef metadata.annotations['batch.kubernetes.io/
  job-completion-index']`, defined before `TF_CONFIG`, whose value contains `$(TF_TASK_INDEX)` (the
  kubelet expands references to earlier variables). No init container, no API lookup. A job with one
  replica in all gets neither variable (nor does the v1 operator set TF_CONFIG then). The user may not
  set `TF_TASK_INDEX` or `JOB_COMPLETION_INDEX` (the Job controller's), nor run more than 100000
  replicas of a type (pod names would not fit): `check`.
- Success: with a chief, `successPolicy {operator: All, targetReplicatedJobs: [chief]}`; without one,
  worker 0 finishing ends the job (the v1 operator's default rule): the worker Job carries
  `successPolicy.rules [{succeededIndexes: "0"}]` and the JobSet targets `worker`. Parameter servers
  never exit and are never waited on; JobSet deletes the Jobs still active when it completes.
- Failures: each Job has `backoffLimit: 0`, so a failed pod fails its Job and the JobSet's
  `failurePolicy` decides. `backoffLimit` -> `failurePolicy.maxRestarts` (each restart recreates all
  Jobs: a fresh TensorFlow cluster, as Volcano's RestartJob); unset means JobSet's own default (no
  failurePolicy: the first failed Job fails the JobSet). `activeDeadlineSeconds` goes on every Job
  (a Job's clock starts with the Job, so a restart starts a new one: documented approximation, as on
  Volcano) with a failure rule `FailJobSet` on `DeadlineExceeded`, so a deadline ends the job instead
  of restarting it. `ttlSecondsAfterFinished` is the JobSet's own field. `cleanPodPolicy` and
  `successPolicy` have no JobSet field (JobSet deletes the active Jobs when it finishes; success is
  the rule above): they are kept in the spec annotation only.
- Updates: JobSet's webhook and CEL rules freeze `replicatedJobs`, `network`, `successPolicy` and
  `failurePolicy` on a live object, so in place are the description, `ttlSecondsAfterFinished`
  (mutable) and cleanPodPolicy/successPolicy (annotation only); backoffLimit and
  activeDeadlineSeconds need a new object.
- Names: the JobSet name is `<clever name>-<id part>` (translators.naming) of at most 39 characters,
  so the longest pod name `<js>-evaluator-0-<5-digit index>-<5 random>` fits 63 characters.
- Status: `Failed` / `Completed` / `Suspended` conditions (or `terminalState`) -> failed /
  succeeded / suspended; `RestartingJobSet` true -> restarting (a controller without that condition:
  `status.restarts` > 0 while no pod of the current `restart-attempt` runs yet); some replicated job
  ready or some pod running -> running; else pending; `deletionTimestamp` -> terminating. A failed
  JobSet says `BackoffLimitExceeded` when it reached maxRestarts and `DeadlineExceeded` when the
  deadline rule failed it; otherwise the pods' story (translators.status). Start time is the JobSet's
  creation (as the TFJob's startTime, set at its first reconcile), completion the terminal condition's.
- Pods: found by the gateway's job-id label; typed by `jobset.sigs.k8s.io/replicatedjob-name` and the
  `batch.kubernetes.io/job-completion-index` annotation (or label).
"""

from __future__ import annotations

import json
import re
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
from translators.naming import MAX_LABEL_LENGTH, object_name
from translators.podtemplate import PORT, metadata, pod_spec, pod_template_metadata
from translators.spec import (
    REPLICA_TYPES,
    Backend,
    ClusterProfile,
    JobIdentity,
    JobSpec,
    JobStatus,
    Phase,
    Replica,
)
from translators.status import (
    PodProblem,
    as_dict,
    as_int,
    as_str,
    dicts,
    honest,
    join,
    meta_value,
    no_object,
    replicas_from_pods,
)

RESOURCE = ApiResource("jobset.x-k8s.io", "v1alpha2", "jobsets", "JobSet")

TASK_INDEX_ENV = "TF_TASK_INDEX"
COMPLETION_INDEX_KEY = "batch.kubernetes.io/job-completion-index"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
RESTART_ATTEMPT_LABEL = "jobset.sigs.k8s.io/restart-attempt"
# Appended by the Job controller to every container of an Indexed Job's pods.
JOB_CONTROLLER_ENV = "JOB_COMPLETION_INDEX"
TASK_INDEX_FIELD = f"metadata.annotations['{COMPLETION_INDEX_KEY}']"

MAX_INDEX_DIGITS = 5
MAX_REPLICAS_PER_TYPE = 10**MAX_INDEX_DIGITS
_RANDOM_POD_SUFFIX = len("-abcde")
# Pod name `<js>-<replicated job>-<job index 0>-<pod index>-<5 random>` ≤ 63 for the longest type.
MAX_NAME_LENGTH = (MAX_LABEL_LENGTH - len(f"-{max(REPLICA_TYPES, key=len)}-0-") - MAX_INDEX_DIGITS
                   - _RANDOM_POD_SUFFIX)
# The failure-policy rule that makes a Job's deadline fail the JobSet rather than restart it.
DEADLINE_RULE_NAME = "deadlineFailsJobSet"
DEADLINE_REASONS = ["DeadlineExceeded"]
# JobSet's ttlSecondsAfterFinished is mutable; the other run-policy fields are frozen or body-less.
IN_PLACE_RUN_POLICY_FIELDS = frozenset({"ttl_seconds_after_finished", "clean_pod_policy", "success_policy"})


def tf_config(name: str, replicas: list[Replica], task_type: str) -> str:
    """TF_CONFIG of the pods of `task_type` in JobSet `name`; the index is `$(TF_TASK_INDEX)`."""
    cluster = {r.type: [f"{name}-{r.type}-0-{i}.{name}:{PORT}" for i in range(r.count)] for r in replicas}
    # Built as text: the index must reach the kubelet as a bare `$(VAR)` so it expands to a JSON number.
    return (f'{{"cluster":{json.dumps(cluster, separators=(",", ":"))},'
            f'"task":{{"type":{json.dumps(task_type)},"index":$({TASK_INDEX_ENV})}},"environment":"cloud"}}')


class JobSetBackend:
    """JobSets (see module docstring)."""

    name: Backend = "jobset"
    resource = RESOURCE
    in_place_fields = IN_PLACE_RUN_POLICY_FIELDS

    def object_name(self, name: str, job_id: str) -> str:
        """`<name>-<id part>`, ≤ 39 characters (see module docstring)."""
        return object_name(name, job_id, max_length=MAX_NAME_LENGTH)

    def check(self, spec: JobSpec) -> list[FieldError]:
        """The index variables are the gateway's and the Job controller's; pod indexes fit 5 digits."""
        problems = reserved_env(spec, frozenset({TASK_INDEX_ENV, JOB_CONTROLLER_ENV}),
                                setter="the JobSet backend")
        problems += [FieldError("replicas", f"at most {MAX_REPLICAS_PER_TYPE} {r.type} replicas on a "
                                            "JobSet cluster")
                     for r in spec.replicas if r.count > MAX_REPLICAS_PER_TYPE]
        return problems

    def build(self, spec: JobSpec, identity: JobIdentity, profile: ClusterProfile) -> dict[str, Any]:
        """The full JobSet body for `spec`."""
        ensure_runnable(self.check(spec), profile)
        name = self.object_name(spec.name, identity.id)
        active = [r for r in spec.replicas if r.count > 0]
        driver = "chief" if any(r.type == "chief" for r in active) else "worker"
        distributed = sum(r.count for r in active) > 1
        policy = spec.run_policy
        replicated_jobs = []
        for replica in active:
            template_spec = pod_spec(spec, replica, profile, restart_policy="Never")
            if distributed:
                template_spec["containers"][0].setdefault("env", []).extend([
                    {"name": TASK_INDEX_ENV, "valueFrom": {"fieldRef": {"fieldPath": TASK_INDEX_FIELD}}},
                    {"name": "TF_CONFIG", "value": tf_config(name, active, replica.type)},
                ])
            job_spec: dict[str, Any] = {
                "parallelism": replica.count,
                "completions": replica.count,
                "completionMode": "Indexed",
                "backoffLimit": 0,
                "template": {"metadata": pod_template_metadata(identity), "spec": template_spec},
            }
            if policy.active_deadline_seconds is not None:
                job_spec["activeDeadlineSeconds"] = policy.active_deadline_seconds
            if replica.type == driver == "worker":
                job_spec["successPolicy"] = {"rules": [{"succeededIndexes": "0"}]}
            replicated_jobs.append({"name": replica.type, "replicas": 1, "template": {"spec": job_spec}})
        body_spec: dict[str, Any] = {
            "network": {"enableDNSHostnames": True},
            "replicatedJobs": replicated_jobs,
            "successPolicy": {"operator": "All", "targetReplicatedJobs": [driver]},
        }
        if policy.backoff_limit is not None or policy.active_deadline_seconds is not None:
            failure: dict[str, Any] = {"maxRestarts": policy.backoff_limit or 0}
            if policy.active_deadline_seconds is not None:
                failure["rules"] = [{"name": DEADLINE_RULE_NAME, "action": "FailJobSet",
                                     "onJobFailureReasons": list(DEADLINE_REASONS)}]
            body_spec["failurePolicy"] = failure
        if policy.ttl_seconds_after_finished is not None:
            body_spec["ttlSecondsAfterFinished"] = policy.ttl_seconds_after_finished
        return {"apiVersion": RESOURCE.api_version, "kind": RESOURCE.kind,
                "metadata": metadata(spec, identity, profile, name=name), "spec": body_spec}

    def status(self, obj: dict[str, Any] | None, pods: list[dict[str, Any]],
               last_failure: PodProblem | None) -> JobStatus:
        """Legacy status of a JobSet and its pods (see module docstring)."""
        if obj is None:
            return no_object(pods, self.pod_role)
        status = as_dict(obj.get("status"))
        conditions = {as_str(c.get("type")): c for c in dicts(status.get("conditions"))}
        true = {kind for kind, c in conditions.items() if c.get("status") == "True"}
        terminal = as_str(status.get("terminalState"))
        restarts = as_int(status.get("restarts"))
        failure_policy = as_dict(obj.get("spec")).get("failurePolicy")
        bound = f" (maxRestarts {as_int(as_dict(failure_policy).get('maxRestarts'))})" if failure_policy else ""
        phase: Phase
        chosen: dict[str, Any] | None = None
        if "Failed" in true or terminal == "Failed":
            phase, chosen = "failed", conditions.get("Failed")
        elif "Completed" in true or terminal == "Completed":
            phase, chosen = "succeeded", conditions.get("Completed")
        elif "Suspended" in true:
            phase, chosen = "suspended", conditions["Suspended"]
        elif _restart_under_way(conditions, restarts, pods):
            phase, chosen = "restarting", conditions.get("RestartingJobSet")
        elif _running(status, pods):
            phase = "running"
        else:
            phase = "pending"
        if as_dict(obj.get("metadata")).get("deletionTimestamp"):
            phase = "terminating"
        reason = as_str(chosen.get("reason")) if chosen else None
        message = as_str(chosen.get("message")) if chosen else None
        failed_reason = None
        if phase == "restarting" and restarts:
            message = join(message, f"restart {restarts}{bound}")
        elif phase == "failed" and reason == "ReachedMaxRestarts":
            failed_reason = "BackoffLimitExceeded"
            message = join(message, f"restarted {restarts} times{bound}")
        elif phase == "failed" and reason == "FailJobSetFailurePolicyAction" and _only_deadline_fails(obj):
            failed_reason = "DeadlineExceeded"
            deadline = _deadline(obj)
            message = join(message, "a Job was active longer than specified deadline"
                           + (f" (activeDeadlineSeconds {deadline})" if deadline is not None else ""))
        reason, message = honest(phase, reason, message, pods, self.pod_role, failed_reason=failed_reason,
                                 last_failure=last_failure)
        completion_time = as_str(chosen.get("lastTransitionTime")) if chosen and phase in (
            "failed", "succeeded") else None
        return JobStatus(phase=phase, reason=reason, message=message,
                         start_time=as_str(as_dict(obj.get("metadata")).get("creationTimestamp")),
                         completion_time=completion_time, replicas=replicas_from_pods(pods, self.pod_role, last_failure))

    def classify_update(self, old: JobSpec, new: JobSpec) -> UpdateKind:
        """In place: the description, ttlSecondsAfterFinished, cleanPodPolicy and successPolicy."""
        return classify(old, new, self.in_place_fields)

    def in_place_patch(self, old: JobSpec, new: JobSpec, identity: JobIdentity,
                       profile: ClusterProfile) -> dict[str, Any]:
        """Merge patch for a live JobSet: the annotations, and `spec.ttlSecondsAfterFinished` if it
        changes."""
        if self.classify_update(old, new) == "recreate":
            raise SpecError("this change cannot be applied to a live JobSet; the job must be recreated",
                            fields=[FieldError("", "only description, ttlSecondsAfterFinished, "
                                                   "cleanPodPolicy and successPolicy change in place "
                                                   "on JobSet")])
        patch: dict[str, Any] = {"metadata": {"annotations": update_annotations(new, identity)}}
        ttl = new.run_policy.ttl_seconds_after_finished
        if ttl != old.run_policy.ttl_seconds_after_finished:
            patch["spec"] = {"ttlSecondsAfterFinished": ttl}  # None: merge-patch null removes it
        return patch

    def pod_selector(self, job_id: str) -> str:
        """The gateway's job-id label, which the Jobs copy from the pod template."""
        return labels.pod_selector(job_id)

    def pod_role(self, pod: dict[str, Any]) -> tuple[str, int] | None:
        """The replicated job's name and the pod's completion index; None on a pod JobSet did not make."""
        replica_type = meta_value(pod, (REPLICATED_JOB_LABEL,))
        if replica_type is None:
            return None
        index = meta_value(pod, (COMPLETION_INDEX_KEY,)) or ""
        return replica_type, int(index) if re.fullmatch(r"[0-9]{1,9}", index) else 0

    def rbac_rules(self) -> list[RbacRule]:
        """JobSets, and read access to their pods."""
        return job_rules(RESOURCE)

    def from_object(self, obj: dict[str, Any]) -> tuple[JobSpec, JobIdentity]:
        """Rebuild (spec, identity) from a JobSet we made."""
        return record_of_kind(obj, RESOURCE.kind, "JobSet")


def _restart_under_way(conditions: dict[str | None, dict[str, Any]], restarts: int,
                       pods: list[dict[str, Any]]) -> bool:
    restarting = conditions.get("RestartingJobSet")
    if restarting is not None:
        return restarting.get("status") == "True"
    # A controller without the condition: the restart lasts until a pod of the new attempt runs.
    current = [p for p in pods if meta_value(p, (RESTART_ATTEMPT_LABEL,)) == str(restarts)]
    return restarts > 0 and not any(_pod_phase(p) in ("Running", "Succeeded") for p in current)


def _running(status: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    ready = any(as_int(r.get("ready")) > 0 for r in dicts(status.get("replicatedJobsStatus")))
    return ready or any(_pod_phase(p) == "Running" for p in pods)


def _pod_phase(pod: dict[str, Any]) -> str | None:
    return as_str(as_dict(pod.get("status")).get("phase"))


def _only_deadline_fails(obj: dict[str, Any]) -> bool:
    """Whether the JobSet's only FailJobSet rules are deadline rules (so FailJobSet means a deadline)."""
    rules = dicts(as_dict(as_dict(obj.get("spec")).get("failurePolicy")).get("rules"))
    failing = [r for r in rules if r.get("action") == "FailJobSet"]
    return bool(failing) and all(r.get("onJobFailureReasons") == DEADLINE_REASONS for r in failing)


def _deadline(obj: dict[str, Any]) -> int | None:
    for replicated in dicts(as_dict(obj.get("spec")).get("replicatedJobs")):
        deadline = as_dict(as_dict(replicated.get("template")).get("spec")).get("activeDeadlineSeconds")
        if isinstance(deadline, int):
            return deadline
    return None
