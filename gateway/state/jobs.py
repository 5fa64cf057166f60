"""Jobs in Redis: records and the read model, indexes, name claims, tombstones, one-writer locks.

Contract (keys in `gateway.state.keys`, hash fields in `gateway.state.views`):
- Reads cost one command and parse nothing: `read(cluster, partition, id)` is the job's answer bytes (and
  owner, pending operation, observation time); `list_ids` the index range, and `joined(...)` one script
  call per 500 jobs (pipelined) that returns their answers already joined.
- The record a write needs (`get`) is decoded from the same hash. `put` writes record + indexes + name
  claim (+ status) in one transaction; `put_if_absent` is the rebuild path (no record, no tombstone, no
  other holder of the name); `settle` clears a pending outbox operation; `remove` drops everything and
  leaves a tombstone so a late watch event does not bring the job back.
- Status writes (`publish`) are one script each, pipelined: written only while the record exists and
  has no pending operation, and, for reads straight from the cluster, only if no newer observation is
  stored. Answer per job: 1 written, 0 skipped, -1 no record (the sync then rebuilds it).
- One writer per job: `job_lock` holds the job's lock (renewed while held, bounded wait, else `JobBusy`
  409); `put`/`remove`/`settle` with `fence=` check in the same transaction that the lock still carries
  their token, else `JobChanged` (409, nothing written).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import orjson
import structlog
from redis.asyncio.client import Pipeline

from gateway.errors import Conflict, StoreUnavailable
from gateway.state.base import RedisPart, text
from gateway.state.views import (
    FIELDS,
    JobRecord,
    StoredJob,
    decode_record,
    decode_stored,
    record_fields,
    status_bytes,
    status_fields,
)
from translators.clever import status_from_view
from translators.errors import NotTranslatable
from translators.spec import JobStatus

log = structlog.get_logger(__name__)

TOMBSTONE_SECONDS = 600
# Long enough for the slowest change (a recreate waits up to 15 s for the old object to go); renewed while held.
JOB_LOCK_SECONDS = 30.0
# Jobs per script call of a LIST: bounds how long one call holds Redis (about 1.5 MB of answers).
JOIN_BATCH = 500

# KEYS[1] job hash; ARGV: status bytes, observed at, "1" = only if no newer observation is stored.
_PUBLISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local pending = redis.call('HGET', KEYS[1], 'p')
if pending and pending ~= '' then return 0 end
if ARGV[3] == '1' then
  local stored = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
  if stored and stored >= tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], 's', ARGV[1], 't', ARGV[2])
return 1
"""

# KEYS: job hashes. Returns {count, the answers joined with commas}; jobs gone meanwhile are left out.
_JOIN = """
local out = {}
for _, key in ipairs(KEYS) do
  local parts = redis.call('HMGET', key, 'v', 's')
  if parts[1] and parts[2] then
    out[#out + 1] = parts[1] .. ',"status":' .. parts[2] .. '}'
  end
end
return {#out, table.concat(out, ',')}
"""


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
class StatusUpdate:
    """One status to publish: where, what (rendered), observed when, and whether only over older ones."""

    cluster: str
    partition: str
    job_id: str
    status: JobStatus
    observed_at: float
    only_if_newer: bool = False


def creation_score(created: str) -> float:
    """Sort key of a job: its creation time in epoch milliseconds (0 when unparseable)."""
    try:
        return datetime.fromisoformat(created).timestamp() * 1000.0
    except ValueError:
        return 0.0


