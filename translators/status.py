"""Cluster status -> legacy JobStatus, the backend-neutral part: pods, their problems, an honest reason.

Each backend (translators/backends/) maps its own object to a phase and tells how its pods are typed
(`RoleOf`: pod -> (replica type, index) or None); this module does the rest the same way for all.

Reason/message tell the truth about the worst thing the pods show, with the job condition:
pod problems are ranked OOMKilled > failed pod (Evicted, DeadlineExceeded...: the pod's own
`status.reason` wins over its containers' states) / non-zero exit >
CrashLoopBackOff > image pull and container config errors > Unschedulable > an earlier crash of a
now running container (`honest`). A failed job's reason is the backend's verdict when it has one
(`BackoffLimitExceeded` / `DeadlineExceeded`), else the worst pod problem, else the condition's
reason; the message is the controller's message followed by the pod's story.

The pods that tell the story are often gone by the time the verdict comes (Volcano and JobSet delete
the whole gang on every restart; cleanPodPolicy deletes them at the end), so the caller may pass the
`last_failure` it saw earlier (`failure_of` on each pod as it changes): a restarting or failed job
with no problem in its current pods tells it as "last failure: ...".

No object (`no_object`): `terminating` while pods remain (garbage collection in progress), else
`pending` with reason `NotFound`. Whether that is really `queued` (accepted, not yet on the cluster)
only the gateway knows, from its outbox.

Replicas come from the pods, sorted (chief, worker, ps, evaluator, others; index; name), typed by the
backend's `RoleOf` (`role_from_metadata` reads label/annotation keys, then the pod name's
`-<type>-<index>` suffix; a pod no role fits is type `unknown`, index 0). restartCount sums all
containers; reason/message come from a Failed pod's own `status.reason`/`message` (Evicted...), else
an Unschedulable PodScheduled condition, else the `tensorflow` container's waiting/terminated state;
exitCode always from that container.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from translators.podtemplate import CONTAINER_NAME
from translators.spec import REPLICA_TYPES, JobStatus, Phase, ReplicaStatus

_TYPE_ORDER: dict[str, int] = {t: i for i, t in enumerate(REPLICA_TYPES)}

IMAGE_AND_CONFIG_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})
_PROBLEM_PHASES = frozenset({"pending", "running", "restarting", "failed"})
FAILURE_RANK = 5  # PodProblem ranks from here up are failures: a non-zero exit, OOMKilled, a failed pod

# A backend's pod typing: (replica type, index), or None when the pod does not say.
RoleOf = Callable[[dict[str, Any]], tuple[str, int] | None]


@dataclass(frozen=True, slots=True)
class PodProblem:
    """The worst thing one pod shows; higher rank is worse. A failure also names its pod and the
    container's exit code, so that it can still be told on the replica after the pod was replaced."""

    rank: int
    reason: str
    message: str
    pod: str | None = None
    exit_code: int | None = None


