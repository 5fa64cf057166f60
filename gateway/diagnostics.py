"""Why a job does what it does: its replicas' container logs and its Kubernetes events (DESIGN §7).

Contract:
- `JobDiagnostics(service=, settings=)`; rights are exactly GET's (`JobService.inspect`): another user's
  job, an unknown id or cluster is 404, a partition the caller may not use 403, as for GET.
- `replica_names(view)`: the job's replicas as users name them, `<type>-<index>` (`worker-0`, `ps-1`,
  `chief-0`), from its spec.
- `await pod_log(principal, cluster_id=, partition=, job_id=, replica=, tail=, follow=) -> PodLog`: the
  replica's `tensorflow` container log: `body` (at most `limits.logMaxBytes`), or with `follow` an open
  `stream` that the caller reads and closes (the cluster ends it when the container ends; the caller bounds
  it by `limits.logFollowMaxBytes` and `limits.logFollowMaxSeconds`). `replica` None: the job's leading
  replica (chief-0, else worker-0, else the first in its spec).
- `await events(principal, cluster_id=, partition=, job_id=) -> list[dict]`: the events of the job object
  and of its pods, oldest first, each `{type, reason, message, object: {kind, name, fieldPath}, firstTime,
  lastTime, count, source}` (`gateway.web.schemas.Event`).

Which pod: the stored status's `replicas[]` give each pod's name (`id`) with its type and index, whatever
naming the backend uses (JobSet pods carry a random suffix); when a restart leaves two pods for one replica
the running one wins, else the one started last.

When there is no log to give (legacy error body each time):
- a replica the job does not have: 404 NotFound, `details.replicas` lists those it has;
- a replica without a pod while the job is not finished: 409 Conflict (no pod yet, or it is restarting);
- a replica whose pod is gone: the job finished and its pods were removed (cleanPodPolicy, TTL), or the
  cluster no longer has the pod the status names: 410 Gone, saying so, with the replica's last state
  (`details.lastState`);
- a container that has not started: 409 Conflict with the cluster's words.

Events come from one LIST per object (`fieldSelector=involvedObject.name=...`, as `kubectl describe`
does): the job object and the pods the stored status names; ordered by when they first happened, ties
(event times have whole seconds) in the order the cluster recorded them (resourceVersion). Events of pods that are gone are not found
this way; the job's status message keeps the last failure they showed.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from gateway.auth import Principal
from gateway.config import Settings
from gateway.errors import Conflict, Gone, NotFound
from gateway.kube import EVENTS, PODS, ByteStream, ClusterApiError, ClusterClient
from gateway.service import JobService
from translators.podtemplate import CONTAINER_NAME
from translators.spec import FINISHED_PHASES, REPLICA_TYPES

_REPLICA = re.compile(r"^([a-z]+)-([0-9]{1,6})$")
_EVENT_LISTS_AT_ONCE = 8
# Phases after which a missing pod will not come back.
_ENDED_PHASES = FINISHED_PHASES | {"terminating"}


@dataclass(slots=True)
class PodLog:
    """A replica's log: `body` (not followed) or an open `stream` (followed), and which pod it is."""

    replica: str
    pod: str
    body: bytes = b""
    stream: ByteStream | None = None


def replica_names(view: dict[str, Any]) -> list[str]:
    """The job's replicas, `<type>-<index>`, in the spec's order (from the legacy answer)."""
    names: list[str] = []
    for group in (view.get("spec") or {}).get("replicas") or []:
        try:
            count = int(group.get("count") or 0)
        except (TypeError, ValueError):
            count = 0
        names += [f"{group.get('type')}-{i}" for i in range(count)]
    return names


def leading_replica(names: list[str]) -> str | None:
    """The replica whose log a user wants first: chief-0, else worker-0, else the first."""
    for wanted in ("chief-0", "worker-0"):
        if wanted in names:
            return wanted
    return names[0] if names else None


def _last_state(replica: dict[str, Any]) -> str:
    """A replica's stored state in words: `Failed (Error, exit code 3: message)`."""
    detail = [str(replica["reason"])] if replica.get("reason") else []
    if replica.get("exitCode") is not None:
        detail.append(f"exit code {replica['exitCode']}")
    text = str(replica.get("status") or "Unknown") + (f" ({', '.join(detail)})" if detail else "")
    return text + (f": {replica['message']}" if replica.get("message") else "")


def _job_state(status: dict[str, Any]) -> str:
    words = [str(status.get("phase") or "unknown")]
    words += [str(status[k]) for k in ("reason", "message") if status.get(k)]
    return ": ".join(words)


