"""Redis: job records, indexes, name claims, status cache, outbox stream, leases, watch resume points.

The cluster is the source of truth (DESIGN §3): everything here can be rebuilt from the clusters'
labels and annotations by `gateway.sync`. Keys (all under `redis.keyPrefix`, default `cg:`):

    job:{cluster}:{id}                     JSON record: spec, identity, namespace, object name, pending op
    status:{cluster}:{id}                  JSON last observed status + observedAt (epoch seconds)
    idx:{cluster}:{partition}              sorted set id → creation time (ms): the partition's jobs
    owner:{cluster}:{partition}:{owner}    sorted set id → creation time (ms): one user's jobs there
    name:{cluster}:{partition}:{name}      the unique-name claim: value = job id
    gone:{cluster}:{id}                    tombstone of a job deleted through the API (TTL): the watch
                                           must not rebuild it from a late event
    watchbeat:{cluster}                    when the cluster's watch was last known healthy
    lastfail:{cluster}                     hash id → JSON of the last pod failure the watch saw (its pods
                                           may be gone: Volcano restarts, cleanPodPolicy), kept across restarts
    rv:{cluster}:{what}                    last resourceVersion seen by the watch
    lease:{name}                           lease holder (SET NX PX; renewed by compare-and-expire)
    lock:{cluster}:{id}                    the one-writer lock of a job: a random token (SET NX PX), held by
                                           the request or outbox worker changing the job on its cluster
    writes:{user}:{minute}                 the user's writes in that minute (INCR, expires after 2 minutes)
    outbox                                 stream of create/delete operations not yet accepted; group `workers`

One writer per job: PATCH, DELETE and the outbox's operations on a job hold its lock (`try_lock_job`,
renewed while held) from reading the record to storing the result, and the writes that end them are
fenced: `put`/`remove`/`settle` with `fence=` check, in the same transaction, that the lock still
carries their token, and raise `JobChanged` (409, nothing written) when it does not (it lapsed and
someone else changed the job meanwhile).

Contract: every Redis failure surfaces as `gateway.errors.StoreUnavailable` (503), chained. Multi-key
writes run in MULTI/EXEC transactions; compare-and-set steps use WATCH through redis-py's
`transaction()` (no Lua, so the embedded fakeredis of the demo needs no Lua runtime).
`redis.url: embedded` builds an in-process fakeredis.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

import structlog
from redis import asyncio as redis_asyncio
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from gateway.config import EMBEDDED_REDIS, RedisSettings
from gateway.errors import Conflict, StoreUnavailable
from translators.errors import NotTranslatable
from translators.labels import spec_from_json, spec_to_json
from translators.spec import JobIdentity, JobSpec, JobStatus, ReplicaStatus
from translators.status import PodProblem

log = structlog.get_logger(__name__)

T = TypeVar("T")
OUTBOX_GROUP = "workers"
TOMBSTONE_SECONDS = 600
# Long enough for the slowest change (a recreate waits up to 15 s for the old object to go); renewed while held.
JOB_LOCK_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as the gateway knows it. `pending` is the operation waiting in the outbox, if any."""

    spec: JobSpec
    identity: JobIdentity
    namespace: str
    object_name: str
    pending: str | None = None  # "create" | "delete" | None

    def with_pending(self, pending: str | None) -> JobRecord:
        """The same record with another pending operation."""
        return replace(self, pending=pending)


@dataclass(frozen=True, slots=True)
class JobFence:
    """Proof of holding a job's lock: its key and the token this holder wrote there."""

    key: str
    token: str


class JobChanged(Conflict):
    """A fenced write found the job's lock gone or taken by another holder: nothing was written."""


class JobBusy(Conflict):
    """Another request (or the outbox) is changing the job and did not finish in time."""


@dataclass(frozen=True, slots=True)
class ObservedStatus:
    """A job's last observed status and when (epoch seconds) it was observed."""

    status: JobStatus
    observed_at: float


