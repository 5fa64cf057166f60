"""Cluster status -> legacy JobStatus: phase, an honest reason/message, times, and replicas.

Phase (DESIGN §2):
- TFJob: `metadata.deletionTimestamp` -> terminating; else the last true Succeeded/Failed
  condition decides (terminal, the operator changes nothing after them); else the last true
  condition among Created -> pending, Running -> running, Restarting -> restarting,
  Suspended -> suspended; no status or no true condition -> pending.
- Volcano `status.state.phase`: Pending -> pending, Running/Completing -> running,
  Restarting -> restarting, Completed -> succeeded, Failed/Terminated -> failed,
  Aborting/Aborted -> suspended, Terminating -> terminating; none yet -> pending.
- No object (`obj is None`): `terminating` while pods remain (garbage collection in progress),
  else `pending` with reason `NotFound`. Whether that is really `queued` (accepted, not yet on the
  cluster) only the gateway knows, from its outbox.

Reason/message tell the truth about the worst thing the pods show, with the job condition:
pod problems are ranked OOMKilled > failed pod (Evicted, DeadlineExceeded...: the pod's own
`status.reason` wins over its containers' states) / non-zero exit >
CrashLoopBackOff > image pull and container config errors > Unschedulable > an earlier crash of a
now running container. A failed job's reason is `BackoffLimitExceeded` / `DeadlineExceeded` when
the operator says so (or Volcano's retryCount reached maxRetry), else the worst pod problem, else the
condition's reason; the message is the operator's message followed by the pod's story.

The pods that tell the story are often gone by the time the verdict comes (Volcano deletes the whole
gang on every restart; cleanPodPolicy deletes them at the end), so the caller may pass the
`last_failure` it saw earlier (`failure_of` on each pod as it changes): a restarting or failed job
with no problem in its current pods tells it as "last failure: ...". A Volcano job that ran out of
retries because its pods kept hitting their `activeDeadlineSeconds` is `DeadlineExceeded`.

Replicas come from the pods, sorted (chief, worker, ps, evaluator, others; index; name); type and
index from either dialect's labels (`training.kubeflow.org/replica-type|index`, the older
`replica-type|index`, Volcano's `volcano.sh/task-spec|task-index` labels or annotations), else
the pod name's numeric suffix. restartCount sums all containers; reason/message come from a
Failed pod's own `status.reason`/`message` (Evicted...), else an Unschedulable PodScheduled
condition, else the `tensorflow` container's waiting/terminated state; exitCode always from
that container.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from translators.spec import REPLICA_TYPES, JobStatus, Phase, ReplicaStatus

CONTAINER_NAME = "tensorflow"
TYPE_KEYS = ("training.kubeflow.org/replica-type", "replica-type", "volcano.sh/task-spec")
INDEX_KEYS = ("training.kubeflow.org/replica-index", "replica-index", "volcano.sh/task-index")
_TYPE_ORDER: dict[str, int] = {t: i for i, t in enumerate(REPLICA_TYPES)}

TFJOB_CONDITION_PHASES: dict[str, Phase] = {
    "Created": "pending", "Running": "running", "Restarting": "restarting", "Suspended": "suspended",
    "Succeeded": "succeeded", "Failed": "failed",
}
VOLCANO_PHASES: dict[str, Phase] = {
    "Pending": "pending", "Running": "running", "Completing": "running", "Restarting": "restarting",
    "Completed": "succeeded", "Failed": "failed", "Terminated": "failed", "Aborting": "suspended",
    "Aborted": "suspended", "Terminating": "terminating",
}
IMAGE_AND_CONFIG_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})
_PROBLEM_PHASES = frozenset({"pending", "running", "restarting", "failed"})
FAILURE_RANK = 5  # PodProblem ranks from here up are failures: a non-zero exit, OOMKilled, a failed pod


@dataclass(frozen=True, slots=True)
class PodProblem:
    """The worst thing one pod shows; higher rank is worse."""

    rank: int
    reason: str
    message: str


def _d(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else {} (cluster objects edited by hand must not crash us)."""
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The JSON objects in `value` when it is a list, else []."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _s(value: Any) -> str | None:
    """`value` when it is a string, else None."""
    return value if isinstance(value, str) else None


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _tensorflow_status(pod: dict[str, Any]) -> dict[str, Any] | None:
    statuses = _dicts(_d(pod.get("status")).get("containerStatuses"))
    for status in statuses:
        if status.get("name") == CONTAINER_NAME:
            return dict(status)
    return dict(statuses[0]) if statuses else None


