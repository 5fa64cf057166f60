"""The outbox: creates and deletes a cluster has not accepted yet, retried until they land.

Contract:
- `Outbox.enqueue(op, identity, principal=)` appends `{op, cluster, partition, id, user, groups, queuedAt,
  requestId}` to the Redis stream (the job record, already written with `pending=op`, holds everything
  else). The entry is worked on under the request id of the client request that queued it, so the
  cluster calls it makes carry that `X-Request-ID`.
- `Outbox.run()` (a background task per gateway replica) reads the stream through the consumer group,
  also taking over entries another replica left unacknowledged, and applies each entry:
  create → build the body from the record and create it (idempotent: same name + same job-id label
  = success); delete → delete (already gone = success) and drop the record. A transient failure leaves
  the entry pending and retries it after `sync.outboxRetrySeconds`; a cluster 4xx ends the entry
  (a refused create is recorded as phase `failed` with the cluster's message, so the user sees why).
- Bounds: an entry older than `sync.outboxMaxAgeSeconds` is given up before it is tried again (a create:
  job `failed`, reason `QueueExpired`; a delete: the job stays, its status says to delete it again).
  An entry the cluster refuses with 401/403, or for which the gateway cannot obtain credentials, is tried
  `sync.outboxAuthAttempts` times (counted per entry by this replica), then given up the same way with
  the reason saying the cluster refused the gateway's credentials (401) or access (403); those refusals
  are counted in `clever_gateway_cluster_auth_failures_total` for an alert. Each round every replica
  reports the stream's length (`clever_gateway_outbox_depth`) and the age of its oldest entry
  (`clever_gateway_outbox_oldest_age_seconds`).
- An entry whose record is gone or no longer pending is obsolete and acknowledged. A create that lands
  after its job was deleted (the record is cleared only if still pending, `JobStore.settle`) is deleted
  from the cluster again, so a job deleted while queued never runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from gateway.auth import Principal
from gateway.config import SyncSettings
from gateway.errors import StoreUnavailable
from gateway.kube import ClusterApiError, ClusterClient, ClusterRegistry, KubeError, ObjectRef, UnknownCluster
from gateway.kube.transport import current_request_id
from gateway.metrics import Metrics
from gateway.state import JobBusy, JobChanged, JobFence, JobRecord, State
from gateway.workers.status import StatusWriter
from translators.errors import SpecError
from translators.labels import LABEL_JOB_ID, label_value
from translators.spec import JobIdentity, JobStatus

log = structlog.get_logger(__name__)

EntryKey = tuple[str, str, str, str]


class Outbox:
    """Producer and worker of the outbox stream (see module docstring)."""

    def __init__(self, state: State, clusters: ClusterRegistry, *, settings: SyncSettings, statuses: StatusWriter,
                 metrics: Metrics | None = None, consumer: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._jobs = state.jobs
        self._stream = state.outbox
        self._statuses = statuses
        self._clusters = clusters
        self._settings = settings
        self._metrics = metrics
        self.consumer = consumer or f"gw-{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # Refusals of the gateway's credentials per entry (op, cluster, partition, id); this replica's count.
        self._auth_refusals: dict[EntryKey, int] = {}

    def stop(self) -> None:
        """Ask `run` to return after the entry it is working on."""
        self._stopping.set()
        self._wake.set()

    async def enqueue(self, op: str, identity: JobIdentity, *, principal: Principal | None = None) -> None:
        """Queue `op` ("create" | "delete") for the job `identity`."""
        entry: dict[str, Any] = {"op": op, "cluster": identity.cluster, "partition": identity.partition,
                                 "id": identity.id, "queuedAt": self._clock()}
        if principal is not None:
            entry["user"] = principal.user
            entry["groups"] = sorted(principal.groups)
        request_id = current_request_id()
        if request_id is not None:
            entry["requestId"] = request_id
        await self._stream.add(entry)
        self._wake.set()

    async def run(self) -> None:
        """Work the outbox until `stop()` (or cancellation)."""
        retry = self._settings.outbox_retry_seconds
        idle_ms = int(self._settings.outbox_claim_idle_seconds * 1000)
        group_ready = False
        while not self._stopping.is_set():
            try:
                if not group_ready:
                    # Also after a Redis failure: a Redis that lost its data lost the consumer group too.
                    await self._stream.ensure()
                    group_ready = True
                await self._update_depth()
                # Our own unacknowledged entries first (earlier transient failures), then orphans of
                # dead replicas, then new entries.
                backlog = await self._stream.read(self.consumer, pending=True)
                backlog += await self._stream.claim_stale(self.consumer, min_idle_ms=idle_ms)
                # New entries too, every round: one cluster that stays away must not hold up the others.
                backlog += await self._stream.read(
                    self.consumer, block_ms=None if backlog else int(min(retry, 1.0) * 1000))
                failed = False
                for entry_id, entry in backlog:
                    if await self.process(entry, entry_id=entry_id):
                        await self._stream.ack(entry_id)
                    else:
                        failed = True
                if failed:
                    await self._sleep(retry)
            except StoreUnavailable:
                group_ready = False
                await self._sleep(retry)
            except asyncio.CancelledError:
                raise
            except Exception:  # the worker must outlive any one bad entry
                log.exception("outbox worker error")
                await self._sleep(retry)

    async def _sleep(self, seconds: float) -> None:
        if self._stopping.is_set():
            return
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _update_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.outbox_depth.set(await self._stream.depth())
            # The stream's oldest entry, not this replica's: every replica reports the same age, and an
            # entry a dead replica holds (until claimed) still counts.
            oldest = await self._stream.oldest()
            queued = _queued_at(oldest[1], oldest[0]) if oldest is not None else None
            self._metrics.outbox_oldest_age.set(max(0.0, self._clock() - queued) if queued is not None else 0.0)

    async def process(self, entry: dict[str, Any], *, entry_id: str | None = None) -> bool:
        """Apply one entry; True when it is finished (landed, refused, given up, or obsolete). The job's lock
        is held throughout (see `JobStore.job_lock`); a job another request is changing is retried later."""
        op, cluster_id, partition, job_id = (entry.get(k) for k in ("op", "cluster", "partition", "id"))
        if (op not in ("create", "delete") or not isinstance(cluster_id, str) or not isinstance(partition, str)
                or not isinstance(job_id, str)):
            log.error("malformed outbox entry dropped", entry=entry)
            return True
        try:
            cluster = self._clusters.get(cluster_id)
        except UnknownCluster:
            log.error("outbox entry for an unknown cluster dropped", cluster=cluster_id, job=job_id)
            return True
        key: EntryKey = (op, cluster_id, partition, job_id)
        with _request_id(entry.get("requestId")):
            try:
                async with self._jobs.job_lock(cluster.id, partition, job_id, wait_seconds=0) as fence:
                    done = await self._apply(entry, entry_id, op, cluster, partition, job_id, fence)
            except JobBusy:
                return False
        if done:
            self._auth_refusals.pop(key, None)
        return done

    async def _apply(self, entry: dict[str, Any], entry_id: str | None, op: str, cluster: ClusterClient,
                     partition: str, job_id: str, fence: JobFence) -> bool:
        cluster_id = cluster.id
        record = await self._jobs.get(cluster_id, partition, job_id)
        if record is None or record.pending != op:
            return True
        queued_at = _queued_at(entry, entry_id)
        max_age = self._settings.outbox_max_age_seconds
        if queued_at is not None and self._clock() - queued_at > max_age:
            await self._give_up(record, reason="QueueExpired", fence=fence,
                                message=f"cluster {cluster_id} did not accept the {op} within "
                                        f"{_duration(max_age)} (sync.outboxMaxAgeSeconds); it was given up")
            return True
        principal = Principal(user=entry["user"], groups=frozenset(entry.get("groups") or ())) \
            if isinstance(entry.get("user"), str) else None
        ref = cluster.ref(cluster.jobs, record.namespace, record.object_name)
        try:
            if op == "create":
                body = cluster.backend.build(record.spec, record.identity, cluster.profile)
                created = await cluster.create(ref, body, same_if_label=(LABEL_JOB_ID, label_value(job_id)),
                                               impersonate=principal)
                if await self._jobs.settle(record, status=self._statuses.status_of(cluster, created, []),
                                           observed_at=self._clock(), fence=fence):
                    log.info("queued create landed", cluster=cluster_id, job=job_id)
                else:
                    await self._take_back(cluster, ref, principal, job_id)
            else:
                await cluster.delete(ref, impersonate=principal)
                await self._jobs.remove(record, fence=fence)
                log.info("queued delete landed", cluster=cluster_id, job=job_id)
            return True
        except SpecError as e:
            await self._refuse(record, reason="Invalid", message=e.message, fence=fence)
            return True
        except JobChanged:
            return False  # the lock lapsed and someone changed the job: look again next round
        except KubeError as e:
            if e.transient:
                log.info("cluster still unavailable, outbox entry kept", cluster=cluster_id, job=job_id, op=op,
                         error=e.kind)
                return False
            if e.auth_failure:
                return await self._auth_refused(e, record, op=op, fence=fence)
            reason = e.status.reason if isinstance(e, ClusterApiError) else e.kind
            await self._refuse(record, reason=reason, message=e.message, fence=fence)
            return True

    async def _auth_refused(self, error: KubeError, record: JobRecord, *, op: str, fence: JobFence) -> bool:
        """401/403 or no credentials: retried up to `outboxAuthAttempts` times, then given up."""
        ident = record.identity
        key: EntryKey = (op, ident.cluster, ident.partition, ident.id)
        refusals = self._auth_refusals[key] = self._auth_refusals.get(key, 0) + 1
        limit = self._settings.outbox_auth_attempts
        code = error.status.code if isinstance(error, ClusterApiError) else None
        log.warning("cluster refused the gateway on a queued operation", cluster=ident.cluster, job=ident.id,
                    op=op, code=code, error=error.kind, attempt=refusals, attempts=limit)
        if refusals < limit:
            return False
        detail = error.message.removeprefix(f"cluster {ident.cluster}: ")
        if code == 403:
            reason, why = "ClusterForbidden", f"cluster {ident.cluster} refused the gateway access (403: {detail})"
        elif code == 401:
            reason, why = "ClusterUnauthorized", (f"cluster {ident.cluster} refused the gateway's credentials "
                                                  "(401 Unauthorized)")
        else:
            reason, why = "ClusterCredentials", (f"the gateway could not obtain its credentials for cluster "
                                                 f"{ident.cluster} ({detail})")
        await self._give_up(record, reason=reason, fence=fence,
                            message=f"{why} {refusals} times; the {op} was given up")
        return True

    async def _take_back(self, cluster: ClusterClient, ref: ObjectRef, principal: Principal | None,
                         job_id: str) -> None:
        """The job was deleted while its create was on the way: remove what just landed."""
        log.info("queued create landed after its job was deleted; deleting it", cluster=cluster.id, job=job_id)
        try:
            await cluster.delete(ref, impersonate=principal)
        except KubeError as e:
            # The record is gone and its tombstone expires: the watch then shows the job again, deletable.
            log.error("a deleted job's late create could not be taken back", cluster=cluster.id, job=job_id,
                      error=e.kind, message=e.message)

    async def _refuse(self, record: JobRecord, *, reason: str, message: str, fence: JobFence) -> None:
        ident = record.identity
        log.warning("cluster refused a queued operation", cluster=ident.cluster, job=ident.id, op=record.pending,
                    reason=reason, message=message)
        if record.pending == "delete":
            # The job is still there; the user sees it again and may retry the delete.
            await self._jobs.put(record.with_pending(None), fence=fence)
            return
        status = JobStatus(phase="failed", reason=reason, message=f"the cluster refused the job: {message}")
        await self._jobs.put(record.with_pending(None), status=status, observed_at=self._clock(), fence=fence)

    async def _give_up(self, record: JobRecord, *, reason: str, message: str, fence: JobFence) -> None:
        """End an entry the gateway will not try again: a create's job turns `failed` saying why; a delete's
        job stays (still on the cluster, as far as anyone knows) with a status that says to delete it again,
        until the watch sees the cluster again and writes what it finds."""
        ident = record.identity
        log.warning("queued operation given up", cluster=ident.cluster, job=ident.id, op=record.pending,
                    reason=reason, message=message)
        if record.pending == "delete":
            status = JobStatus(phase="terminating", reason=reason,
                               message=f"{message}; the job may still exist on the cluster: delete it again")
        else:
            status = JobStatus(phase="failed", reason=reason, message=message)
        await self._jobs.put(record.with_pending(None), status=status, observed_at=self._clock(), fence=fence)


def _queued_at(entry: dict[str, Any], entry_id: str | None) -> float | None:
    """When the entry was queued: its `queuedAt`, else the time in its stream id (milliseconds)."""
    queued = entry.get("queuedAt")
    if isinstance(queued, (int, float)) and not isinstance(queued, bool):
        return float(queued)
    if entry_id:
        head = entry_id.partition("-")[0]
        if head.isdigit():
            return int(head) / 1000.0
    return None


def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        days = int(seconds // 86400)
        return f"{days} day" + ("s" if days > 1 else "")
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour" + ("s" if hours > 1 else "")
    return f"{seconds:g} s"


@contextlib.contextmanager
def _request_id(value: Any) -> Iterator[None]:
    """Work on an entry under the id of the client request that queued it (logs and X-Request-ID)."""
    if isinstance(value, str) and value:
        with structlog.contextvars.bound_contextvars(request_id=value):
            yield
    else:
        yield