def _pick_pod(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    running = [r for r in candidates if r.get("status") == "Running"]
    if running:
        return running[0]
    return max(candidates, key=lambda r: (str(r.get("startTime") or ""), str(r.get("id") or "")))


class JobDiagnostics:
    """Logs and events of jobs, under GET's rights (see module docstring)."""

    def __init__(self, *, service: JobService, settings: Settings) -> None:
        self._service = service
        self._limits = settings.limits
        self._page_size = settings.limits.list_page_size

    async def pod_log(self, principal: Principal, *, cluster_id: str, partition: str, job_id: str,
                      replica: str | None, tail: int | None, follow: bool) -> PodLog:
        """The replica's container log (see module docstring)."""
        job = await self._service.inspect(principal, cluster_id=cluster_id, partition=partition, job_id=job_id)
        names = replica_names(job.view)
        name = replica if replica is not None else leading_replica(names)
        if name is None or name not in names:
            shown = (name or "")[:64]
            raise NotFound(f"job {job_id} has no replica {shown!r}; its replicas: {', '.join(names) or 'none'}",
                           details={"replica": shown, "replicas": names})
        status = job.view.get("status") or {}
        replica_type, index = self._parse(name)
        candidates = [r for r in status.get("replicas") or []
                      if r.get("type") == replica_type and r.get("index") == index and r.get("id")]
        phase = str(status.get("phase") or "")
        if not candidates:
            if phase in _ENDED_PHASES:
                raise Gone(f"replica {name} has no pod any more: job {job_id} ended ({_job_state(status)}) and its "
                           "pods were removed (cleanPodPolicy, ttlSecondsAfterFinished)",
                           details={"replica": name, "phase": phase})
            raise Conflict(f"replica {name} has no pod right now (job {job_id} is {phase or 'not started'}); its "
                           "log is there once its pod runs", details={"replica": name, "phase": phase})
        chosen = _pick_pod(candidates)
        pod = str(chosen["id"])
        ref = job.cluster.ref(PODS, job.record.namespace, pod)
        try:
            if follow:
                stream = await job.cluster.open_pod_log(ref, container=CONTAINER_NAME, tail_lines=tail,
                                                        limit_bytes=self._limits.log_follow_max_bytes,
                                                        timeout=self._limits.log_follow_max_seconds)
                return PodLog(replica=name, pod=pod, stream=stream)
            body = await job.cluster.pod_log(ref, container=CONTAINER_NAME, tail_lines=tail,
                                             limit_bytes=self._limits.log_max_bytes)
            return PodLog(replica=name, pod=pod, body=body)
        except ClusterApiError as e:
            if e.status.code == 404:
                raise Gone(f"the pod {pod} of replica {name} no longer exists (a job's pods are removed when it "
                           f"ends, per its cleanPodPolicy, or when it restarts); its last state: "
                           f"{_last_state(chosen)}", details={"replica": name, "pod": pod, "lastState": chosen}) from e
            if e.status.code == 400:
                # Our query is well formed: a 400 here is the kubelet's "waiting to start: ContainerCreating".
                raise Conflict(f"replica {name} (pod {pod}) has no log yet: {e.status.message or 'not started'}",
                               details={"replica": name, "pod": pod, "clusterStatus": e.status.summary()}) from e
            raise

    @staticmethod
    def _parse(name: str) -> tuple[str, int]:
        match = _REPLICA.match(name)
        if match is None or match.group(1) not in REPLICA_TYPES:  # replica_names only makes good ones
            raise NotFound(f"no replica {name[:64]!r}")
        return match.group(1), int(match.group(2))

    async def events(self, principal: Principal, *, cluster_id: str, partition: str,
                     job_id: str) -> list[dict[str, Any]]:
        """The job's and its pods' events, oldest first (see module docstring)."""
        job = await self._service.inspect(principal, cluster_id=cluster_id, partition=partition, job_id=job_id)
        status = job.view.get("status") or {}
        pods = sorted({str(r["id"]) for r in status.get("replicas") or [] if r.get("id")})
        names = [job.record.object_name, *pods]
        gate = asyncio.Semaphore(_EVENT_LISTS_AT_ONCE)

        async def about(name: str) -> list[dict[str, Any]]:
            async with gate:
                return await self._events_of(job.cluster, job.record.namespace, name)

        found: dict[str, dict[str, Any]] = {}
        for batch in await asyncio.gather(*(about(n) for n in names)):
            for event in batch:
                meta = event.get("metadata") or {}
                found[str(meta.get("uid") or meta.get("name") or id(event))] = event
        # Event times have whole seconds: within one second the order the cluster recorded them in tells.
        ordered = sorted(found.values(), key=lambda e: (_first_time(e) or "", _recorded(e)))
        return [_event(e) for e in ordered]

    async def _events_of(self, cluster: ClusterClient, namespace: str, name: str) -> list[dict[str, Any]]:
        result = await cluster.list(cluster.ref(EVENTS, namespace), field_selector=f"involvedObject.name={name}",
                                    page_size=self._page_size)
        return result.items


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _first_time(event: dict[str, Any]) -> str | None:
    meta = event.get("metadata") or {}
    return _text(event.get("firstTimestamp")) or _text(event.get("eventTime")) or _text(meta.get("creationTimestamp"))


def _recorded(event: dict[str, Any]) -> int:
    """The event's resourceVersion as a number (etcd's revision in practice; 0 when it is not one)."""
    version = str((event.get("metadata") or {}).get("resourceVersion") or "")
    return int(version) if version.isascii() and version.isdigit() else 0


def _event(event: dict[str, Any]) -> dict[str, Any]:
    """One core/v1 Event as the answer shows it (old-style counts and times, or the newer series)."""
    involved = event.get("involvedObject") or {}
    series = event.get("series") or {}
    first = _first_time(event)
    last = _text(event.get("lastTimestamp")) or _text(series.get("lastObservedTime")) or first
    count = event.get("count") or series.get("count") or 1
    source = event.get("source") or {}
    return {
        "type": _text(event.get("type")) or "Normal",
        "reason": _text(event.get("reason")),
        "message": _text(event.get("message")),
        "object": {"kind": _text(involved.get("kind")), "name": _text(involved.get("name")),
                   "fieldPath": _text(involved.get("fieldPath"))},
        "firstTime": first,
        "lastTime": last,
        "count": count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1,
        "source": _text(source.get("component")) or _text(event.get("reportingComponent")),
    }


__all__ = ["JobDiagnostics", "PodLog", "leading_replica", "replica_names"]
