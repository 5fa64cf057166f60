"""JobService: the legacy job operations (create/list/get/update/delete), orchestrated.

Contract (handlers call exactly these; each returns the legacy JSON answer as bytes, sent with 200):
- `create(principal, cluster_id=, partition=, body=)`: parse + validate (translators) → claim the name
  in Redis → create on the cluster (idempotent: deterministic name + job-id label) → record. An error
  that is not transient (a 4xx, the gateway's credentials refused) releases the claim and keeps nothing;
  a transient one (unreachable, timed out, 429, 5xx) queues the create in the outbox and records the job
  with phase `queued`. The partition is registered (`gateway.state.partitions`) beside the claim.
  Cluster errors are told apart by `error.transient` and `error.status`, and reach the client through
  the middleware's one mapping.
- `inspect(...)`: what diagnostics (logs, events) need of a job, under exactly GET's rights.
- `get(...)`, `list(...)`: the read model (`gateway.state.views`): the stored answer bytes, one round trip
  for a GET, an index range (with the partition's completeness marker) plus one script call per 500 jobs
  for a LIST; nothing is parsed or rendered. A LIST never answers short after Redis lost data: a
  partition without its completeness marker that was used before (`gateway.state.watch`) is answered
  from the API server (`StatusWriter.read_partition`, rendered here, merged with what Redis still holds,
  such as queued creates), its records are put back, and, while the watch is live, the partition is
  marked complete again; if the API server cannot be reached either, 503 with `Retry-After`.
  While the cluster's watch is not live (`gateway.workers.status.watch_is_live`) a status older than
  `limits.statusStalenessSeconds` is first refreshed from the API server through the one status writer.
  A job missing from Redis is looked up on the cluster (and rebuilt) unless a live watch says Redis is
  current, so guessing ids costs no cluster call.
- `update(...)` (DESIGN §4): unchanged → same object; description/run policy → merge patch; shape
  change → delete + create under the same id when the job is not active (pending with no running pod,
  succeeded, failed), else 409.
- `delete(...)`: delete on the cluster (already gone is fine) → drop record, indexes, name claim.
- PATCH, DELETE and the outbox change a job one at a time (`_changing`: the job's lock in Redis, fenced
  writes), so a DELETE that answered 200 is never undone by a recreate that was under way.
Authorization: `gateway.auth.policy`: partition access for every operation; a job the caller may not
read is reported as 404 (its existence is not revealed); readable but not writable → 403.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, get_args

import orjson
import structlog

from gateway.auth import Principal
from gateway.auth.policy import PartitionAccess, can_access_job, list_owner_filter
from gateway.auth.settings import AuthSettings
from gateway.config import Settings
from gateway.errors import BadRequest, ClusterUnavailable, Conflict, Forbidden, NotFound, TooManyRequests
from gateway.kube import PODS, ClusterApiError, ClusterClient, ClusterRegistry, KubeError, ObjectRef
from gateway.state import JobChanged, JobFence, JobRecord, State, StoredJob
from gateway.state.jobs import PartitionLost, creation_score
from gateway.state.listcache import ListCache
from gateway.state.views import job_bytes, list_bytes, record_from_object, render
from gateway.workers.outbox import Outbox
from gateway.workers.status import StatusWriter, WatchMonitor
from translators.clever import changed_fields, parse_create, parse_update
from translators.labels import LABEL_JOB_ID, job_id_of, label_value
from translators.naming import namespace_for
from translators.spec import FINISHED_PHASES, JobIdentity, JobSpec, JobStatus, Phase

log = structlog.get_logger(__name__)

# Ids are made by `new_job_id` (and come back from the job-id label): a label-safe token.
JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_GONE_POLL_SECONDS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
_GONE_WAIT_LIMIT_SECONDS = 15.0


def _loads(data: bytes) -> Any:
    """Stored JSON decoded (None if damaged: such a job is left out of a filtered answer)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def utc_now() -> str:
    """Current time as an RFC 3339 UTC string with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_job_id() -> str:
    """A fresh job id: 12 lowercase hex digits (readable back from the object name)."""
    return uuid.uuid4().hex[:12]


def queued_status(cluster: str) -> JobStatus:
    """Status of a job accepted by the gateway but not yet by the cluster."""
    return JobStatus(phase="queued", reason="ClusterUnavailable",
                     message=f"accepted; waiting for cluster {cluster} to be reachable")


LEGACY_PHASES: frozenset[str] = frozenset(get_args(Phase))
_UNIX_SECONDS_RE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


@dataclass(frozen=True, slots=True)
class ListFilter:
    """A LIST's optional filters: `phases` (legacy phase names), `since` (epoch seconds: jobs created or
    finished at or after it). None: no such filter."""

    phases: frozenset[str] | None = None
    since: float | None = None

    @classmethod
    def parse(cls, phase: str | None, since: str | None) -> ListFilter | None:
        """From the query's `phase` (comma-separated names) and `since` (RFC 3339 with an offset, or unix
        seconds); None when neither is given; `BadRequest` naming the parameter when one is invalid."""
        if phase is None and since is None:
            return None
        return cls(phases=None if phase is None else _parse_phases(phase),
                   since=None if since is None else _parse_since(since))

    def keeps(self, created_ms: float, status: Any) -> bool:
        """Whether a job created at `created_ms` (epoch ms) with the legacy status object `status` passes."""
        if not isinstance(status, dict):
            return False
        if self.phases is not None and status.get("phase") not in self.phases:
            return False
        if self.since is None or created_ms >= self.since * 1000.0:
            return True
        finished = _epoch(status.get("completionTime"))
        return finished is not None and finished >= self.since


def _parse_phases(raw: str) -> frozenset[str]:
    names = {part.strip().lower() for part in raw.split(",")}
    unknown = sorted(n for n in names if n not in LEGACY_PHASES)
    if not raw.strip() or unknown:
        raise BadRequest(f"phase: {', '.join(repr(n[:40]) for n in unknown) or 'empty'} is not a phase; the "
                         f"phases are {', '.join(sorted(LEGACY_PHASES))} (comma-separated for several)",
                         details={"parameter": "phase", "phases": sorted(LEGACY_PHASES)})
    return frozenset(names)


def _parse_since(raw: str) -> float:
    text = raw.strip()
    if _UNIX_SECONDS_RE.fullmatch(text):
        return float(text)
    moment = _epoch(text)
    if moment is None:
        raise BadRequest("since: expected an RFC 3339 time with its offset (2024-05-01T12:00:00Z) or unix "
                         "seconds (1714564800)", details={"parameter": "since"})
    return moment


def _epoch(value: Any) -> float | None:
    """Epoch seconds of an RFC 3339 date-time with an offset; None for anything else."""
    if not isinstance(value, str) or len(value) > 64 or "T" not in value.upper():
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def _fields_of(status: JobStatus) -> dict[str, Any]:
    return {"phase": status.phase, "reason": status.reason, "message": status.message}


def deleting_status(cluster: str) -> JobStatus:
    """Status of a job whose delete is waiting for the cluster."""
    return JobStatus(phase="terminating", reason="DeletePending",
                     message=f"delete accepted; waiting for cluster {cluster} to be reachable")


@dataclass(frozen=True, slots=True)
class InspectedJob:
    """A readable job for diagnostics: its cluster, its record and its legacy answer, decoded."""

    cluster: ClusterClient
    record: JobRecord
    view: dict[str, Any]


class JobService:
    """The legacy job operations over Redis and the clusters (see module docstring)."""

    def __init__(self, *, settings: Settings, state: State, clusters: ClusterRegistry, outbox: Outbox,
                 access: PartitionAccess, statuses: StatusWriter, watches: WatchMonitor,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._list_cache = ListCache(settings.limits.list_cache_bytes)
        self._auth: AuthSettings = settings.auth
        self._state = state
        self._jobs = state.jobs
        self._clusters = clusters
        self._outbox = outbox
        self._access = access
        self._statuses = statuses
        self._watches = watches
        self._clock = clock
        self._namespaces: dict[tuple[str, str], str] = {}

    # ----- create

    async def create(self, principal: Principal, *, cluster_id: str, partition: str, body: object) -> bytes:
        """Create a job; returns the legacy object (phase `pending`, or `queued` when the cluster is away)."""
        await self._admit_write(principal)
        cluster = self._clusters.get(cluster_id)
        profile = cluster.profile
        spec = parse_create(body, partition=partition, profile=profile)
        namespace = self._namespace(cluster, partition)
        await self._check_partition(principal, cluster, partition, namespace, verb="create")
        now = utc_now()
        identity = JobIdentity(id=new_job_id(), owner=principal.user, cluster=cluster.id, partition=partition,
                               created=now, updated=now)
        body_object = cluster.backend.build(spec, identity, profile)
        record = JobRecord(spec=spec, identity=identity, namespace=namespace,
                           object_name=str(body_object["metadata"]["name"]))  # each backend names its objects
        await self._jobs.claim_name(cluster.id, partition, spec.name, identity.id)
        # Beside the job's own keys (another hash slot): views across partitions find it through this.
        await self._state.partitions.add_recent(cluster.id, partition)
        ref = self._job_ref(cluster, record)
        try:
            created = await cluster.create(ref, body_object, same_if_label=(LABEL_JOB_ID, label_value(identity.id)),
                                           impersonate=principal)
        except KubeError as e:
            if e.transient:
                return await self._queue_create(record, principal, error=e)
            await self._jobs.release_name(cluster.id, partition, spec.name, identity.id)
            if isinstance(e, ClusterApiError) and e.status.code == 404:
                # A create finds nothing only when the namespace is missing.
                raise NotFound(f"partition {partition!r} does not exist on cluster {cluster.id!r} (the cluster has "
                               f"no namespace {namespace!r})",
                               details={"cluster": cluster.id, "clusterStatus": e.status.summary(),
                                        "partition": partition, "namespace": namespace}) from e
            raise
        except BaseException:
            await self._jobs.release_name(cluster.id, partition, spec.name, identity.id)
            raise
        status = self._statuses.status_of(cluster, created, [])
        await self._jobs.put(record, status=status, observed_at=self._clock())
        log.info("job created", cluster=cluster.id, partition=partition, job=identity.id, owner=identity.owner,
                 object=record.object_name)
        return render(record, status)

    async def _queue_create(self, record: JobRecord, principal: Principal, *, error: KubeError,
                            fence: JobFence | None = None) -> bytes:
        queued = record.with_pending("create")
        status = queued_status(record.identity.cluster)
        await self._jobs.put(queued, status=status, observed_at=self._clock(), fence=fence)
        await self._outbox.enqueue("create", queued.identity, principal=principal)
        log.warning("cluster unavailable, create queued", cluster=record.identity.cluster,
                    job=record.identity.id, error=error.kind)
        return render(record, status)

    # ----- read

    @property
    def list_cache(self) -> ListCache:
        """This replica's LIST cache (its counters are exported as metrics)."""
        return self._list_cache

    async def list(self, principal: Principal, *, cluster_id: str, partition: str,
                   requested_user: str | None = None, filters: ListFilter | None = None) -> bytes:
        """The partition's jobs the caller may see, oldest first (only those `filters` keeps, if given:
        without filters the answer is the joined read model, byte for byte)."""
        cluster = self._clusters.get(cluster_id)
        namespace = self._namespace(cluster, partition)
        await self._check_partition(principal, cluster, partition, namespace, verb="list")
        # The index chosen here is the access decision: an owner's index holds only that owner's jobs;
        # the whole partition is listed only for admins and partition readers.
        owner = list_owner_filter(principal, cluster=cluster.id, partition=partition,
                                  requested_user=requested_user, settings=self._auth)
        # The legacy answer is served from this replica's cache while nothing in the partition changed
        # (`gateway.state.listcache`); only with a live watch: without one, a LIST may have to refresh
        # statuses from the cluster first.
        cache_key = (cluster.id, partition, owner)
        cacheable = filters is None and self._list_cache.enabled and self._watches.live(cluster.id)
        if cacheable and self._list_cache.holds(cache_key):
            version = await self._jobs.list_version(cluster.id, partition)
            if version is not None and (cached := self._list_cache.get(cache_key, version)) is not None:
                return cached
        listing = await self._jobs.listing(cluster.id, partition, owner=owner, scores=filters is not None)
        if not listing.complete and not await self._state.watch.partition_is_new(cluster.id, partition):
            return await self._list_after_loss(cluster, partition, namespace, owner=owner, filters=filters)
        ids = listing.ids
        if ids and not self._watches.live(cluster.id):
            fresh = await self._jobs.freshness(cluster.id, partition, ids)
            if any(pending is None and self._stale(observed) for observed, pending in fresh.values()):
                await self._statuses.refresh_partition(cluster, partition, namespace, ids)
        try:
            if filters is not None:
                return await self._filtered(cluster, partition, listing.ids, listing.scores, filters,
                                            complete=listing.complete)
            count, items = await self._jobs.joined(cluster.id, partition, ids, complete=listing.complete)
        except PartitionLost:
            return await self._list_after_loss(cluster, partition, namespace, owner=owner, filters=filters)
        body = list_bytes(count, items)
        if cacheable and listing.version is not None:  # read before the jobs: a later write changes it
            self._list_cache.put(cache_key, listing.version, body)
        return body

    async def _filtered(self, cluster: ClusterClient, partition: str, ids: builtins.list[str],
                        scores: builtins.list[float], filters: ListFilter, *, complete: bool) -> bytes:
        """A LIST with filters: the stored parts of each job, its status decoded to judge it (the only
        LIST that parses anything: filters are asked for), the answers of the kept ones as stored."""
        created = dict(zip(ids, scores, strict=True))
        kept = [job_bytes(view, status)
                for job_id, view, status in await self._jobs.rows(cluster.id, partition, ids, complete=complete)
                if filters.keeps(created.get(job_id, 0.0), _loads(status))]
        return list_bytes(len(kept), b",".join(kept))

    async def _list_after_loss(self, cluster: ClusterClient, partition: str, namespace: str, *,
                               owner: str | None, filters: ListFilter | None = None) -> bytes:
        """A LIST of a partition whose data Redis lost: from the API server, merged with what Redis holds."""
        try:
            read = await self._statuses.read_partition(cluster, partition, namespace)
        except KubeError as e:
            if not e.transient:
                raise
            raise ClusterUnavailable(
                f"the gateway's store lost the jobs of partition {partition!r} and rebuilds them from cluster "
                f"{cluster.id!r}, which cannot be reached now; retry shortly",
                details={"partition": partition}, headers={"Retry-After": "1"}) from e
        outcomes = await self._statuses.restore(read)
        if not self._settings.sync.watch or self._watches.live(cluster.id):
            # Redis holds the partition again and the live watch keeps it so: mark it complete (only if
            # the index still holds what was just put back: another loss meanwhile leaves it unmarked).
            held = sum(1 for outcome in outcomes.values() if outcome in ("written", "exists"))
            await self._state.watch.register_partitions(cluster.id, [partition])
            await self._jobs.certify(cluster.id, {partition: held}, generation=f"list {utc_now()}")
        # Redis's answers (fresh statuses, and jobs only Redis knows: queued creates), then whatever the
        # cluster has that Redis does not have even now.
        after = await self._jobs.listing(cluster.id, partition, owner=owner, scores=True)
        stored = {job_id: job_bytes(view, status)
                  for job_id, view, status in await self._jobs.rows(cluster.id, partition, after.ids)}
        items = {job_id: (score, stored[job_id]) for job_id, score in zip(after.ids, after.scores, strict=True)
                 if job_id in stored}
        for record, status in read.jobs:
            ident = record.identity
            if (owner is None or ident.owner == owner) and ident.id not in items:
                items[ident.id] = (creation_score(ident.created), render(record, status))
        ordered = sorted(items.items(), key=lambda item: (item[1][0], item[0]))
        if filters is not None:
            ordered = [(job_id, (score, view)) for job_id, (score, view) in ordered
                       if filters.keeps(score, (_loads(view) or {}).get("status"))]
        log.info("list answered from the cluster after a Redis data loss", cluster=cluster.id, partition=partition,
                 jobs=len(ordered))
        return list_bytes(len(ordered), b",".join(view for _, (_, view) in ordered))

    async def get(self, principal: Principal, *, cluster_id: str, partition: str, job_id: str) -> bytes:
        """One job."""
        cluster = self._clusters.get(cluster_id)
        stored = await self._readable_view(principal, cluster, partition, job_id, verb="get")
        return stored.body

    async def inspect(self, principal: Principal, *, cluster_id: str, partition: str, job_id: str) -> InspectedJob:
        """The job as GET answers it, with its record and cluster, under GET's rights (logs, events)."""
        cluster = self._clusters.get(cluster_id)
        stored = await self._readable_view(principal, cluster, partition, job_id, verb="get")
        record = await self._jobs.get(cluster.id, partition, job_id)
        if record is None:  # deleted between the two reads
            raise self._not_found(cluster, partition, job_id)
        return InspectedJob(cluster=cluster, record=record, view=orjson.loads(stored.body))

    async def _readable_view(self, principal: Principal, cluster: ClusterClient, partition: str, job_id: str, *,
                             verb: str) -> StoredJob:
        namespace = self._namespace(cluster, partition)
        await self._check_partition(principal, cluster, partition, namespace, verb=verb)
        self._check_id(cluster, partition, job_id)
        stored = await self._jobs.read(cluster.id, partition, job_id)
        live = self._watches.live(cluster.id)
        if (stored is None and not (live and await self._watch_resumable(cluster))
                and await self._rebuild_from_cluster(cluster, partition, namespace, job_id) is not None):
            stored = await self._jobs.read(cluster.id, partition, job_id)
        if stored is None or not can_access_job(principal, owner=stored.owner, cluster=cluster.id,
                                                partition=partition, write=False, settings=self._auth):
            raise self._not_found(cluster, partition, job_id)
        if stored.pending is None and not live and self._stale(stored.observed_at):
            record = await self._jobs.get(cluster.id, partition, job_id)
            if record is not None:
                await self._statuses.refresh_job(cluster, record)
                stored = await self._jobs.read(cluster.id, partition, job_id) or stored
        return stored

    # ----- update

    async def update(self, principal: Principal, *, cluster_id: str, partition: str, job_id: str,
                     body: object) -> bytes:
        """Apply a PATCH body (DESIGN §4), as the job's one writer (see `_changing`)."""
        await self._admit_write(principal)
        cluster = self._clusters.get(cluster_id)
        profile = cluster.profile
        await self._writable(principal, cluster, partition, job_id, verb="update")
        async with self._changing(cluster, partition, job_id) as fence:
            record = await self._writable(principal, cluster, partition, job_id, verb="update")
            if record.pending is not None:
                raise Conflict(f"job {job_id} is waiting for cluster {cluster.id} ({record.pending} pending); "
                               "try again once it reached the cluster")
            new_spec = parse_update(body, current=record.spec, profile=profile)
            kind = cluster.backend.classify_update(record.spec, new_spec)
            if kind == "unchanged":
                return (await self._readable_view(principal, cluster, partition, job_id, verb="get")).body
            identity = replace(record.identity, updated=utc_now())
            if kind == "in-place":
                patch = cluster.backend.in_place_patch(record.spec, new_spec, identity, cluster.profile)
                patched = await cluster.merge_patch(self._job_ref(cluster, record), patch, impersonate=principal)
                updated = replace(record, spec=new_spec, identity=identity)
                status = await self._statuses.status_from_cluster(cluster, job_id, patched,
                                                                  await self._pods(cluster, record))
                await self._jobs.put(updated, status=status, observed_at=self._clock(), fence=fence)
                log.info("job updated in place", cluster=cluster.id, job=job_id)
                return render(updated, status)
            return await self._recreate(principal, cluster, record, new_spec, identity, fence=fence)

    def _changing(self, cluster: ClusterClient, partition: str,
                  job_id: str) -> contextlib.AbstractAsyncContextManager[JobFence]:
        """Hold the job's lock: PATCH, DELETE and the outbox change a job one at a time, so a DELETE that
        answered 200 is never undone by a recreate that was under way (it waits for it, then deletes
        what it made)."""
        return self._jobs.job_lock(cluster.id, partition, job_id,
                                   wait_seconds=self._settings.limits.job_lock_wait_seconds)

    async def _recreate(self, principal: Principal, cluster: ClusterClient, record: JobRecord, new_spec: JobSpec,
                        identity: JobIdentity, *, fence: JobFence) -> bytes:
        profile = cluster.profile
        ref = self._job_ref(cluster, record)
        current = await cluster.try_get(ref, impersonate=principal)
        pods = await self._pods(cluster, record)
        status = self._statuses.status_of(cluster, current, pods)
        running_pod = any((p.get("status") or {}).get("phase") == "Running" for p in pods)
        inactive = status.phase in FINISHED_PHASES or (status.phase == "pending" and not running_pod)
        if not inactive:
            changed = changed_fields(record.spec, new_spec)
            raise Conflict(
                f"job {record.identity.id} is {status.phase}: changing {', '.join(changed)} needs a new job object "
                "on the cluster, which is allowed only while the job is not active (pending with no running pod, "
                "succeeded or failed); wait for it to finish or delete it",
                details={"phase": status.phase, "fields": changed})
        new_body = cluster.backend.build(new_spec, identity, profile)
        if current is not None:
            # Let the cluster judge the new object before the old one is gone: a dry-run create runs schema
            # validation and admission, then finds the name taken (AlreadyExists = everything else passed).
            # Any other refusal leaves the job exactly as it was.
            try:
                await cluster.create(ref, new_body, dry_run=True, impersonate=principal)
            except ClusterApiError as e:
                if e.status.reason != "AlreadyExists":
                    raise
            await cluster.delete(ref, impersonate=principal)
            await self._wait_gone(cluster, ref)
        updated = replace(record, spec=new_spec, identity=identity)
        try:
            created = await cluster.create(ref, new_body, same_if_label=(LABEL_JOB_ID, label_value(identity.id)),
                                           impersonate=principal)
        except KubeError as e:
            if e.transient:
                return await self._queue_create(updated, principal, error=e, fence=fence)
            raise
        new_status = self._statuses.status_of(cluster, created, [])
        try:
            await self._jobs.put(updated, status=new_status, observed_at=self._clock(), fence=fence)
        except JobChanged:
            # The lock lapsed under us and the job changed meanwhile (a DELETE, most likely): what this
            # request created must not outlive it.
            with contextlib.suppress(KubeError):
                await cluster.delete(ref, impersonate=principal)
            raise
        log.info("job recreated with a new shape", cluster=cluster.id, job=identity.id)
        return render(updated, new_status)

    async def _wait_gone(self, cluster: ClusterClient, ref: ObjectRef) -> None:
        """Wait until the deleted object is gone, so that the create under the same name succeeds."""
        deadline = time.monotonic() + _GONE_WAIT_LIMIT_SECONDS
        step = 0
        while await cluster.try_get(ref) is not None:
            if time.monotonic() > deadline:
                raise Conflict(f"the previous object {ref.name} is still being deleted; try again shortly")
            await asyncio.sleep(_GONE_POLL_SECONDS[min(step, len(_GONE_POLL_SECONDS) - 1)])
            step += 1

    # ----- delete

    async def delete(self, principal: Principal, *, cluster_id: str, partition: str, job_id: str) -> bytes:
        """Delete a job, as its one writer; returns the last known object with phase `terminating`.

        A job whose create is still queued is deleted on the cluster too (its create may have landed
        before the worker that made it could record so): the answer 200 means the job never runs again."""
        await self._admit_write(principal)
        cluster = self._clusters.get(cluster_id)
        await self._writable(principal, cluster, partition, job_id, verb="delete")
        async with self._changing(cluster, partition, job_id) as fence:
            record = await self._writable(principal, cluster, partition, job_id, verb="delete")
            # The answer keeps what was last known (start and completion time, replicas), now terminating.
            last = await self._jobs.last_status(cluster.id, partition, job_id) or JobStatus(phase="pending")
            gone = replace(last, phase="terminating", reason="Deleted", message="the job was deleted")
            try:
                await cluster.delete(self._job_ref(cluster, record), impersonate=principal)
            except KubeError as e:
                if not e.transient:
                    raise
                waiting = replace(last, **_fields_of(deleting_status(cluster.id)))
                await self._jobs.put(record.with_pending("delete"), status=waiting, observed_at=self._clock(),
                                     fence=fence)
                await self._outbox.enqueue("delete", record.identity, principal=principal)
                log.warning("cluster unavailable, delete queued", cluster=cluster.id, job=job_id)
                return render(record, waiting)
            await self._jobs.remove(record, fence=fence)
            log.info("job deleted", cluster=cluster.id, job=job_id)
            return render(record, gone)

    # ----- helpers

    async def _admit_write(self, principal: Principal) -> None:
        """429 once the user made `limits.writesPerUserPerMinute` changes this minute (on every replica)."""
        limit = self._settings.limits.writes_per_user_per_minute
        if limit <= 0:
            return
        count, window_left = await self._state.counters.count_write(principal.user)
        if count > limit:
            retry_after = max(1, math.ceil(window_left))
            raise TooManyRequests(
                f"user {principal.user!r} made more than {limit} changes in one minute; retry in {retry_after} s",
                details={"limit": limit, "retryAfterSeconds": retry_after}, headers={"Retry-After": str(retry_after)})

    def _namespace(self, cluster: ClusterClient, partition: str) -> str:
        """The partition's namespace on the cluster (validated once per partition, then remembered)."""
        key = (cluster.id, partition)
        namespace = self._namespaces.get(key)
        if namespace is None:
            namespace = namespace_for(partition, cluster.profile)  # SpecError (400) for a bad partition
            if len(self._namespaces) < 10_000:
                self._namespaces[key] = namespace
        return namespace

    def _stale(self, observed_at: float) -> bool:
        return self._clock() - observed_at > self._settings.limits.status_staleness_seconds

    def _job_ref(self, cluster: ClusterClient, record: JobRecord) -> ObjectRef:
        return cluster.ref(cluster.jobs, record.namespace, record.object_name)

    async def _check_partition(self, principal: Principal, cluster: ClusterClient, partition: str, namespace: str,
                               *, verb: str) -> None:
        resource = cluster.jobs
        await self._access.check(principal, cluster=cluster.id, partition=partition, verb=verb, namespace=namespace,
                                 group=resource.group, resource=resource.plural)

    @staticmethod
    def _not_found(cluster: ClusterClient, partition: str, job_id: str) -> NotFound:
        return NotFound(f"job {job_id[:64]} not found in partition {partition} of cluster {cluster.id}",
                        details={"id": job_id[:64]})

    def _check_id(self, cluster: ClusterClient, partition: str, job_id: str) -> None:
        if not JOB_ID_RE.fullmatch(job_id):  # not an id we make: no Redis key, no cluster call
            raise self._not_found(cluster, partition, job_id)

    async def _writable(self, principal: Principal, cluster: ClusterClient, partition: str, job_id: str, *,
                        verb: str) -> JobRecord:
        namespace = self._namespace(cluster, partition)
        await self._check_partition(principal, cluster, partition, namespace, verb=verb)
        self._check_id(cluster, partition, job_id)
        record = await self._jobs.get(cluster.id, partition, job_id)
        if record is None and not await self._store_is_current(cluster):
            record = await self._rebuild_from_cluster(cluster, partition, namespace, job_id)
        if record is None or not can_access_job(principal, owner=record.identity.owner, cluster=cluster.id,
                                                partition=partition, write=False, settings=self._auth):
            raise self._not_found(cluster, partition, job_id)
        if not can_access_job(principal, owner=record.identity.owner, cluster=cluster.id, partition=partition,
                              write=True, settings=self._auth):
            raise Forbidden(f"job {job_id} belongs to another user; you may only read it")
        return record

    async def _store_is_current(self, cluster: ClusterClient) -> bool:
        """Redis mirrors the cluster: a live watch is feeding it and its resume point survived (a flushed
        or replaced Redis loses both). Then a missing record is a missing job, and an unknown id costs
        no cluster call, so guessing ids cannot be turned into load on the cluster."""
        return self._watches.live(cluster.id) and await self._watch_resumable(cluster)

    async def _watch_resumable(self, cluster: ClusterClient) -> bool:
        return await self._state.watch.resource_version(cluster.id, "jobs") is not None

    async def _rebuild_from_cluster(self, cluster: ClusterClient, partition: str, namespace: str,
                                    job_id: str) -> JobRecord | None:
        """Redis lost this job? Look for it on the cluster by its id label and restore the record."""
        try:
            found = await cluster.list(cluster.ref(cluster.jobs, namespace), label_selector=cluster.backend.pod_selector(job_id),
                                       page_size=self._settings.limits.list_page_size)
        except KubeError as e:
            if not e.transient and not (isinstance(e, ClusterApiError) and e.status.code == 404):
                raise
            return None
        for obj in found.items:
            if job_id_of(obj) != job_id:
                continue
            record = record_from_object(obj, cluster.id)
            if record is None or record.identity.partition != partition:
                continue
            pods = await self._pods(cluster, record)
            status = await self._statuses.status_from_cluster(cluster, job_id, obj, pods)
            await self._jobs.put_if_absent(record, status=status, observed_at=self._clock())
            log.info("job record rebuilt from the cluster", cluster=cluster.id, job=job_id)
            return await self._jobs.get(cluster.id, partition, job_id) or record
        return None

    async def _pods(self, cluster: ClusterClient, record: JobRecord) -> builtins.list[dict[str, Any]]:
        result = await cluster.list(cluster.ref(PODS, record.namespace),
                                    label_selector=cluster.backend.pod_selector(record.identity.id),
                                    page_size=self._settings.limits.list_page_size)
        return result.items