def _unschedulable(pod: dict[str, Any]) -> dict[str, Any] | None:
    for condition in _dicts(_d(pod.get("status")).get("conditions")):
        if (condition.get("type") == "PodScheduled" and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"):
            return dict(condition)
    return None


def _meta_value(pod: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    metadata = _d(pod.get("metadata"))
    for source in (_d(metadata.get("labels")), _d(metadata.get("annotations"))):
        for key in keys:
            if source.get(key):
                return str(source[key])
    return None


def _pod_type_index(pod: dict[str, Any]) -> tuple[str, int]:
    name = _s(_d(pod.get("metadata")).get("name")) or ""
    replica_type = (_meta_value(pod, TYPE_KEYS) or "").lower()
    if replica_type == "master":
        replica_type = "chief"
    raw_index = _meta_value(pod, INDEX_KEYS)
    if raw_index is None or not re.fullmatch(r"[0-9]{1,9}", raw_index):
        match = re.search(r"-([0-9]{1,9})$", name)
        raw_index = match.group(1) if match else "0"
    if not replica_type:
        match = re.search(r"-([a-z]+)-\d+$", name)
        replica_type = match.group(1) if match else "unknown"
    return replica_type, int(raw_index)


def replica_status(pod: dict[str, Any]) -> ReplicaStatus:
    """One pod as a legacy replica entry."""
    metadata = _d(pod.get("metadata"))
    status = _d(pod.get("status"))
    replica_type, index = _pod_type_index(pod)
    restarts = sum(_int(c.get("restartCount")) for c in _dicts(status.get("containerStatuses")))
    reason = message = None
    exit_code = None
    container = _tensorflow_status(pod) or {}
    state = _d(container.get("state"))
    last = _d(_d(container.get("lastState")).get("terminated"))
    unschedulable = _unschedulable(pod)
    if unschedulable:
        reason, message = unschedulable.get("reason"), unschedulable.get("message")
    elif "terminated" in state:
        terminated = _d(state["terminated"])
        reason, message, exit_code = terminated.get("reason"), terminated.get("message"), terminated.get("exitCode")
    elif "waiting" in state:
        waiting = _d(state["waiting"])
        reason, message = waiting.get("reason"), waiting.get("message")
        exit_code = last.get("exitCode")
    pod_reason = _s(status.get("reason"))
    if status.get("phase") == "Failed" and pod_reason:
        # The pod's own failure (Evicted...) is the truth; the container's exit code stays as evidence.
        reason, message = pod_reason, _s(status.get("message")) or message
    return ReplicaStatus(
        id=_s(metadata.get("name")) or "",
        type=replica_type,
        index=index,
        status=_s(status.get("phase")) or "Unknown",
        restart_count=restarts,
        start_time=_s(status.get("startTime")),
        node=_s(_d(pod.get("spec")).get("nodeName")),
        reason=_s(reason),
        message=_s(message),
        exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
    )


def replicas_from_pods(pods: list[dict[str, Any]]) -> tuple[ReplicaStatus, ...]:
    """Legacy replica entries of a job's pods, in a stable order."""
    replicas = [replica_status(pod) for pod in pods]
    return tuple(sorted(replicas, key=lambda r: (_TYPE_ORDER.get(r.type, len(_TYPE_ORDER)), r.index, r.id)))


def pod_problem(pod: dict[str, Any]) -> PodProblem | None:
    """The worst problem a pod shows, or None when it looks healthy."""
    name = _s(_d(pod.get("metadata")).get("name")) or "?"
    status = _d(pod.get("status"))
    container = _tensorflow_status(pod) or {}
    cname = _s(container.get("name")) or CONTAINER_NAME
    restarts = _int(container.get("restartCount"))
    state = _d(container.get("state"))
    last = _d(_d(container.get("lastState")).get("terminated"))
    last_reason, last_code = _s(last.get("reason")), last.get("exitCode")
    # A pod the kubelet failed as a whole (Evicted, DeadlineExceeded...) says why in its own status; its
    # containers then only show the aftermath (ContainerStatusUnknown, exit 137), which would mislead.
    pod_reason = _s(status.get("reason"))
    if status.get("phase") == "Failed" and pod_reason:
        message = _s(status.get("message"))
        return PodProblem(5, pod_reason, f"{name}: {pod_reason}" + (f": {message}" if message else ""))
    if "terminated" in state:
        terminated = _d(state["terminated"])
        code, reason = terminated.get("exitCode"), _s(terminated.get("reason"))
        if reason == "OOMKilled":
            return PodProblem(6, "OOMKilled", f"{name}: container {cname} was killed for exceeding its "
                                              f"memory limit (OOMKilled, exit code {code})")
        if code not in (None, 0):
            message = _s(terminated.get("message"))
            detail = f": {message}" if message else ""
            return PodProblem(5, reason or "Error",
                              f"{name}: container {cname} exited with code {code} ({reason or 'Error'}){detail}")
    if "waiting" in state:
        waiting = _d(state["waiting"])
        reason = _s(waiting.get("reason")) or "Waiting"
        detail = f": {_s(waiting.get('message'))}" if _s(waiting.get("message")) else ""
        if reason == "CrashLoopBackOff":
            if last_reason == "OOMKilled":
                return PodProblem(6, "OOMKilled", f"{name}: container {cname} keeps being killed for exceeding "
                                                  f"its memory limit (OOMKilled, exit code {last_code}); "
                                                  f"restarted {restarts} times")
            exit_part = f"last exit code {last_code}" if last else "crashing"
            return PodProblem(4, reason, f"{name}: container {cname} is in CrashLoopBackOff ({exit_part}, "
                                         f"restarted {restarts} times){detail}")
        if reason in IMAGE_AND_CONFIG_REASONS:
            return PodProblem(3, reason, f"{name}: container {cname} cannot start: {reason}{detail}")
    unschedulable = _unschedulable(pod)
    if unschedulable is not None:
        return PodProblem(2, "Unschedulable", f"{name}: cannot be scheduled: "
                                              f"{_s(unschedulable.get('message')) or 'no node fits'}")
    if last_code not in (None, 0):
        return PodProblem(1, last_reason or "Error",
                          f"{name}: container {cname} restarted after exit code {last_code} "
                          f"({last_reason or 'Error'})")
    return None


def failure_of(pod: dict[str, Any]) -> PodProblem | None:
    """The pod's problem when it is a failure (non-zero exit, OOMKilled, a failed pod), else None."""
    problem = pod_problem(pod)
    return problem if problem is not None and problem.rank >= FAILURE_RANK else None


def worst_problem(pods: list[dict[str, Any]]) -> PodProblem | None:
    """The worst problem over all pods (first pod in replica order wins ties)."""
    ordered = sorted(pods, key=lambda p: _sort_key(p))
    problems = [p for p in (pod_problem(pod) for pod in ordered) if p is not None]
    return max(problems, key=lambda p: p.rank) if problems else None


def _sort_key(pod: dict[str, Any]) -> tuple[int, int, str]:
    replica_type, index = _pod_type_index(pod)
    return _TYPE_ORDER.get(replica_type, len(_TYPE_ORDER)), index, _s(_d(pod.get("metadata")).get("name")) or ""


def _join(*parts: str | None) -> str | None:
    text = "; ".join(p for p in parts if p)
    return text or None


def _honest(phase: Phase, reason: str | None, message: str | None, pods: list[dict[str, Any]],
            *, failed_reason: str | None = None,
            last_failure: PodProblem | None = None) -> tuple[str | None, str | None]:
    problem = worst_problem(pods) if phase in _PROBLEM_PHASES else None
    if problem is None and last_failure is not None and phase in ("restarting", "failed"):
        problem = PodProblem(last_failure.rank, last_failure.reason, f"last failure: {last_failure.message}")
    if phase == "failed" and failed_reason:
        return failed_reason, _join(message, problem.message if problem else None)
    if problem is not None:
        return problem.reason, _join(message, problem.message)
    return reason, message


def _no_object(pods: list[dict[str, Any]]) -> JobStatus:
    replicas = replicas_from_pods(pods)
    if pods:
        return JobStatus(phase="terminating", reason="Deleted",
                         message="the job object is gone; its pods are being removed", replicas=replicas)
    return JobStatus(phase="pending", reason="NotFound", message="the job object is not on the cluster")


def tfjob_status(obj: dict[str, Any] | None, pods: list[dict[str, Any]],
                 last_failure: PodProblem | None = None) -> JobStatus:
    """Legacy status of a TFJob (either dialect) and its pods."""
    if obj is None:
        return _no_object(pods)
    status = _d(obj.get("status"))
    true = [c for c in _dicts(status.get("conditions"))
            if c.get("status") == "True" and _s(c.get("type")) in TFJOB_CONDITION_PHASES]
    terminal = [c for c in true if c["type"] in ("Succeeded", "Failed")]
    chosen = terminal[-1] if terminal else (true[-1] if true else None)
    phase: Phase = TFJOB_CONDITION_PHASES[chosen["type"]] if chosen else "pending"
    if _d(obj.get("metadata")).get("deletionTimestamp"):
        phase = "terminating"
    reason = _s(chosen.get("reason")) if chosen else None
    message = _s(chosen.get("message")) if chosen else None
    failed_reason = None
    lowered = (message or "").lower()
    # Job names cannot contain spaces, so these phrases cannot come from a name like "deadline-1".
    if reason in ("BackoffLimitExceeded", "DeadlineExceeded"):
        failed_reason = reason
    elif "backoff limit" in lowered:
        failed_reason = "BackoffLimitExceeded"
    elif "longer than specified deadline" in lowered or "deadline exceeded" in lowered:
        failed_reason = "DeadlineExceeded"
    reason, message = _honest(phase, reason, message, pods, failed_reason=failed_reason, last_failure=last_failure)
    return JobStatus(phase=phase, reason=reason, message=message, start_time=_s(status.get("startTime")),
                     completion_time=_s(status.get("completionTime")), replicas=replicas_from_pods(pods))


def vcjob_status(obj: dict[str, Any] | None, pods: list[dict[str, Any]],
                 last_failure: PodProblem | None = None) -> JobStatus:
    """Legacy status of a Volcano Job and its pods."""
    if obj is None:
        return _no_object(pods)
    status = _d(obj.get("status"))
    state = _d(status.get("state"))
    volcano_phase = _s(state.get("phase")) or ""
    phase: Phase = VOLCANO_PHASES.get(volcano_phase, "pending")
    if _d(obj.get("metadata")).get("deletionTimestamp"):
        phase = "terminating"
    reason = _s(state.get("reason")) or volcano_phase or None
    message = _s(state.get("message")) or None
    conditions = _dicts(status.get("conditions"))
    start_time = next((_s(c.get("lastTransitionTime")) for c in conditions if c.get("status") == "Running"), None)
    completion_time = None
    if volcano_phase in ("Completed", "Failed", "Terminated"):
        completion_time = _s(state.get("lastTransitionTime")) or next(
            (_s(c.get("lastTransitionTime")) for c in reversed(conditions) if c.get("status") == volcano_phase), None)
    failed_reason = None
    max_retry = _int(_d(obj.get("spec")).get("maxRetry", 3))
    retries = _int(status.get("retryCount"))
    if phase == "failed" and volcano_phase == "Failed" and retries >= max_retry and retries > 0:
        # Volcano has no job deadline: the translator puts it on the pods, whose kills use up the retries.
        failed_reason = "DeadlineExceeded" if last_failure and last_failure.reason == "DeadlineExceeded" \
            else "BackoffLimitExceeded"
        message = message or f"the job was restarted {retries} times (maxRetry {max_retry})"
    reason, message = _honest(phase, reason, message, pods, failed_reason=failed_reason, last_failure=last_failure)
    return JobStatus(phase=phase, reason=reason, message=message, start_time=start_time,
                     completion_time=completion_time, replicas=replicas_from_pods(pods))