class JobStore(RedisPart):
    """Typed access to the jobs' keys (see module docstring)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._publish = self.redis.register_script(_PUBLISH)
        self._join = self.redis.register_script(_JOIN)

    # ----- reads (the hot path)

    async def read(self, cluster: str, partition: str, job_id: str) -> StoredJob | None:
        """The job's stored answer (None: no record): one command."""
        key = self.keys.job(cluster, partition, job_id)
        return decode_stored(await self._call("read", lambda: self.redis.hmget(key, "v", "s", "o", "p", "t")))

    async def list_ids(self, cluster: str, partition: str, *, owner: str | None) -> builtins.list[str]:
        """Ids of the partition's jobs (or one owner's there), oldest first: one command."""
        index = self.keys.index(cluster, partition) if owner is None else self.keys.owner(cluster, partition, owner)
        ids = await self._call("list", lambda: self.redis.zrange(index, 0, -1))
        return [i.decode() for i in ids]

    async def joined(self, cluster: str, partition: str, ids: builtins.list[str]) -> tuple[int, bytes]:
        """The answers of `ids` joined with commas (and how many: jobs gone meanwhile are left out)."""
        if not ids:
            return 0, b""
        keys = [self.keys.job(cluster, partition, i) for i in ids]
        batches = [keys[i:i + JOIN_BATCH] for i in range(0, len(keys), JOIN_BATCH)]
        async with self._guard("list"), self.redis.pipeline(transaction=False) as pipe:
            for batch in batches:
                await self._join(keys=batch, client=pipe)
            results = await pipe.execute()
        count = sum(int(r[0]) for r in results)
        return count, b",".join(bytes(r[1]) for r in results if int(r[0]))

    async def freshness(self, cluster: str, partition: str,
                        ids: builtins.list[str]) -> dict[str, tuple[float, str | None]]:
        """(observed at, pending) per job that has a record (used only when the watch is not live)."""
        async with self._guard("freshness"), self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self.keys.job(cluster, partition, job_id), "t", "p", "o")
            rows = await pipe.execute()
        return {job_id: (_float(t) or 0.0, text(p) or None)
                for job_id, (t, p, o) in zip(ids, rows, strict=True) if o is not None}

    async def last_status(self, cluster: str, partition: str, job_id: str) -> JobStatus | None:
        """The job's stored status, decoded (for answers that change it, such as a DELETE's)."""
        raw = await self._call("status", lambda: self.redis.hget(self.keys.job(cluster, partition, job_id), "s"))
        if raw is None:
            return None
        try:
            return status_from_view(orjson.loads(raw))
        except (orjson.JSONDecodeError, NotTranslatable):
            return None

    async def get(self, cluster: str, partition: str, job_id: str) -> JobRecord | None:
        """The record, or None (a record that cannot be decoded counts as absent, and is logged)."""
        fields = await self._call("get", lambda: self.redis.hmget(self.keys.job(cluster, partition, job_id),
                                                                   *FIELDS))
        if fields[0] is None:
            return None
        try:
            return decode_record(fields)
        except NotTranslatable as e:
            log.error("undecodable job record ignored", cluster=cluster, job=job_id, error=str(e))
            return None

    # ----- names

    async def claim_name(self, cluster: str, partition: str, name: str, job_id: str) -> None:
        """Claim `name` in (cluster, partition) for `job_id`; `Conflict` when another job holds it."""
        key = self.keys.names(cluster, partition)
        async with self._guard("claim"):
            if await self.redis.hsetnx(key, name, job_id):
                return
            holder = text(await self.redis.hget(key, name))
        if holder != job_id:
            raise Conflict(f"a job named {name!r} already exists in partition {partition!r}",
                           details={"name": name, "partition": partition})

    async def name_holder(self, cluster: str, partition: str, name: str) -> str | None:
        """The id holding a name, if any."""
        return text(await self._call("name", lambda: self.redis.hget(self.keys.names(cluster, partition), name)))

    async def release_name(self, cluster: str, partition: str, name: str, job_id: str) -> None:
        """Drop the claim if (and only if) `job_id` holds it."""
        key = self.keys.names(cluster, partition)

        async def step(pipe: Pipeline) -> bool:
            if text(await pipe.hget(key, name)) != job_id:
                await pipe.unwatch()
                return False
            pipe.multi()
            pipe.hdel(key, name)
            return True

        await self._compare_and_set("release-name", (key,), step)

    # ----- records

    def _queue_put(self, pipe: Pipeline, record: JobRecord, status: JobStatus | None, observed_at: float | None) -> None:
        ident = record.identity
        score = creation_score(ident.created)
        job_key = self.keys.job(ident.cluster, ident.partition, ident.id)
        fields = record_fields(record)
        if status is not None:
            fields |= status_fields(status, observed_at if observed_at is not None else self._clock())
        pipe.hset(job_key, mapping=fields)  # type: ignore[arg-type]
        pipe.zadd(self.keys.index(ident.cluster, ident.partition), {ident.id: score})
        pipe.zadd(self.keys.owner(ident.cluster, ident.partition, ident.owner), {ident.id: score})
        pipe.hset(self.keys.names(ident.cluster, ident.partition), record.spec.name, ident.id)

    async def put(self, record: JobRecord, *, status: JobStatus | None = None, observed_at: float | None = None,
                  fence: JobFence | None = None) -> None:
        """Write the record, its indexes and its name claim (and optionally its status) atomically;
        with `fence`, only while that lock is still held (else `JobChanged`, nothing written)."""
        await self._write(record, lambda pipe: self._queue_put(pipe, record, status, observed_at), fence=fence,
                          what="put")

    async def put_if_absent(self, record: JobRecord, *, status: JobStatus, observed_at: float) -> bool:
        """Rebuild path: write the record only when no record, no tombstone and no other holder of its name
        exist; True when written."""
        ident = record.identity
        job_key = self.keys.job(ident.cluster, ident.partition, ident.id)
        names_key = self.keys.names(ident.cluster, ident.partition)
        gone_key = self.keys.gone(ident.cluster, ident.partition, ident.id)

        async def step(pipe: Pipeline) -> bool:
            if await pipe.exists(job_key) or await pipe.exists(gone_key):
                await pipe.unwatch()
                return False
            holder = text(await pipe.hget(names_key, record.spec.name))
            if holder not in (None, ident.id):
                await pipe.unwatch()
                log.warning("rebuild skipped: name held by another job", cluster=ident.cluster, job=ident.id,
                            holder=holder)
                return False
            pipe.multi()
            self._queue_put(pipe, record, status, observed_at)
            return True

        return await self._compare_and_set("put-if-absent", (job_key, names_key, gone_key), step)

    async def settle(self, record: JobRecord, *, status: JobStatus, observed_at: float,
                     fence: JobFence | None = None) -> bool:
        """Clear the record's pending operation and store `status`, only if the pending operation is still
        the one `record` carries (and, with `fence`, the lock is still ours); False: nothing written."""
        ident = record.identity
        job_key = self.keys.job(ident.cluster, ident.partition, ident.id)
        keys = (job_key,) if fence is None else (job_key, fence.key)

        async def step(pipe: Pipeline) -> bool:
            pending = text(await pipe.hget(job_key, "p"))
            held = fence is None or text(await pipe.get(fence.key)) == fence.token
            if pending is None or (pending or None) != record.pending or not held:
                await pipe.unwatch()
                return False
            pipe.multi()
            fields: dict[str, bytes | str] = {"p": "", **status_fields(status, observed_at)}
            pipe.hset(job_key, mapping=fields)  # type: ignore[arg-type]
            return True

        return await self._compare_and_set("settle", keys, step)

    async def remove(self, record: JobRecord, *, fence: JobFence | None = None) -> None:
        """Delete the record and its index entries and name claim (when it holds it), leaving a tombstone;
        with `fence`, only while that lock is still held (else `JobChanged`, nothing written)."""
        ident = record.identity

        def queue(pipe: Pipeline) -> None:
            pipe.delete(self.keys.job(ident.cluster, ident.partition, ident.id))
            pipe.set(self.keys.gone(ident.cluster, ident.partition, ident.id), "1", ex=TOMBSTONE_SECONDS)
            pipe.zrem(self.keys.index(ident.cluster, ident.partition), ident.id)
            pipe.zrem(self.keys.owner(ident.cluster, ident.partition, ident.owner), ident.id)

        await self._write(record, queue, fence=fence, what="remove")
        await self.release_name(ident.cluster, ident.partition, record.spec.name, ident.id)

    async def _write(self, record: JobRecord, queue: Callable[[Pipeline], None], *, fence: JobFence | None,
                     what: str) -> None:
        """Run the writes `queue` adds as one transaction; with `fence`, only while the lock is ours."""
        if fence is None:
            async with self._guard(what), self.redis.pipeline(transaction=True) as pipe:
                queue(pipe)
                await pipe.execute()
            return

        async def step(pipe: Pipeline) -> bool:
            if text(await pipe.get(fence.key)) != fence.token:
                await pipe.unwatch()
                return False
            pipe.multi()
            queue(pipe)
            return True

        if not await self._compare_and_set(what, (fence.key,), step):
            raise JobChanged(f"job {record.identity.id} was changed by another request meanwhile; "
                             "nothing was stored: read it again and retry",
                             details={"id": record.identity.id})

    # ----- status

    async def publish(self, updates: Iterable[StatusUpdate]) -> builtins.list[int]:
        """Write statuses (see module docstring); per update 1 written, 0 skipped, -1 no record."""
        batch = list(updates)
        if not batch:
            return []
        async with self._guard("publish"), self.redis.pipeline(transaction=False) as pipe:
            for u in batch:
                await self._publish(keys=[self.keys.job(u.cluster, u.partition, u.job_id)],
                                    args=[status_bytes(u.status), repr(u.observed_at), "1" if u.only_if_newer else "0"],
                                    client=pipe)
            return [int(r) for r in await pipe.execute()]

    # ----- one writer per job

    async def try_lock_job(self, cluster: str, partition: str, job_id: str, *, ttl_ms: int) -> JobFence | None:
        """Take the job's lock for `ttl_ms` if nobody holds it; None when somebody does."""
        fence = JobFence(self.keys.lock(cluster, partition, job_id), uuid.uuid4().hex)
        async with self._guard("job-lock"):
            taken = await self.redis.set(fence.key, fence.token, nx=True, px=ttl_ms)
        return fence if taken else None

    async def renew_job_lock(self, fence: JobFence, *, ttl_ms: int) -> bool:
        """Extend the lock if it is still ours; False when it was lost."""
        async def step(pipe: Pipeline) -> bool:
            if text(await pipe.get(fence.key)) != fence.token:
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
    async def job_lock(self, cluster: str, partition: str, job_id: str, *, wait_seconds: float,
                       ttl_seconds: float = JOB_LOCK_SECONDS) -> AsyncIterator[JobFence]:
        """Hold the job's lock for the block, renewed every third of `ttl_seconds`; waits up to
        `wait_seconds` for another holder to finish, then raises `JobBusy` (409). `wait_seconds=0`
        tries once."""
        ttl_ms = int(ttl_seconds * 1000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        pause = 0.01
        while (fence := await self.try_lock_job(cluster, partition, job_id, ttl_ms=ttl_ms)) is None:
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


def _float(value: object) -> float | None:
    try:
        return float(value) if value is not None else None  # type: ignore[arg-type]
    except ValueError:
        return None