def as_dict(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else {} (cluster objects edited by hand must not crash us)."""
    return value if isinstance(value, dict) else {}


def dicts(value: Any) -> list[dict[str, Any]]:
    """The JSON objects in `value` when it is a list, else []."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def as_str(value: Any) -> str | None:
    """`value` when it is a string, else None."""
    return value if isinstance(value, str) else None


def as_int(value: Any) -> int:
    """`value` as an integer, 0 when it is none."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _tensorflow_status(pod: dict[str, Any]) -> dict[str, Any] | None:
    statuses = dicts(as_dict(pod.get("status")).get("containerStatuses"))
    for status in statuses:
        if status.get("name") == CONTAINER_NAME:
            return dict(status)
    return dict(statuses[0]) if statuses else None


def _unschedulable(pod: dict[str, Any]) -> dict[str, Any] | None:
    for condition in dicts(as_dict(pod.get("status")).get("conditions")):
        if (condition.get("type") == "PodScheduled" and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"):
            return dict(condition)
    return None


def meta_value(pod: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of `keys` set on the pod, looked up in its labels, then its annotations."""
    metadata = as_dict(pod.get("metadata"))
    for source in (as_dict(metadata.get("labels")), as_dict(metadata.get("annotations"))):
        for key in keys:
            if source.get(key):
                return str(source[key])
    return None


def role_from_metadata(pod: dict[str, Any], type_keys: tuple[str, ...],
                       index_keys: tuple[str, ...]) -> tuple[str, int]:
    """(type, index) from the first of `type_keys`/`index_keys` the pod carries, else from its name.

    For backends whose pods are named `<job>-<type>-<index>` (TFJob, Volcano); `master` reads as `chief`.
    """
    name = as_str(as_dict(pod.get("metadata")).get("name")) or ""
    replica_type = (meta_value(pod, type_keys) or "").lower()
    if replica_type == "master":
        replica_type = "chief"
    raw_index = meta_value(pod, index_keys)
    if raw_index is None or not re.fullmatch(r"[0-9]{1,9}", raw_index):
        match = re.search(r"-([0-9]{1,9})$", name)
        raw_index = match.group(1) if match else "0"
    if not replica_type:
        match = re.search(r"-([a-z]+)-\d+$", name)
        replica_type = match.group(1) if match else "unknown"
    return replica_type, int(raw_index)


def _role(pod: dict[str, Any], role: RoleOf) -> tuple[str, int]:
    return role(pod) or ("unknown", 0)


def replica_status(pod: dict[str, Any], role: RoleOf) -> ReplicaStatus:
    """One pod as a legacy replica entry."""
    metadata = as_dict(pod.get("metadata"))
    status = as_dict(pod.get("status"))
    replica_type, index = _role(pod, role)
    restarts = sum(as_int(c.get("restartCount")) for c in dicts(status.get("containerStatuses")))
    reason = message = None
    exit_code = None
    container = _tensorflow_status(pod) or {}
    state = as_dict(container.get("state"))
    last = as_dict(as_dict(container.get("lastState")).get("terminated"))
    unschedulable = _unschedulable(pod)
    if unschedulable:
        reason, message = unschedulable.get("reason"), unschedulable.get("message")
    elif "terminated" in state:
        terminated = as_dict(state["terminated"])
        reason, message, exit_code = terminated.get("reason"), terminated.get("message"), terminated.get("exitCode")
    elif "waiting" in state:
        waiting = as_dict(state["waiting"])
        reason, message = waiting.get("reason"), waiting.get("message")
        exit_code = last.get("exitCode")
    pod_reason = as_str(status.get("reason"))
    if status.get("phase") == "Failed" and pod_reason:
        # The pod's own failure (Evicted...) is the truth; the container's exit code stays as evidence.
        reason, message = pod_reason, as_str(status.get("message")) or message
    return ReplicaStatus(
        id=as_str(metadata.get("name")) or "",
        type=replica_type,
        index=index,
        status=as_str(status.get("phase")) or "Unknown",
        restart_count=restarts,
        start_time=as_str(status.get("startTime")),
        node=as_str(as_dict(pod.get("spec")).get("nodeName")),
        reason=as_str(reason),
        message=as_str(message),
        exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
    )


def replicas_from_pods(pods: list[dict[str, Any]], role: RoleOf,
                       last_failure: PodProblem | None = None) -> tuple[ReplicaStatus, ...]:
    """Legacy replica entries of a job's pods, in a stable order. A pod that replaced the one that failed
    last (same name: TFJob pods) and shows nothing of its own carries that failure's reason, exit code
    and message, as a container restarted in place carries its last state."""
    replicas = [replica_status(pod, role) for pod in pods]
    if last_failure is not None and last_failure.pod:
        replicas = [replace(r, reason=last_failure.reason, exit_code=last_failure.exit_code,
                            message=f"last failure: {last_failure.message}")
                    if r.id == last_failure.pod and r.reason is None else r for r in replicas]
    return tuple(sorted(replicas, key=lambda r: (_TYPE_ORDER.get(r.type, len(_TYPE_ORDER)), r.index, r.id)))


def pod_problem(pod: dict[str, Any]) -> PodProblem | None:
    """The worst problem a pod shows, or None when it looks healthy."""
    name = as_str(as_dict(pod.get("metadata")).get("name")) or "?"
    status = as_dict(pod.get("status"))
    container = _tensorflow_status(pod) or {}
    cname = as_str(container.get("name")) or CONTAINER_NAME
    restarts = as_int(container.get("restartCount"))
    state = as_dict(container.get("state"))
    last = as_dict(as_dict(container.get("lastState")).get("terminated"))
    last_reason, last_code = as_str(last.get("reason")), last.get("exitCode")
    # A pod the kubelet failed as a whole (Evicted, DeadlineExceeded...) says why in its own status; its
    # containers then only show the aftermath (ContainerStatusUnknown, exit 137), which would mislead.
    pod_reason = as_str(status.get("reason"))
    if status.get("phase") == "Failed" and pod_reason:
        message = as_str(status.get("message"))
        return PodProblem(5, pod_reason, f"{name}: {pod_reason}" + (f": {message}" if message else ""))
    if "terminated" in state:
        terminated = as_dict(state["terminated"])
        code, reason = terminated.get("exitCode"), as_str(terminated.get("reason"))
        if reason == "OOMKilled":
            return PodProblem(6, "OOMKilled", f"{name}: container {cname} was killed for exceeding its "
                                              f"memory limit (OOMKilled, exit code {code})")
        if code not in (None, 0):
            message = as_str(terminated.get("message"))
            detail = f": {message}" if message else ""
            return PodProblem(5, reason or "Error",
                              f"{name}: container {cname} exited with code {code} ({reason or 'Error'}){detail}")
    if "waiting" in state:
        waiting = as_dict(state["waiting"])
        reason = as_str(waiting.get("reason")) or "Waiting"
        detail = f": {as_str(waiting.get('message'))}" if as_str(waiting.get("message")) else ""
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
                                              f"{as_str(unschedulable.get('message')) or 'no node fits'}")
    if last_code not in (None, 0):
        return PodProblem(1, last_reason or "Error",
                          f"{name}: container {cname} restarted after exit code {last_code} "
                          f"({last_reason or 'Error'})")
    return None


