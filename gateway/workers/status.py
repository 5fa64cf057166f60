"""The one place where cluster state becomes a job's legacy status, and where it is judged fresh.

Contract:
- `StatusWriter.status_of(cluster, obj, pods, last_failure=)` is the only call that turns a cluster
  object and its pods into a `JobStatus` (through the cluster's backend in `translators`). The watch
  (`gateway.workers.sync`), the API fallbacks below, the service's writes and the outbox all use it.
- `publish(updates)` stores rendered statuses (`JobStore.publish`): the watch's as observed now, reads
  straight from the cluster only over older observations.
- The fallbacks, used by reads while a cluster's watch is not live: `refresh_partition` (two LISTs of the
  namespace: jobs and pods) and `refresh_job` (one GET and one pod LIST), each publishing only over
  older observations, with the last pod failure the watch kept. Transient cluster errors leave the stored
  status as it is (it carries its age); the caller serves what Redis holds. A job the cluster has neither
  an object nor pods for keeps its stored status (as the watch leaves it): a create that was refused or
  given up stays `failed` with its reason, a finished job cleaned up by a TTL stays finished (and is
  archived: `gateway.workers.history`).
- After Redis lost a partition's data (`gateway.state.jobs`, completeness): `read_partition` lists the
  partition's jobs and pods from the API server (two LISTs of the namespace, shared by every request
  that asks meanwhile: one read per partition in flight) and computes each job's record and status;
  `restore(read)` puts back the records Redis lacks and publishes the statuses of the others (over older
  observations only). The caller renders the answer from that read.
- `watch_is_live(beat, now, settings)`: whether a cluster's watch heartbeat is recent enough for reads to
  trust Redis (`sync.fallbackAfterSeconds`); the one judgement of watch liveness (reads and /api/ping).
- `WatchMonitor`: every replica's copy of the clusters' heartbeats, re-read from Redis in the background
  every `REFRESH_SECONDS` (and told at once by this replica's own watch), so that a read asks Redis for
  the job only. A heartbeat seen up to half a second late changes nothing against a fallback bound of
  seconds. The outcome of those background reads (`redis_state()`) is also how `/api/ping` knows
  whether Redis answers, without a Redis call of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from gateway.config import SyncSettings
from gateway.errors import StoreUnavailable
from gateway.kube import PODS, ClusterApiError, ClusterClient, KubeError
from gateway.state import State, StatusUpdate
from gateway.state.jobs import Rebuild
from gateway.state.views import JobRecord, record_from_object
from translators.backends import MANAGED_SELECTOR
from translators.labels import job_id_of
from translators.spec import JobStatus
from translators.status import PodProblem

log = structlog.get_logger(__name__)


def watch_is_live(beat: float | None, now: float, settings: SyncSettings) -> bool:
    """Whether Redis mirrors a cluster: its watch runs and wrote a heartbeat recently enough."""
    return settings.watch and beat is not None and now - beat <= settings.fallback_after_seconds


REFRESH_SECONDS = 0.5


class WatchMonitor:
    """The clusters' watch heartbeats as this replica last read them (see module docstring)."""

    def __init__(self, state: State, cluster_ids: Iterable[str], *, settings: SyncSettings,
                 clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._ids = list(cluster_ids)
        self._settings = settings
        self._clock = clock
        self._beats: dict[str, float | None] = dict.fromkeys(self._ids)
        self._stopping = asyncio.Event()
        self._redis_ok_at: float | None = None  # monotonic time of the last background read that worked
        self._redis_latency_ms: float | None = None
        self._redis_error: str | None = "not read yet"

    def beat(self, cluster_id: str) -> float | None:
        """The cluster's last heartbeat as last read (None: none, or the watch is off)."""
        return self._beats.get(cluster_id) if self._settings.watch else None

    def live(self, cluster_id: str) -> bool:
        """Whether reads of the cluster may trust Redis."""
        return watch_is_live(self.beat(cluster_id), self._clock(), self._settings)

    def note(self, cluster_id: str, beat: float) -> None:
        """This replica's own watch wrote a heartbeat."""
        self._beats[cluster_id] = beat

    def redis_state(self) -> tuple[float | None, float | None, str | None]:
        """(monotonic time of the last read of Redis that worked, its latency in ms, the error of the last
        read if it failed)."""
        return self._redis_ok_at, self._redis_latency_ms, self._redis_error

    async def refresh(self) -> None:
        """Read every cluster's heartbeat once."""
        started = time.monotonic()
        try:
            for cluster_id in self._ids:
                self._beats[cluster_id] = await self._state.watch.heartbeat(cluster_id)
        except StoreUnavailable as e:
            self._redis_error = e.message
            raise
        self._redis_ok_at = time.monotonic()
        self._redis_latency_ms = (self._redis_ok_at - started) * 1000.0 / max(1, len(self._ids))
        self._redis_error = None

    def stop(self) -> None:
        """End `run`."""
        self._stopping.set()

    async def run(self) -> None:
        """Refresh every REFRESH_SECONDS until stopped; a Redis that is away leaves no heartbeat (not live)."""
        while not self._stopping.is_set():
            try:
                await self.refresh()
            except StoreUnavailable:
                self._beats = dict.fromkeys(self._ids)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=REFRESH_SECONDS)