def _record_to_json(record: JobRecord) -> str:
    return json.dumps({
        "spec": spec_to_json(record.spec),
        "identity": asdict(record.identity),
        "namespace": record.namespace,
        "objectName": record.object_name,
        "pending": record.pending,
    }, separators=(",", ":"))


def _record_from_json(text: str) -> JobRecord:
    data = json.loads(text)
    return JobRecord(spec=spec_from_json(data["spec"]), identity=JobIdentity(**data["identity"]),
                     namespace=data["namespace"], object_name=data["objectName"], pending=data.get("pending"))


def status_to_dict(status: JobStatus) -> dict[str, Any]:
    """JSON-ready form of a JobStatus."""
    return asdict(status)


def status_from_dict(data: dict[str, Any]) -> JobStatus:
    """Inverse of `status_to_dict`."""
    replicas = tuple(ReplicaStatus(**r) for r in data.get("replicas") or ())
    return JobStatus(**{**data, "replicas": replicas})


def creation_score(created: str) -> float:
    """Sort key of a job: its creation time in epoch milliseconds (0 when unparseable)."""
    try:
        return datetime.fromisoformat(created).timestamp() * 1000.0
    except ValueError:
        return 0.0


class JobStore:
    """Typed access to the gateway's Redis keys (see module docstring)."""

    def __init__(self, redis: redis_asyncio.Redis, *, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.prefix = prefix
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> JobStore:
        """Connect per settings (`embedded` → in-process fakeredis for the demo)."""
        client: redis_asyncio.Redis
        if settings.url == EMBEDDED_REDIS:
            import fakeredis  # only the demo needs it

            client = fakeredis.FakeAsyncRedis(decode_responses=True)
        else:
            client = redis_asyncio.Redis.from_url(
                settings.url, decode_responses=True, socket_timeout=settings.socket_timeout_seconds,
                socket_connect_timeout=settings.socket_timeout_seconds, max_connections=settings.max_connections)
        return cls(client, prefix=settings.key_prefix)

    async def close(self) -> None:
        """Close the connection pool."""
        try:
            await self.redis.aclose()
        except (RedisError, OSError):
            pass

    # ----- keys

    def _job(self, cluster: str, job_id: str) -> str:
        return f"{self.prefix}job:{cluster}:{job_id}"

    def _status(self, cluster: str, job_id: str) -> str:
        return f"{self.prefix}status:{cluster}:{job_id}"

    def _index(self, cluster: str, partition: str) -> str:
        return f"{self.prefix}idx:{cluster}:{partition}"

    def _owner(self, cluster: str, partition: str, owner: str) -> str:
        return f"{self.prefix}owner:{cluster}:{partition}:{owner}"

    def _name(self, cluster: str, partition: str, name: str) -> str:
        return f"{self.prefix}name:{cluster}:{partition}:{name}"

    def _gone(self, cluster: str, job_id: str) -> str:
        return f"{self.prefix}gone:{cluster}:{job_id}"

    def _rv(self, cluster: str, what: str) -> str:
        return f"{self.prefix}rv:{cluster}:{what}"

    def _beat(self, cluster: str) -> str:
        return f"{self.prefix}watchbeat:{cluster}"

    def _last_failures(self, cluster: str) -> str:
        return f"{self.prefix}lastfail:{cluster}"

    def _lease(self, name: str) -> str:
        return f"{self.prefix}lease:{name}"

    def _lock(self, cluster: str, job_id: str) -> str:
        return f"{self.prefix}lock:{cluster}:{job_id}"

    @property
    def outbox_key(self) -> str:
        """The outbox stream's key."""
        return f"{self.prefix}outbox"

    # ----- error boundary

    @asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except (RedisError, OSError, TimeoutError) as e:
            log.warning("redis call failed", operation=what, error=type(e).__name__)
            raise StoreUnavailable("the gateway's store (Redis) is unavailable") from e

    async def _call(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        # redis-py's annotations say bytes | str; the client is built with decode_responses=True.
        async with self._guard(what):
            return await call()

    async def ping(self) -> float:
        """Round trip in milliseconds; StoreUnavailable when Redis does not answer."""
        started = time.perf_counter()
        await self._call("ping", self.redis.ping)
        return (time.perf_counter() - started) * 1000.0

    # ----- names

    async def claim_name(self, cluster: str, partition: str, name: str, job_id: str) -> None:
        """Claim `name` in (cluster, partition) for `job_id`; `Conflict` when another job holds it."""
        key = self._name(cluster, partition, name)
        async with self._guard("claim"):
            if await self.redis.set(key, job_id, nx=True):
                return
            holder = await self.redis.get(key)
        if holder != job_id:
            raise Conflict(f"a job named {name!r} already exists in partition {partition!r}",
                           details={"name": name, "partition": partition})

    async def name_holder(self, cluster: str, partition: str, name: str) -> str | None:
        """The id holding a name, if any."""
        holder: str | None = await self._call("name", lambda: self.redis.get(self._name(cluster, partition, name)))
        return holder

    async def release_name(self, cluster: str, partition: str, name: str, job_id: str) -> None:
        """Drop the claim if (and only if) `job_id` holds it."""
        await self._compare_and_delete(self._name(cluster, partition, name), job_id)

    async def _compare_and_set(self, what: str, keys: tuple[str, ...],
                               step: Callable[[Pipeline], Awaitable[bool]]) -> bool:
        """Run `step` as a WATCH/MULTI transaction on `keys`; redis-py reruns it while they change under it.
        `step` reads first, then either queues its writes after `pipe.multi()` and returns True, or
        unwatches and returns False (nothing written)."""
        async with self._guard(what):
            return bool(await self.redis.transaction(step, *keys, value_from_callable=True))

    async def _compare_and_delete(self, key: str, expected: str) -> bool:
        async def step(pipe: Pipeline) -> bool:
            if await pipe.get(key) != expected:
                await pipe.unwatch()
                return False
            pipe.multi()
            pipe.delete(key)
            return True

        return await self._compare_and_set("compare-and-delete", (key,), step)

    # ----- records

    async def put(self, record: JobRecord, *, status: JobStatus | None = None,
                  observed_at: float | None = None, fence: JobFence | None = None) -> None:
        """Write the record, its indexes and its name claim (and optionally its status) atomically;
        with `fence`, only while that lock is still held (else `JobChanged`, nothing written)."""
        ident = record.identity
        score = creation_score(ident.created)

        def queue(pipe: Pipeline) -> None:
            pipe.set(self._job(ident.cluster, ident.id), _record_to_json(record))
            pipe.zadd(self._index(ident.cluster, ident.partition), {ident.id: score})
            pipe.zadd(self._owner(ident.cluster, ident.partition, ident.owner), {ident.id: score})
            pipe.set(self._name(ident.cluster, ident.partition, record.spec.name), ident.id)
            if status is not None:
                pipe.set(self._status(ident.cluster, ident.id), self._observed_json(status, observed_at))

        await self._write(record, queue, fence=fence, what="put")

    async def _write(self, record: JobRecord, queue: Callable[[Pipeline], None], *, fence: JobFence | None,
                     what: str) -> None:
        """Run the writes `queue` adds as one transaction; with `fence`, only while the lock is ours."""
        if fence is None:
            async with self._guard(what), self.redis.pipeline(transaction=True) as pipe:
                queue(pipe)
                await pipe.execute()
            return

        async def step(pipe: Pipeline) -> bool:
            if await pipe.get(fence.key) != fence.token:
                await pipe.unwatch()
                return False
            pipe.multi()
            queue(pipe)
            return True

        if not await self._compare_and_set(what, (fence.key,), step):
            raise JobChanged(f"job {record.identity.id} was changed by another request meanwhile; "
                             "nothing was stored: read it again and retry",
                             details={"id": record.identity.id})

    async def put_if_absent(self, record: JobRecord, *, status: JobStatus, observed_at: float) -> bool:
        """Rebuild path: write the record only when no record (and no other holder of its name) exists."""
        ident = record.identity
        job_key = self._job(ident.cluster, ident.id)
        name_key = self._name(ident.cluster, ident.partition, record.spec.name)
        gone_key = self._gone(ident.cluster, ident.id)

        async def step(pipe: Pipeline) -> bool:
            if await pipe.exists(job_key) or await pipe.exists(gone_key):
                await pipe.unwatch()
                return False
            holder = await pipe.get(name_key)
            if holder not in (None, ident.id):
                await pipe.unwatch()
                log.warning("rebuild skipped: name held by another job", cluster=ident.cluster, job=ident.id,
                            holder=holder)
                return False
            pipe.multi()
            score = creation_score(ident.created)
            pipe.set(job_key, _record_to_json(record))
            pipe.zadd(self._index(ident.cluster, ident.partition), {ident.id: score})
            pipe.zadd(self._owner(ident.cluster, ident.partition, ident.owner), {ident.id: score})
            pipe.set(name_key, ident.id)
            pipe.set(self._status(ident.cluster, ident.id), self._observed_json(status, observed_at))
            return True

        return await self._compare_and_set("put-if-absent", (job_key, name_key, gone_key), step)

    async def settle(self, record: JobRecord, *, status: JobStatus, observed_at: float,
                     fence: JobFence | None = None) -> bool:
        """Clear the record's pending operation, only if it is still the one `record` carries (False when the
        job was deleted or changed meanwhile: then nothing is written)."""
        ident = record.identity
        job_key = self._job(ident.cluster, ident.id)
        keys = (job_key,) if fence is None else (job_key, fence.key)

        async def step(pipe: Pipeline) -> bool:
            text = await pipe.get(job_key)
            current = _record_from_json(str(text)) if text is not None else None
            held = fence is None or await pipe.get(fence.key) == fence.token
            if current is None or current.pending != record.pending or not held:
                await pipe.unwatch()
                return False
            pipe.multi()
            pipe.set(job_key, _record_to_json(replace(current, pending=None)))
            pipe.set(self._status(ident.cluster, ident.id), self._observed_json(status, observed_at))
            return True

        return await self._compare_and_set("settle", keys, step)

    async def get(self, cluster: str, job_id: str) -> JobRecord | None:
        """The record, or None (a record that cannot be decoded counts as absent, and is logged)."""
        text = await self._call("get", lambda: self.redis.get(self._job(cluster, job_id)))
        if text is None:
            return None
        try:
            return _record_from_json(text)
        except (ValueError, KeyError, TypeError, NotTranslatable) as e:
            log.error("undecodable job record ignored", cluster=cluster, job=job_id, error=str(e))
            return None

    async def list(self, cluster: str, partition: str, *, owner: str | None = None) -> builtins.list[JobRecord]:
        """Records of a partition (or of one owner there), oldest first."""
        key = self._index(cluster, partition) if owner is None else self._owner(cluster, partition, owner)
        ids: builtins.list[str] = await self._call("list", lambda: self.redis.zrange(key, 0, -1))
        if not ids:
            return []
        texts = await self._call("list", lambda: self.redis.mget([self._job(cluster, i) for i in ids]))
        records = []
        for job_id, text in zip(ids, texts, strict=True):
            if text is None:
                continue
            try:
                records.append(_record_from_json(text))
            except (ValueError, KeyError, TypeError, NotTranslatable) as e:
                log.error("undecodable job record ignored", cluster=cluster, job=job_id, error=str(e))
        return records

    async def remove(self, record: JobRecord, *, fence: JobFence | None = None) -> None:
        """Delete the record, its status, its index entries and its name claim (when it holds it),
        leaving a tombstone so that a late watch event does not bring the job back; with `fence`, only
        while that lock is still held (else `JobChanged`, nothing written)."""
        ident = record.identity

        def queue(pipe: Pipeline) -> None:
            pipe.delete(self._job(ident.cluster, ident.id), self._status(ident.cluster, ident.id))
            pipe.set(self._gone(ident.cluster, ident.id), "1", ex=TOMBSTONE_SECONDS)
            pipe.zrem(self._index(ident.cluster, ident.partition), ident.id)
            pipe.zrem(self._owner(ident.cluster, ident.partition, ident.owner), ident.id)

        await self._write(record, queue, fence=fence, what="remove")
        await self.release_name(ident.cluster, ident.partition, record.spec.name, ident.id)

    async def job_ids(self, cluster: str) -> set[str]:
        """Every job id with a record on `cluster` (scan; used by the sync to find records to drop)."""
        prefix = self._job(cluster, "")
        found: set[str] = set()
        async with self._guard("scan"):
            async for key in self.redis.scan_iter(match=prefix + "*", count=500):
                found.add(key[len(prefix):])
        return found

    # ----- status

    def _observed_json(self, status: JobStatus, observed_at: float | None) -> str:
        return json.dumps({"status": status_to_dict(status),
                           "observedAt": observed_at if observed_at is not None else self._clock()})

    async def set_status(self, cluster: str, job_id: str, status: JobStatus, *,
                         observed_at: float | None = None) -> None:
        """Store the last observed status of a job."""
        value = self._observed_json(status, observed_at)
        await self._call("set-status", lambda: self.redis.set(self._status(cluster, job_id), value))

    async def set_status_if_older(self, cluster: str, job_id: str, status: JobStatus, *, read_at: float) -> bool:
        """Store a status read from the cluster at `read_at`, unless a newer observation (the watch's) is
        already there: an API read must never put an older state over a newer one."""
        key = self._status(cluster, job_id)

        async def step(pipe: Pipeline) -> bool:
            text = await pipe.get(key)
            current = _decode_status(str(text)) if text is not None else None
            if current is not None and current.observed_at >= read_at:
                await pipe.unwatch()
                return False
            pipe.multi()
            pipe.set(key, self._observed_json(status, read_at))
            return True

        return await self._compare_and_set("set-status-if-older", (key,), step)

    async def get_status(self, cluster: str, job_id: str) -> ObservedStatus | None:
        """The last observed status, or None."""
        text = await self._call("get-status", lambda: self.redis.get(self._status(cluster, job_id)))
        return _decode_status(text)

    async def get_statuses(self, cluster: str, job_ids: builtins.list[str]) -> dict[str, ObservedStatus]:
        """Last observed statuses of many jobs (missing ones left out)."""
        if not job_ids:
            return {}
        texts = await self._call("get-statuses",
                                 lambda: self.redis.mget([self._status(cluster, i) for i in job_ids]))
        result = {}
        for job_id, text in zip(job_ids, texts, strict=True):
            observed = _decode_status(text)
            if observed is not None:
                result[job_id] = observed
        return result

    # ----- watch resume points

    async def get_resource_version(self, cluster: str, what: str) -> str | None:
        """Last resourceVersion the watch of `what` saw on `cluster`."""
        rv: str | None = await self._call("rv", lambda: self.redis.get(self._rv(cluster, what)))
        return rv

    async def set_resource_version(self, cluster: str, what: str, rv: str) -> None:
        """Remember where the watch of `what` got to."""
        await self._call("rv", lambda: self.redis.set(self._rv(cluster, what), rv))

    async def last_failures(self, cluster: str) -> dict[str, PodProblem]:
        """The last pod failure seen per job of `cluster` (unreadable entries are skipped)."""
        raw: dict[str, str] = await self._call("lastfail", lambda: self.redis.hgetall(self._last_failures(cluster)))
        decoded = {job_id: _decode_failure(text) for job_id, text in raw.items()}
        return {job_id: failure for job_id, failure in decoded.items() if failure is not None}

    async def last_failure(self, cluster: str, job_id: str) -> PodProblem | None:
        """The last pod failure the watch saw for one job, if any."""
        text = await self._call("lastfail", lambda: self.redis.hget(self._last_failures(cluster), job_id))
        return _decode_failure(text) if text is not None else None

    async def set_last_failure(self, cluster: str, job_id: str, failure: PodProblem) -> None:
        """Remember the last pod failure seen for a job."""
        text = json.dumps(asdict(failure), separators=(",", ":"))
        await self._call("lastfail", lambda: self.redis.hset(self._last_failures(cluster), job_id, text))

    async def forget_last_failures(self, cluster: str, job_ids: builtins.list[str]) -> None:
        """Drop the failures of jobs that are gone."""
        if job_ids:
            await self._call("lastfail", lambda: self.redis.hdel(self._last_failures(cluster), *job_ids))

    async def count_write(self, user: str) -> tuple[int, float]:
        """Count one write of `user` in the current minute: (writes so far this minute, seconds it has left)."""
        now = self._clock()
        minute = int(now // 60)
        key = f"{self.prefix}writes:{user}:{minute}"
        async with self._guard("count-write"), self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
        return int(count), (minute + 1) * 60 - now

    async def set_watch_heartbeat(self, cluster: str, at: float | None = None) -> None:
        """Record that the watch of `cluster` is healthy now (read by every replica)."""
        value = str(at if at is not None else self._clock())
        await self._call("watchbeat", lambda: self.redis.set(self._beat(cluster), value))

    async def watch_heartbeat(self, cluster: str) -> float | None:
        """When the watch of `cluster` was last known healthy (epoch seconds), or None."""
        value = await self._call("watchbeat", lambda: self.redis.get(self._beat(cluster)))
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    # ----- leases

    async def acquire_lease(self, name: str, holder: str, *, ttl_ms: int) -> bool:
        """Take the lease if free (or already ours, then extend it)."""
        key = self._lease(name)
        async with self._guard("lease"):
            if await self.redis.set(key, holder, nx=True, px=ttl_ms):
                return True
        return await self.renew_lease(name, holder, ttl_ms=ttl_ms)

    async def renew_lease(self, name: str, holder: str, *, ttl_ms: int) -> bool:
        """Extend the lease if `holder` still holds it; False when lost."""
        key = self._lease(name)

        async def step(pipe: Pipeline) -> bool:
            if await pipe.get(key) != holder:
                await pipe.unwatch()
                return False
            pipe.multi()
            pipe.pexpire(key, ttl_ms)
            return True

        return await self._compare_and_set("lease", (key,), step)

    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up so another replica takes over at once."""
        await self._compare_and_delete(self._lease(name), holder)

    # ----- one writer per job

    async def try_lock_job(self, cluster: str, job_id: str, *, ttl_ms: int) -> JobFence | None:
        """Take the job's lock for `ttl_ms` if nobody holds it; None when somebody does."""
        fence = JobFence(self._lock(cluster, job_id), uuid.uuid4().hex)
        async with self._guard("job-lock"):
            taken = await self.redis.set(fence.key, fence.token, nx=True, px=ttl_ms)
        return fence if taken else None

    async def renew_job_lock(self, fence: JobFence, *, ttl_ms: int) -> bool:
        """Extend the lock if it is still ours; False when it was lost."""
        async def step(pipe: Pipeline) -> bool:
            if await pipe.get(fence.key) != fence.token:
                await pipe.unwatch()
                return False
            pipe.multi()
            pipe.pexpire(fence.key, ttl_ms)
            return True

        return await self._compare_and_set("job-lock", (fence.key,), step)

    async def unlock_job(self, fence: JobFence) -> None:
        """Give the lock up (only if it is still ours)."""
        await self._compare_and_delete(fence.key, fence.token)

    @asynccontextmanager
    async def job_lock(self, cluster: str, job_id: str, *, wait_seconds: float,
                       ttl_seconds: float = JOB_LOCK_SECONDS) -> AsyncIterator[JobFence]:
        """Hold the job's lock for the block, renewed every third of `ttl_seconds`; waits up to
        `wait_seconds` for another holder to finish, then raises `JobBusy` (409). `wait_seconds=0`
        tries once."""
        ttl_ms = int(ttl_seconds * 1000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        pause = 0.01
        while (fence := await self.try_lock_job(cluster, job_id, ttl_ms=ttl_ms)) is None:
            if loop.time() + pause > deadline:
                raise JobBusy(f"another change to job {job_id} is in progress; retry in a moment",
                              details={"id": job_id}, headers={"Retry-After": "1"})
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)
        renewer = asyncio.create_task(self._keep_lock(fence, ttl_ms=ttl_ms), name=f"lock-{job_id}")
        try:
            yield fence
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            with contextlib.suppress(StoreUnavailable):
                await asyncio.shield(self.unlock_job(fence))

    async def _keep_lock(self, fence: JobFence, *, ttl_ms: int) -> None:
        # A lost lock is not reported here: the fenced write at the end of the change finds out.
        while True:
            await asyncio.sleep(ttl_ms / 3000)
            with contextlib.suppress(StoreUnavailable):
                if not await self.renew_job_lock(fence, ttl_ms=ttl_ms):
                    return

    # ----- outbox

    async def ensure_outbox(self) -> None:
        """Create the outbox stream and its consumer group if missing."""
        async with self._guard("outbox-init"):
            try:
                await self.redis.xgroup_create(self.outbox_key, OUTBOX_GROUP, id="0", mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    async def outbox_add(self, operation: dict[str, Any]) -> str:
        """Append an operation; returns its stream id."""
        payload = {"op": json.dumps(operation, separators=(",", ":"))}
        return str(await self._call("outbox-add", lambda: self.redis.xadd(self.outbox_key, payload)))  # type: ignore[arg-type]

    async def outbox_read(self, consumer: str, *, count: int = 16, block_ms: int | None = 1000,
                          pending: bool = False) -> builtins.list[tuple[str, dict[str, Any]]]:
        """New entries for `consumer`, waiting up to `block_ms` (None: do not wait); pending=True: the
        ones it read but did not acknowledge yet."""
        stream_id = "0" if pending else ">"
        answer: Any = await self._call("outbox-read", lambda: self.redis.xreadgroup(
            OUTBOX_GROUP, consumer, {self.outbox_key: stream_id}, count=count,
            block=None if pending else block_ms))
        return _decode_entries(answer[0][1] if answer else [])

    async def outbox_claim_stale(self, consumer: str, *, min_idle_ms: int,
                                 count: int = 16) -> builtins.list[tuple[str, dict[str, Any]]]:
        """Take over entries another consumer read but left unacknowledged for `min_idle_ms`."""
        answer: Any = await self._call("outbox-claim", lambda: self.redis.xautoclaim(
            self.outbox_key, OUTBOX_GROUP, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count))
        return _decode_entries(answer[1] if answer and len(answer) > 1 else [])

    async def outbox_ack(self, entry_id: str) -> None:
        """Mark an entry done and drop it from the stream."""
        async with self._guard("outbox-ack"), self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.outbox_key, OUTBOX_GROUP, entry_id)
            pipe.xdel(self.outbox_key, entry_id)
            await pipe.execute()

    async def outbox_depth(self) -> int:
        """Entries not yet acknowledged."""
        return int(await self._call("outbox-depth", lambda: self.redis.xlen(self.outbox_key)))


def _decode_failure(text: str) -> PodProblem | None:
    try:
        data = json.loads(text)
        return PodProblem(int(data["rank"]), str(data["reason"]), str(data["message"]))
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable last failure skipped")
        return None


def _decode_status(text: str | None) -> ObservedStatus | None:
    if text is None:
        return None
    try:
        data = json.loads(text)
        return ObservedStatus(status=status_from_dict(data["status"]), observed_at=float(data["observedAt"]))
    except (ValueError, KeyError, TypeError) as e:
        log.error("undecodable status ignored", error=str(e))
        return None


def _decode_entries(entries: Any) -> builtins.list[tuple[str, dict[str, Any]]]:
    result = []
    for entry_id, fields in entries or []:
        if not fields:
            continue  # deleted meanwhile
        try:
            result.append((entry_id, json.loads(fields["op"])))
        except (ValueError, KeyError, TypeError):
            log.error("undecodable outbox entry dropped", entry=entry_id)
            result.append((entry_id, {}))
    return result