def failure_of(pod: dict[str, Any]) -> PodProblem | None:
    """The pod's problem when it is a failure (non-zero exit, OOMKilled, a failed pod), else None; it
    names the pod and the tensorflow container's exit code."""
    problem = pod_problem(pod)
    if problem is None or problem.rank < FAILURE_RANK:
        return None
    container = _tensorflow_status(pod) or {}
    terminated = as_dict(as_dict(container.get("state")).get("terminated")) or \
        as_dict(as_dict(container.get("lastState")).get("terminated"))
    code = terminated.get("exitCode")
    return PodProblem(problem.rank, problem.reason, problem.message,
                      pod=as_str(as_dict(pod.get("metadata")).get("name")),
                      exit_code=code if isinstance(code, int) and not isinstance(code, bool) else None)


def worst_problem(pods: list[dict[str, Any]], role: RoleOf) -> PodProblem | None:
    """The worst problem over all pods (first pod in replica order wins ties)."""
    ordered = sorted(pods, key=lambda p: _sort_key(p, role))
    problems = [p for p in (pod_problem(pod) for pod in ordered) if p is not None]
    return max(problems, key=lambda p: p.rank) if problems else None


def _sort_key(pod: dict[str, Any], role: RoleOf) -> tuple[int, int, str]:
    replica_type, index = _role(pod, role)
    name = as_str(as_dict(pod.get("metadata")).get("name")) or ""
    return _TYPE_ORDER.get(replica_type, len(_TYPE_ORDER)), index, name


def join(*parts: str | None) -> str | None:
    """The non-empty parts joined with "; " (None when there are none)."""
    text = "; ".join(p for p in parts if p)
    return text or None


def honest(phase: Phase, reason: str | None, message: str | None, pods: list[dict[str, Any]], role: RoleOf,
           *, failed_reason: str | None = None,
           last_failure: PodProblem | None = None) -> tuple[str | None, str | None]:
    """The (reason, message) a legacy user should read for a job in `phase` with these pods."""
    problem = worst_problem(pods, role) if phase in _PROBLEM_PHASES else None
    # A failed pod the operator replaced (TFJob, Volcano and JobSet pods are never restarted in place) is
    # told like a container's earlier crash: the job runs on, and why it restarted stays readable.
    if problem is None and last_failure is not None and phase in ("running", "restarting", "failed"):
        problem = PodProblem(last_failure.rank, last_failure.reason, f"last failure: {last_failure.message}")
    if phase == "failed" and failed_reason:
        return failed_reason, join(message, problem.message if problem else None)
    if problem is not None:
        return problem.reason, join(message, problem.message)
    return reason, message


def no_object(pods: list[dict[str, Any]], role: RoleOf) -> JobStatus:
    """Status of a job whose object is not on the cluster (see module docstring)."""
    replicas = replicas_from_pods(pods, role)
    if pods:
        return JobStatus(phase="terminating", reason="Deleted",
                         message="the job object is gone; its pods are being removed", replicas=replicas)
    return JobStatus(phase="pending", reason="NotFound", message="the job object is not on the cluster")
