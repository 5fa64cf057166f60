"""Per-cluster background sync: list-then-watch the managed jobs and their pods, status into Redis.

Contract:
- `ClusterSync(cluster, state, statuses=, settings=, metrics=, holder=)`; `run()` is the background task.
  Only the replica holding the Redis lease `watch:{cluster}` watches (others wait and take over when
  the lease lapses, `sync.leaseSeconds`). The lease names `<holder> <incarnation>`: `holder` is the
  replica's identity (`replicaId`, the pod name), the incarnation is new with every process. A
  restarted replica takes a lease its earlier life still holds at once, on its first answered attempt
  only (after a SIGKILL its lease would otherwise stay held for up to `sync.leaseSeconds`, and with it
  the records of creates the dead process made but had not stored); should two live processes share an
  identity, the older one loses the lease once and then waits like any other replica. A new leader
  lists at once, so those records are rebuilt within a second or two of the restart. The leader lists jobs and pods selected by `MANAGED_SELECTOR` (all namespaces),
  then watches each from the list's resourceVersion with bookmarks, resuming from the last
  resourceVersion when a stream ends and relisting on 410 Gone (or after an error, with backoff).
- Every job/pod event updates the in-memory objects and marks its job dirty; one writer task recomputes
  the status of the dirty jobs through the one status writer (`gateway.workers.status.StatusWriter`) and
  stores them rendered, up to `WRITE_BATCH` per pipelined round trip. A job that changes many times while
  the writer is busy is written once, so the watch keeps up with bursts (a crash-looping gang emits an
  event every few milliseconds in kubesim) at a cost bounded by the jobs, not the events. A job's Redis
  keys live under its partition, which the writer learns from the job object's partition annotation.
  Each relist of the jobs registers their partitions (`gateway.state.partitions`). The last failure seen
  in a job's pods is kept (in memory and in Redis, so a new leader has it too,
  until the job object is deleted) and passed along, so a verdict that comes after the pods are gone
  (Volcano restarts the whole gang; cleanPodPolicy) still says which pod failed and how.
- A managed job on the cluster with no record in Redis is rebuilt from its labels/annotations
  (`from_cluster_object`): Redis lost → nothing lost. Records are never removed here (a delete through
  the API removes its record; a recreate briefly has no object). A finished job whose object and pods
  are gone, as the watch saw them go or as a complete relist finds them missing, is archived
  (`JobStore.archive`, `gateway.workers.history`): it stays listed, marked, until the retention sweep.
- While both streams are connected the leader writes a heartbeat (`JobStore.set_watch_heartbeat`): the
  time up to which Redis holds everything received (now, or when the writer last had nothing left to
  write); every replica reads its age (`/api/ping` heartbeatAgeSeconds; reads fall back to the API
  server when it is older than `sync.fallbackAfterSeconds`). `clever_gateway_watch_last_event_age_seconds`
  is another measure: the age of the last event or bookmark the leader's streams received (every lease
  tick), -1 on the replicas that do not hold the cluster's lease.
- Completeness (`gateway.state.jobs`): once both resources were listed and every job written (records
  the relist found missing rebuilt), the leader registers the partitions it saw, marks each complete
  (`JobStore.certify`, only if its index holds the jobs the leader knows to be recorded there) and then
  writes the cluster's generation; partitions that appear later are marked when their first job is
  written. Every lease tick (at most a second) it checks that those markers are still there: a marker
  or the generation gone means Redis lost data, and the leader relists at once and marks again. (A
  Redis that lost everything also lost the lease: the leader steps down, takes it again and relists.)
- `request_relist()` makes the leader relist at once (tests use it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from gateway.config import SyncSettings
from gateway.errors import GatewayError, StoreUnavailable
from gateway.kube import PODS, ClusterClient, KubeError, WatchEvent, WatchExpired
from gateway.metrics import Metrics
from gateway.state import State, StatusUpdate
from gateway.state.jobs import Rebuild
from gateway.state.views import record_from_object
from gateway.workers.status import StatusWriter, WatchMonitor
from translators.backends import MANAGED_SELECTOR, failure_of
from translators.labels import ANNOTATION_PARTITION, job_id_of
from translators.spec import JobStatus
from translators.status import PodProblem

log = structlog.get_logger(__name__)

JOBS, POD_KIND = "jobs", "pods"
_BEAT_MIN_INTERVAL = 1.0
# The leader renews its lease, writes its heartbeat and checks the completeness markers this often (or
# at a third of the lease, if shorter): a data loss is noticed within a second.
_TICK_MAX_SECONDS = 1.0
WRITE_BATCH = 256  # statuses per pipelined round trip of the writer
_CANCEL_WAIT_SECONDS = 0.5


def _discard_outcome(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class ClusterSync:
    """The watch of one cluster (see module docstring)."""

    def __init__(self, cluster: ClusterClient, state: State, *, statuses: StatusWriter, settings: SyncSettings,
                 metrics: Metrics | None = None, holder: str, watches: WatchMonitor | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cluster = cluster
        self._state = state
        self._statuses = statuses
        self._watches = watches
        self._settings = settings
        self._metrics = metrics
        self._holder = holder
        self._lease_holder = f"{holder} {uuid.uuid4().hex[:12]}"  # this process's incarnation
        self._may_take_back = True  # until the first answered attempt: a lease of our earlier life is ours
        self._clock = clock
        # The managed objects and their pods, each kept encoded (orjson): a parsed Kubernetes object takes
        # five to six times the memory of its JSON, and a status needs them decoded only when it is written.
        self._jobs: dict[str, bytes] = {}
        self._pods: dict[str, dict[str, bytes]] = {}
        self._partitions: dict[str, str] = {}  # job id -> partition, from the job object's annotation
        self._vanished: dict[str, str] = {}  # job id -> partition: object and pods gone, to archive if finished
        self._last_failure: dict[str, PodProblem] = {}
        self._saved_failure: dict[str, PodProblem] = {}  # what Redis holds of _last_failure
        self._gone: set[str] = set()  # jobs whose saved failure is to be dropped
        self._dirty: set[str] = set()
        self._dirty_event = asyncio.Event()
        self._caught_up_at = 0.0
        self._streaming = {JOBS: False, POD_KIND: False}
        self._relist = {JOBS: asyncio.Event(), POD_KIND: asyncio.Event()}
        self._last_beat = 0.0
        self._listed: set[str] = set()  # resources listed since the last relist was asked for
        self._certify_all = True  # mark every partition (and the generation) at the next chance
        self._certified: set[str] = set()  # partitions this leader marked complete
        self._generation: str | None = None  # the generation this leader wrote
        self._unrecordable: set[str] = set()  # jobs Redis must not hold (deleted through the API, name taken)
        self._stopping = asyncio.Event()
        self._term = 0  # counts leaderships: a loop of an earlier one ends even if its cancellation was lost
        self.leading = False
        # When this replica's watch last received anything from the API server (an event or a bookmark);
        # a new leadership counts from its start.
        self.last_event_at: float | None = None
        self._not_watching()

    @property
    def lease_name(self) -> str:
        """The Redis lease that elects this cluster's watcher."""
        return f"watch:{self.cluster.id}"

    def request_relist(self) -> None:
        """Relist both resources now (ends the current watch requests) and mark completeness again after."""
        self._listed.clear()
        self._certify_all = True
        for event in self._relist.values():
            event.set()

    def stop(self) -> None:
        """Ask `run` to stop watching, give the lease up and return."""
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def run(self) -> None:
        """Hold the lease and watch; wait and retry while another replica holds it."""
        ttl_ms = int(self._settings.lease_seconds * 1000)
        tick = min(self._settings.lease_seconds / 3, _TICK_MAX_SECONDS)
        try:
            while not self._stopping.is_set():
                takeover = f"{self._holder} " if self._may_take_back else None
                try:
                    acquired = await self._state.leases.acquire(self.lease_name, self._lease_holder, ttl_ms=ttl_ms,
                                                                takeover=takeover)
                    self._may_take_back = False
                except StoreUnavailable:
                    acquired = False
                if acquired:
                    await self._lead(ttl_ms=ttl_ms, tick=tick)
                else:
                    await self._pause(tick)
        finally:
            self.leading = False
            self._not_watching()

    def _not_watching(self) -> None:
        if self._metrics is not None:
            self._metrics.watch_age.labels(self.cluster.id).set(-1)

    def _current(self, term: int) -> bool:
        """Whether the leadership a loop was started for still lasts. (Loops end on cancellation, but a
        cancellation that meets a Redis timeout at the wrong moment can surface as that timeout, which
        the loops survive by design: then this ends them.)"""
        return self.leading and self._term == term

    async def _lead(self, *, ttl_ms: int, tick: float) -> None:
        self._term += 1
        term = self._term
        self.leading = True
        self.last_event_at = self._clock()
        self._dirty.clear()  # both loops relist first, which marks every job again
        self._listed.clear()
        self._certify_all = True
        self._certified.clear()
        self._generation = None
        with contextlib.suppress(StoreUnavailable):
            self._saved_failure = await self._state.watch.last_failures(self.cluster.id)
            self._last_failure = {**self._saved_failure, **self._last_failure}
        log.info("watching cluster", cluster=self.cluster.id, holder=self._lease_holder)
        tasks = [asyncio.create_task(self._kind_loop(JOBS, term), name=f"watch-{self.cluster.id}-jobs"),
                 asyncio.create_task(self._kind_loop(POD_KIND, term), name=f"watch-{self.cluster.id}-pods"),
                 asyncio.create_task(self._write_loop(term), name=f"watch-{self.cluster.id}-writer")]
        try:
            while not self._stopping.is_set():
                await self._pause(tick)
                if self._stopping.is_set():
                    return
                try:
                    still = await self._state.leases.renew(self.lease_name, self._lease_holder, ttl_ms=ttl_ms)
                except StoreUnavailable:
                    still = True  # keep watching; the lease lapses by itself if Redis stays away
                if not still:
                    log.warning("watch lease lost, another replica takes over", cluster=self.cluster.id)
                    return
                await self._beat(force=True)
                self._report_watch_age()
                await self._check_completeness()
        finally:
            self.leading = False
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=_CANCEL_WAIT_SECONDS)
            with contextlib.suppress(StoreUnavailable):
                await asyncio.shield(self._state.leases.release(self.lease_name, self._lease_holder))

    # ----- list-then-watch of one resource

    async def _kind_loop(self, kind: str, term: int) -> None:
        backoff = self._settings.relist_backoff_seconds
        rv: str | None = None
        relist = self._relist[kind]
        while self._current(term):
            try:
                if rv is None or relist.is_set():
                    relist.clear()
                    rv = await self._list(kind)
                rv = await self._watch_until_relist(kind, rv)
                backoff = self._settings.relist_backoff_seconds
            except WatchExpired:
                log.info("watch expired, relisting", cluster=self.cluster.id, kind=kind)
                rv = None
            except asyncio.CancelledError:
                self._streaming[kind] = False
                raise
            except (GatewayError, KubeError, Exception) as e:
                self._streaming[kind] = False
                if isinstance(e, (GatewayError, KubeError)):
                    log.warning("watch failed, retrying", cluster=self.cluster.id, kind=kind,
                                error=type(e).__name__, message=e.message, delaySeconds=round(backoff, 2))
                else:
                    log.exception("watch crashed, retrying", cluster=self.cluster.id, kind=kind)
                await self._sleep_or_relist(kind, backoff * (0.8 + 0.4 * random.random()))
                backoff = min(backoff * 2, self._settings.relist_backoff_max_seconds)
                # Keep rv: the next watch resumes where this one broke; a 410 then forces the relist.

    async def _sleep_or_relist(self, kind: str, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._relist[kind].wait(), timeout=seconds)

    async def _list(self, kind: str) -> str:
        resource = self.cluster.jobs if kind == JOBS else PODS
        result = await self.cluster.list(self.cluster.ref(resource), label_selector=MANAGED_SELECTOR)
        if kind == JOBS:
            self._jobs = {}
            for obj in result.items:
                job_id = job_id_of(obj)
                if job_id:
                    self._remember_job(job_id, obj)
            self._gone |= {k for k in self._last_failure.keys() | self._saved_failure.keys() if k not in self._jobs}
            self._last_failure = {k: v for k, v in self._last_failure.items() if k in self._jobs}
            # Every relist (also the one after Redis lost its data) registers the partitions it found.
            await self._state.partitions.add(self.cluster.id, self._partitions.values())
        else:
            self._pods = {}
            for pod in result.items:
                self._remember_pod(pod)
        await self._state.watch.set_resource_version(self.cluster.id, kind, result.resource_version)
        self._listed.add(kind)
        for job_id in self._jobs:
            self._mark(job_id)
        self._dirty_event.set()  # also with nothing to write: the writer marks completeness after a relist
        log.info("listed", cluster=self.cluster.id, kind=kind, count=len(result.items),
                 resourceVersion=result.resource_version)
        return result.resource_version

    async def _watch_until_relist(self, kind: str, rv: str) -> str | None:
        """Run one watch request; None when a relist was requested meanwhile (the watch is cancelled)."""
        watch = asyncio.create_task(self._watch(kind, rv))
        relist = asyncio.create_task(self._relist[kind].wait())
        try:
            await asyncio.wait({watch, relist}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            relist.cancel()
            if not watch.done():
                watch.cancel()
                # Bounded: a cancelled read on a silent stream may only end when the stream does (its
                # next event, the server's timeoutSeconds, or the session closing at shutdown).
                await asyncio.wait({watch}, timeout=_CANCEL_WAIT_SECONDS)
                if not watch.done():
                    # Left behind: whatever it ends with later is expected and must not surface as
                    # "Task exception was never retrieved".
                    watch.add_done_callback(_discard_outcome)
        if not watch.done() or watch.cancelled():
            return None
        return watch.result()

    async def _watch(self, kind: str, rv: str) -> str:
        resource = self.cluster.jobs if kind == JOBS else PODS
        stream = self.cluster.watch(self.cluster.ref(resource), resource_version=rv, label_selector=MANAGED_SELECTOR,
                                    timeout_seconds=self._settings.watch_timeout_seconds)
        self._streaming[kind] = True
        try:
            async for event in stream:
                rv = event.resource_version or rv
                self.last_event_at = self._clock()
                await self._beat()
                if event.type != "BOOKMARK":
                    self._apply(kind, event)
        finally:
            self._streaming[kind] = False
            await stream.aclose()
        await self._state.watch.set_resource_version(self.cluster.id, kind, rv)
        return rv

    def _apply(self, kind: str, event: WatchEvent) -> None:
        obj = event.object
        job_id = job_id_of(obj)
        if not job_id:
            return
        if kind == JOBS:
            if event.type == "DELETED":
                self._jobs.pop(job_id, None)
                self._last_failure.pop(job_id, None)
                self._gone.add(job_id)
                if not self._pods.get(job_id):
                    self._vanish(job_id)
            else:
                self._remember_job(job_id, obj)
        else:
            name = (obj.get("metadata") or {}).get("name")
            if event.type == "DELETED":
                if isinstance(name, str):
                    self._pods.get(job_id, {}).pop(name, None)
                if not self._pods.get(job_id):
                    self._pods.pop(job_id, None)
                    if job_id not in self._jobs:
                        self._vanish(job_id)
            else:
                self._remember_pod(obj)
        self._mark(job_id)

    def _vanish(self, job_id: str) -> None:
        """The job's object and pods are gone: forget its partition, remember it for archiving."""
        partition = self._partitions.pop(job_id, None)
        if partition is not None:
            self._vanished[job_id] = partition

    def _mark(self, job_id: str) -> None:
        self._dirty.add(job_id)
        self._dirty_event.set()

    def _remember_job(self, job_id: str, obj: dict[str, Any]) -> None:
        self._jobs[job_id] = _encoded(obj)
        self._vanished.pop(job_id, None)
        partition = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_PARTITION)
        if isinstance(partition, str) and partition:
            self._partitions[job_id] = partition

    def _remember_pod(self, pod: dict[str, Any]) -> None:
        job_id = job_id_of(pod)
        name = (pod.get("metadata") or {}).get("name")
        if job_id and isinstance(name, str):
            self._pods.setdefault(job_id, {})[name] = _encoded(pod)
            failure = failure_of(pod)
            if failure is not None:
                self._last_failure[job_id] = failure

    async def _write_loop(self, term: int) -> None:
        """Write the status of every dirty job, each once however many events it had meanwhile."""
        while self._current(term):
            await self._dirty_event.wait()
            self._dirty_event.clear()
            while (self._dirty or self._gone) and self._current(term):
                batch = [self._dirty.pop() for _ in range(min(WRITE_BATCH, len(self._dirty)))]
                try:
                    if self._gone:
                        await self._forget_failures()
                    await self._write(batch)
                except StoreUnavailable:
                    for job_id in batch:
                        self._mark(job_id)
                    await self._pause(self._settings.relist_backoff_seconds)
                except Exception:  # one odd object must not stop every other job's status
                    log.exception("status write failed", cluster=self.cluster.id, jobs=len(batch))
                self._report_backlog()
            if not self._current(term):
                return
            self._caught_up_at = self._clock()
            self._report_backlog()
            try:
                await self._certify()
            except StoreUnavailable:
                pass  # tried again after the next write

    def _report_backlog(self) -> None:
        if self._metrics is not None:
            self._metrics.sync_backlog.labels(self.cluster.id).set(len(self._dirty))

    async def _forget_failures(self) -> None:
        gone, self._gone = sorted(self._gone), set()
        try:
            await self._state.watch.forget_last_failures(self.cluster.id, gone)
        except StoreUnavailable:
            self._gone.update(gone)
            raise
        for job_id in gone:
            self._saved_failure.pop(job_id, None)

    async def _write(self, job_ids: list[str]) -> None:
        """Store the statuses of `job_ids` in one round trip; rebuild the records Redis lacks."""
        now = self._clock()
        updates = []
        vanished = []
        for job_id in job_ids:
            failure = self._last_failure.get(job_id)
            if failure is not None and self._saved_failure.get(job_id) != failure:
                await self._state.watch.set_last_failure(self.cluster.id, job_id, failure)
                self._saved_failure[job_id] = failure
            partition = self._partitions.get(job_id)
            if partition is None or (job_id not in self._jobs and not self._pods.get(job_id)):
                # No object seen yet (its pods came first), or neither object nor pods (a recreate between
                # delete and create, or gone for good): the last status stays. A finished job whose object
                # went is archived (`JobStore.archive`: not while a change such as a recreate holds its lock).
                gone_from = self._vanished.pop(job_id, None)
                if gone_from is not None and job_id not in self._jobs and not self._pods.get(job_id):
                    vanished.append((self.cluster.id, gone_from, job_id))
                continue
            updates.append(StatusUpdate(self.cluster.id, partition, job_id, self._status_of(job_id), now))
        results = await self._statuses.publish(updates)
        if vanished:
            await self._state.jobs.archive(vanished)
        missing = []
        for update, result in zip(updates, results, strict=True):
            if result == -1:
                encoded = self._jobs.get(update.job_id)
                record = record_from_object(orjson.loads(encoded), self.cluster.id) if encoded is not None else None
                if record is not None:
                    missing.append(Rebuild(record, update.status, now))
                elif encoded is not None:
                    # Ours by its labels, but not a record (hand-edited annotations): Redis will never hold
                    # it, so completeness must not wait for it.
                    self._unrecordable.add(update.job_id)
            else:
                self._unrecordable.discard(update.job_id)
        for entry, outcome in zip(missing, await self._state.jobs.rebuild(missing), strict=True):
            job_id = entry.record.identity.id
            if outcome in ("deleted", "name-taken"):
                self._unrecordable.add(job_id)
            else:
                self._unrecordable.discard(job_id)
                if outcome == "written":
                    log.info("job record rebuilt from the cluster", cluster=self.cluster.id, job=job_id)

    async def _certify(self) -> None:
        """Mark partitions complete (see module docstring): all of them after a relist, else new ones."""
        if self._listed != {JOBS, POD_KIND}:
            return  # a relist is under way
        if not self._certify_all and self._certified.issuperset(self._partitions.values()):
            return  # no new partition: nothing to count (this runs after every write batch)
        recorded: dict[str, int] = {}
        for job_id in self._jobs:
            partition = self._partitions.get(job_id)
            if partition is not None and job_id not in self._unrecordable:
                recorded[partition] = recorded.get(partition, 0) + 1
        todo = recorded if self._certify_all else {p: n for p, n in recorded.items() if p not in self._certified}
        if not todo and not self._certify_all:
            return
        generation = f"{int(self._clock() * 1000)} {self._lease_holder}"
        await self._state.watch.register_partitions(self.cluster.id, sorted(todo))
        marked = await self._state.jobs.certify(self.cluster.id, todo, generation=generation)
        self._certified |= marked
        if self._certify_all and marked == set(todo):
            await self._archive_missing()
            await self._state.watch.set_generation(self.cluster.id, generation)
            self._generation = generation
            self._certify_all = False
            log.info("redis holds every job of the cluster", cluster=self.cluster.id, partitions=len(marked),
                     generation=generation)

    async def _archive_missing(self) -> None:
        """After a complete relist: the jobs Redis holds that the cluster has neither an object nor pods for
        went while nobody watched (a TTL or a cleanup during a restart); archive the finished ones (the
        script leaves the others, queued creates and jobs being changed among them)."""
        known = await self._state.partitions.of([self.cluster.id])
        candidates = []
        for partition in known.get(self.cluster.id, []):
            for job_id in await self._state.jobs.list_ids(self.cluster.id, partition, owner=None):
                if job_id not in self._jobs and not self._pods.get(job_id):
                    candidates.append((self.cluster.id, partition, job_id))
        archived = await self._state.jobs.archive(candidates)
        if archived:
            log.info("finished jobs whose object went while unwatched archived", cluster=self.cluster.id,
                     archived=archived)

    async def _check_completeness(self) -> None:
        """Relist at once when a marker this leader wrote is gone: Redis lost data."""
        if self._generation is None:
            return
        try:
            generation = await self._state.watch.generation(self.cluster.id)
            lost = await self._state.jobs.uncertified(self.cluster.id, self._certified)
        except StoreUnavailable:
            return
        if generation is None or lost:
            log.warning("redis lost data; relisting", cluster=self.cluster.id, generationLost=generation is None,
                        partitionsLost=len(lost))
            self._certified -= lost
            self._generation = None
            self.request_relist()

    def _status_of(self, job_id: str) -> JobStatus:
        pods = [orjson.loads(pod) for pod in self._pods.get(job_id, {}).values()]
        encoded = self._jobs.get(job_id)
        return self._statuses.status_of(self.cluster, orjson.loads(encoded) if encoded is not None else None, pods,
                                        last_failure=self._last_failure.get(job_id))

    async def _beat(self, *, force: bool = False) -> None:
        now = self._clock()
        if not all(self._streaming.values()):
            return
        if not force and now - self._last_beat < _BEAT_MIN_INTERVAL:
            return
        self._last_beat = now
        in_redis_up_to = self._caught_up_at if self._dirty else now
        with contextlib.suppress(StoreUnavailable):
            await self._state.watch.set_heartbeat(self.cluster.id, in_redis_up_to)
            if self._watches is not None:
                self._watches.note(self.cluster.id, in_redis_up_to)

    def _report_watch_age(self) -> None:
        """Every lease tick, also while the streams are down (the age then grows, as it should)."""
        if self._metrics is not None and self.last_event_at is not None:
            # The events themselves, not the heartbeat: a heartbeat says Redis is caught up, but the streams
            # can be connected and silent (a stalled API server, a proxy that buffers).
            self._metrics.watch_age.labels(self.cluster.id).set(max(0.0, self._clock() - self.last_event_at))


def _encoded(obj: dict[str, Any]) -> bytes:
    """`obj` as JSON bytes of exactly its length: orjson's own answer keeps the buffer it grew (4 KiB for
    a 2.3 KB pod), and the watch holds two of these per job."""
    return bytes(memoryview(orjson.dumps(obj)))