@dataclass(frozen=True, slots=True)
class PartitionRead:
    """A partition as its cluster's API server listed it: each managed job's record and status."""

    cluster: str
    partition: str
    read_at: float
    jobs: list[tuple[JobRecord, JobStatus]]


class StatusWriter:
    """Computes and stores jobs' legacy statuses (see module docstring)."""

    def __init__(self, state: State, *, page_size: int = 500, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._page_size = page_size
        self._clock = clock
        self._reads: dict[tuple[str, str], asyncio.Task[PartitionRead]] = {}

    @staticmethod
    def status_of(cluster: ClusterClient, obj: dict[str, Any] | None, pods: list[dict[str, Any]], *,
                  last_failure: PodProblem | None = None) -> JobStatus:
        """The legacy status of a job object (None: not on the cluster) and its pods."""
        return cluster.backend.status(obj, pods, last_failure)

    async def publish(self, updates: Iterable[StatusUpdate]) -> list[int]:
        """Store statuses; per update 1 written, 0 skipped (pending, or a newer one stored), -1 no record."""
        return await self._state.jobs.publish(updates)

    async def status_from_cluster(self, cluster: ClusterClient, job_id: str, obj: dict[str, Any] | None,
                                  pods: list[dict[str, Any]]) -> JobStatus:
        """A status read straight from the cluster, with the last pod failure the watch kept for the job."""
        return self.status_of(cluster, obj, pods, last_failure=await self._state.watch.last_failure(cluster.id, job_id))

    async def refresh_job(self, cluster: ClusterClient, record: JobRecord) -> None:
        """Read one job from its cluster and publish its status over older observations."""
        read_at = self._clock()
        ref = cluster.ref(cluster.jobs, record.namespace, record.object_name)
        try:
            obj = await cluster.try_get(ref)
            pods = await cluster.list(cluster.ref(PODS, record.namespace),
                                      label_selector=cluster.backend.pod_selector(record.identity.id),
                                      page_size=self._page_size)
        except KubeError as e:
            if not e.transient:
                raise
            return  # the cluster is away: the stored status (and its age) is the best there is
        if obj is None and not pods.items:
            # The cluster knows nothing of it (never landed: refused or given up; or finished and cleaned
            # up): the stored status is the last word, as the watch leaves it when an object goes, and a
            # finished job is archived, as the watch does.
            ident = record.identity
            await self._state.jobs.archive([(ident.cluster, ident.partition, ident.id)])
            return
        status = await self.status_from_cluster(cluster, record.identity.id, obj, pods.items)
        ident = record.identity
        await self.publish([StatusUpdate(ident.cluster, ident.partition, ident.id, status, read_at,
                                         only_if_newer=True)])

    async def refresh_partition(self, cluster: ClusterClient, partition: str, namespace: str,
                                job_ids: Iterable[str]) -> None:
        """Read the namespace's jobs and pods (two LISTs) and publish the statuses of `job_ids`."""
        wanted = set(job_ids)
        if not wanted:
            return
        read_at = self._clock()
        try:
            jobs = await cluster.list(cluster.ref(cluster.jobs, namespace), label_selector=MANAGED_SELECTOR,
                                      page_size=self._page_size)
            pods = await cluster.list(cluster.ref(PODS, namespace), label_selector=MANAGED_SELECTOR,
                                      page_size=self._page_size)
        except KubeError as e:
            if not e.transient and not (isinstance(e, ClusterApiError) and e.status.code == 404):
                raise
            return
        objects = {job_id_of(o): o for o in jobs.items}
        pods_by_job: dict[str | None, list[dict[str, Any]]] = {}
        for pod in pods.items:
            pods_by_job.setdefault(job_id_of(pod), []).append(pod)
        failures = await self._state.watch.last_failures(cluster.id)
        await self._state.jobs.archive((cluster.id, partition, job_id) for job_id in sorted(wanted)
                                       if job_id not in objects and job_id not in pods_by_job)
        await self.publish(
            StatusUpdate(cluster.id, partition, job_id,
                         self.status_of(cluster, objects.get(job_id), pods_by_job.get(job_id, []),
                                        last_failure=failures.get(job_id)),
                         read_at, only_if_newer=True)
            for job_id in sorted(wanted) if job_id in objects or job_id in pods_by_job)

    async def read_partition(self, cluster: ClusterClient, partition: str, namespace: str) -> PartitionRead:
        """The partition's jobs from the API server (see module docstring); a cluster error propagates."""
        key = (cluster.id, partition)
        task = self._reads.get(key)
        if task is None:
            task = asyncio.create_task(self._read_partition(cluster, partition, namespace),
                                       name=f"read-{cluster.id}-{partition}")
            self._reads[key] = task
            task.add_done_callback(lambda done: self._read_done(key, done))
        # Shielded: one caller giving up (its request timed out) must not cancel the others' read.
        return await asyncio.shield(task)

    def _read_done(self, key: tuple[str, str], task: asyncio.Task[PartitionRead]) -> None:
        if self._reads.get(key) is task:
            del self._reads[key]
        if not task.cancelled():
            task.exception()  # retrieved here too: every caller may have gone meanwhile

    async def _read_partition(self, cluster: ClusterClient, partition: str, namespace: str) -> PartitionRead:
        read_at = self._clock()
        try:
            jobs = await cluster.list(cluster.ref(cluster.jobs, namespace), label_selector=MANAGED_SELECTOR,
                                      page_size=self._page_size)
            pods = await cluster.list(cluster.ref(PODS, namespace), label_selector=MANAGED_SELECTOR,
                                      page_size=self._page_size)
        except ClusterApiError as e:
            if e.status.code != 404:
                raise
            return PartitionRead(cluster.id, partition, read_at, [])  # no namespace: no jobs
        pods_by_job: dict[str | None, list[dict[str, Any]]] = {}
        for pod in pods.items:
            pods_by_job.setdefault(job_id_of(pod), []).append(pod)
        failures = await self._state.watch.last_failures(cluster.id)
        found = []
        for obj in jobs.items:
            record = record_from_object(obj, cluster.id)
            if record is None or record.identity.partition != partition:
                continue
            job_id = record.identity.id
            found.append((record, self.status_of(cluster, obj, pods_by_job.get(job_id, []),
                                                 last_failure=failures.get(job_id))))
        return PartitionRead(cluster.id, partition, read_at, found)

    async def restore(self, read: PartitionRead) -> dict[str, str]:
        """Put back the records Redis lacks and publish the others' statuses over older observations; per
        job id the rebuild's outcome (`JobStore.rebuild`)."""
        outcomes = await self._state.jobs.rebuild(Rebuild(record, status, read.read_at) for record, status in read.jobs)
        await self.publish(StatusUpdate(read.cluster, read.partition, record.identity.id, status, read.read_at,
                                        only_if_newer=True)
                           for (record, status), outcome in zip(read.jobs, outcomes, strict=True) if outcome == "exists")
        return {record.identity.id: outcome for (record, _), outcome in zip(read.jobs, outcomes, strict=True)}
