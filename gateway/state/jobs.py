"""Jobs in Redis: records and the read model, indexes, name claims, tombstones, one-writer locks.

Contract (keys in `gateway.state.keys`, hash fields in `gateway.state.views`):
- Reads cost one command and parse nothing: `read(cluster, partition, id)` is the job's answer bytes (and
  owner, pending operation, observation time); `list_ids` the index range, and `joined(...)` one script
  call per 500 jobs (pipelined) that returns their stored parts, joined here.
- The record a write needs (`get`) is decoded from the same hash. `put` writes record + indexes + name
  claim (+ status) in one script; `put_if_absent` is the rebuild path (no record, no tombstone, no
  other holder of the name); `settle` clears a pending outbox operation; `remove` drops everything
  (the name claim too, if the job holds it) and leaves a tombstone so a late watch event does not
  bring the job back. `put`, `remove` and `settle` are durable (WAIT, `gateway.state.base`).
- List versions (`list_version`, for each replica's LIST cache, `gateway.state.listcache`): every script
  that changes a job's answer (its view or status, archived or not), a partition's indexes or its
  completeness marker also sets the partition's version key to a fresh `VersionTokens` token; a status
  written again unchanged does not.
- Every write is one Lua script on the keys of the job's partition, which share the hash tag
  `{<cluster>/<partition>}` (`gateway.state.keys`): one slot, so one node in a Redis Cluster.
- Completeness (no short answer after Redis lost data): `listing(...)` reads the partition's index and
  its completeness marker (`Keys.complete`) in one round trip, on one node. The marker is written
  (`certify`) once Redis is known to hold every job of the partition: by the watch after a complete
  relist, or by a LIST that just read the partition from the API server; a data loss (FLUSHALL, a
  restart without persistence, a failover to an empty replica, a cluster node that lost its slots)
  takes the marker with the data, so the next read notices. `certify` writes the marker only if the
  index still holds at least the jobs the writer just stored, so a second loss between storing and
  marking does not mark an empty partition complete. Whether a partition without a marker was lost
  or never used is the cluster's partition registry (`gateway.state.watch`).
- Status writes (`publish`) are one script each, pipelined: written only while the record exists and
  has no pending operation, and, for reads straight from the cluster, only if no newer observation is
  stored. Answer per job: 1 written, 0 skipped, -1 no record (the sync then rebuilds it).
- Phase changes: `publish`, `put` (with a status), `settle` and `rebuild` (a record that appears: from
  nothing, so after a Redis data loss rebuilt jobs are announced again, previousPhase null) compare the stored phase with the new one in
  their script; after `notify_phases` (webhooks configured) a change is appended to the phases stream by
  that script (in cluster mode returned and appended right after by the same writer): one entry per
  change, whichever replica wrote it (`gateway.state.phases`, `_HELPERS`).
- History: `archive` marks finished jobs whose cluster object is gone (`"archived":true` at the end of the
  stored view, the id in the partition's archived set; only with no pending operation and the job's lock
  free); `put` and `publish` undo it; `sweep_archived` removes those archived before a cutoff; `rows`
  gives a filtered LIST the stored parts of each job (with the completeness check of `joined`).
- One writer per job: `job_lock` holds the job's lock (renewed while held, bounded wait, else `JobBusy`
  409); `put`/`remove`/`settle` with `fence=` check in the same script that the lock still carries
  their token, else `JobChanged` (409, nothing written).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import structlog
from redis.asyncio.cluster import RedisCluster

from gateway.errors import Conflict, StoreUnavailable
from gateway.state.base import AnyPipeline, Lua, RedisPart, text
from gateway.state.views import (
    FIELDS,
    JobRecord,
    StoredJob,
    decode_record,
    decode_stored,
    join_views,
    record_fields,
    status_bytes,
    status_fields,
)
from translators.clever import status_from_view
from translators.errors import NotTranslatable
from translators.spec import JobStatus

log = structlog.get_logger(__name__)

TOMBSTONE_SECONDS = 600
ARCHIVED_SUFFIX = b',"archived":true'  # the end of an archived job's stored view (ARCHIVED in _HELPERS)
# Long enough for the slowest change (a recreate waits up to 15 s for the old object to go); renewed while held.
JOB_LOCK_SECONDS = 30.0
# The hash fields a read answers from (`gateway.state.views`).
_READ = ("v", "s", "o", "p", "t")
# Jobs per script call of a LIST: bounds how long one call holds Redis (about 1.5 MB of answers).
JOIN_BATCH = 500

# Lua helpers shared by the status writes (_PUBLISH, _PUT, _SETTLE) and the archive/sweep scripts.
# - stored_phase: the stored status's phase, read from its first field (`render_status` puts `phase`
#   first and orjson keeps the order), so the hot path decodes nothing.
# - phase_event: called after a status write with the phase stored before it; when the phase changed
#   and notifications are on it appends the change to the phases stream (mode '1': in this script, so the
#   change is appended exactly once, by the writer whose compare-and-set changed it) or returns it (mode
#   'r', cluster mode: the stream is in another slot, the caller appends it right after). The event block
#   in ARGV (9 values from index e): mode ('' off), stream MAXLEN, phase, reason, message, observed at,
#   cluster, partition, id. The name is read from the stored view (`"name":"…"` first appears in its
#   metadata: inside a JSON string every quote is escaped, so no value can fake it).
# - unarchive / ARCHIVED: an archived job's view carries `,"archived":true` at its end (so a GET or LIST
#   serves it with no extra work) and its hash a field `a` (when it was archived); a job whose object is
#   back (a status is written again) or that is written anew loses both.
_HELPERS = """
local ARCHIVED = ',"archived":true'
local function stored_phase(job)
  local s = redis.call('HGET', job, 's')
  if not s then return '' end
  return string.match(s, '^{"phase":"([^"]*)"') or ''
end
local function phase_event(job, stream, e, prev)
  local mode = ARGV[e]
  if mode == '' or ARGV[e + 2] == prev then return nil end
  local v = redis.call('HGET', job, 'v') or ''
  local fields = {'id', ARGV[e + 8], 'cluster', ARGV[e + 6], 'partition', ARGV[e + 7],
                  'owner', redis.call('HGET', job, 'o') or '', 'name', string.match(v, '"name":"([^"]*)"') or '',
                  'phase', ARGV[e + 2], 'previousPhase', prev, 'reason', ARGV[e + 3], 'message', ARGV[e + 4],
                  'at', ARGV[e + 5]}
  if mode == '1' then
    redis.call('XADD', stream, 'MAXLEN', '~', ARGV[e + 1], '*', unpack(fields))
    return nil
  end
  return fields
end
local function unarchive(job, archived, id)
  if redis.call('HEXISTS', job, 'a') == 0 then return false end
  local v = redis.call('HGET', job, 'v')
  if v and string.sub(v, -string.len(ARCHIVED)) == ARCHIVED then
    redis.call('HSET', job, 'v', string.sub(v, 1, string.len(v) - string.len(ARCHIVED)))
  end
  redis.call('HDEL', job, 'a')
  redis.call('ZREM', archived, id)
  return true
end
"""

# KEYS: job hash, archived set, list version, [phases stream: event mode '1']; ARGV: status bytes, observed
# at, "1" = only if no newer observation is stored, then the event block (4..12, see _HELPERS), version
# token. The version changes only when the answer does (a status seen again only moves the observation
# time). -1 no record; 0 skipped; 1 written; a table: written, and the phase change for the caller to append.
_PUBLISH = Lua(_HELPERS + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local pending = redis.call('HGET', KEYS[1], 'p')
if pending and pending ~= '' then return 0 end
if ARGV[3] == '1' then
  local stored = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
  if stored and stored >= tonumber(ARGV[2]) then return 0 end
end
local before = redis.call('HGET', KEYS[1], 's')
local prev = stored_phase(KEYS[1])
redis.call('HSET', KEYS[1], 's', ARGV[1], 't', ARGV[2])
if unarchive(KEYS[1], KEYS[2], ARGV[12]) or before ~= ARGV[1] then redis.call('SET', KEYS[3], ARGV[13]) end
return phase_event(KEYS[1], KEYS[4], 4, prev) or 1
""")

# The writes of a record, shared by _PUT and _PUT_IF_ABSENT: KEYS[1..5] job hash, partition index, owner
# index, name claims, list version; ARGV[a] score, ARGV[a+1] id, ARGV[a+2] name, ARGV[a+3..] hash
# field/value pairs; `token` the new list version.
_WRITE_RECORD = """
local function write_record(a, token)
  redis.call('HSET', KEYS[1], unpack(ARGV, a + 3))
  redis.call('ZADD', KEYS[2], ARGV[a], ARGV[a + 1])
  redis.call('ZADD', KEYS[3], ARGV[a], ARGV[a + 1])
  redis.call('HSET', KEYS[4], ARGV[a + 2], ARGV[a + 1])
  redis.call('SET', KEYS[5], token)
end
"""

# KEYS: job, index, owner index, names, list version, lock, archived set, [phases stream]; ARGV: fence token
# ("" = none), version token, the event block (3..11; mode '' when no status is written), score, id, name,
# fields... 1 written (a table: written, and the phase change for the caller to append); 0 the fence no
# longer holds.
_PUT = Lua(_WRITE_RECORD + _HELPERS + """
if ARGV[1] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[1] then return 0 end
local prev = stored_phase(KEYS[1])
write_record(12, ARGV[2])
redis.call('HDEL', KEYS[1], 'a')
redis.call('ZREM', KEYS[7], ARGV[13])
return phase_event(KEYS[1], KEYS[8], 3, prev) or 1
""")

# KEYS: job, index, owner index, names, list version, tombstone, [phases stream]; ARGV: version token, the
# event block (2..10), score, id, name, fields... 1 written (a table: written, and its first phase for the caller to append: a record that
# appears is a change from nothing, also when the watch rebuilds it before its create stored it); 0 a record
# exists; 2 a tombstone exists (deleted through the API); -1 another job holds the name.
_PUT_IF_ABSENT = Lua(_WRITE_RECORD + _HELPERS + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[6]) == 1 then return 2 end
local holder = redis.call('HGET', KEYS[4], ARGV[13])
if holder and holder ~= ARGV[12] then return -1 end
write_record(11, ARGV[1])
return phase_event(KEYS[1], KEYS[7], 2, '') or 1
""")

# KEYS: job, lock, list version, [phases stream]; ARGV: the pending operation expected ("" = none), fence
# token ("" = none), version token, the event block (4..12), fields... (A job with a pending operation is
# never archived.)
# 1 written (a table: written, and the phase change for the caller to append); 0 the record is gone,
# carries another pending operation, or the fence no longer holds.
_SETTLE = Lua(_HELPERS + """
local pending = redis.call('HGET', KEYS[1], 'p')
if not pending or pending ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
local prev = stored_phase(KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 13))
redis.call('SET', KEYS[3], ARGV[3])
return phase_event(KEYS[1], KEYS[4], 4, prev) or 1
""")

# KEYS: job, index, owner index, names, list version, lock, tombstone, archived set; ARGV: fence token ("" =
# none), id, name, tombstone seconds, version token. 1 removed (the name claim too, if the job holds it); 0
# the fence no longer holds.
_REMOVE = Lua("""
if ARGV[1] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[7], '1', 'EX', ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[8], ARGV[2])
if redis.call('HGET', KEYS[4], ARGV[3]) == ARGV[2] then redis.call('HDEL', KEYS[4], ARGV[3]) end
redis.call('SET', KEYS[5], ARGV[5])
return 1
""")

# KEYS: completeness marker, index, list version; ARGV: generation, the jobs the index must hold at least,
# version token. 1 marked; 0 the index holds fewer (Redis lost data again meanwhile: not marked).
_CERTIFY = Lua("""
if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[3], ARGV[3])
return 1
""")

# KEYS: job, archived set, lock, list version; ARGV: id, now (epoch s), version token. Archive a finished job whose cluster object is
# gone: only a succeeded/failed job with no pending operation, not archived yet, and not being changed
# (its lock free: a recreate deletes the object before it makes the new one). 1 archived; 0 not.
_ARCHIVE = Lua(_HELPERS + """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'a') == 1 then return 0 end
local pending = redis.call('HGET', KEYS[1], 'p')
if pending and pending ~= '' then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local phase = stored_phase(KEYS[1])
if phase ~= 'succeeded' and phase ~= 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'v', redis.call('HGET', KEYS[1], 'v') .. ARCHIVED, 'a', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SET', KEYS[4], ARGV[3])
return 1
""")

# KEYS: job, index, owner index, names, archived set, lock, list version; ARGV: id, cutoff (epoch s), owner,
# name, version token.
# Remove an archived job archived at or before the cutoff (and not being changed); a stale entry of the
# archived set (its job gone or no longer archived) is dropped. 1 removed; 0 not.
_SWEEP = Lua("""
local at = tonumber(redis.call('HGET', KEYS[1], 'a') or '')
if not at then
  redis.call('ZREM', KEYS[5], ARGV[1])
  return 0
end
if at > tonumber(ARGV[2]) or redis.call('EXISTS', KEYS[6]) == 1 then return 0 end
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
if redis.call('HGET', KEYS[4], ARGV[4]) == ARGV[1] then redis.call('HDEL', KEYS[4], ARGV[4]) end
redis.call('SET', KEYS[7], ARGV[5])
return 1
""")

# Every LIST's read of its jobs. KEYS: the partition's completeness marker, then job hashes; ARGV: "1" = only
# while the marker is there. {-1} when the marker is required and gone; else {1, v1, s1, v2, s2, …} ('' for
# a job gone meanwhile): the stored parts, which the replica joins (or judges, for filters), so that Redis,
# which every replica shares, does the least.
_ROWS = Lua("""
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local out = {1}
for i = 2, #KEYS do
  local parts = redis.call('HMGET', KEYS[i], 'v', 's')
  out[#out + 1] = parts[1] or ''
  out[#out + 1] = parts[2] or ''
end
return out
""")

REBUILT = {1: "written", 0: "exists", 2: "deleted", -1: "name-taken"}

# KEYS: names; ARGV: name, id. Drops the claim only if that id holds it.
_RELEASE_NAME = Lua("""
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
""")


@dataclass(frozen=True, slots=True)
class JobFence:
    """Proof of holding a job's lock: its key and the token this holder wrote there."""

    key: str
    token: str


class JobChanged(Conflict):
    """A fenced write found the job's lock gone or taken by another holder: nothing was written."""


class PartitionLost(Exception):
    """Redis lost a partition's data in the middle of a read (internal: the reader falls back)."""


class JobBusy(Conflict):
    """Another request (or the outbox) is changing the job and did not finish in time."""


@dataclass(frozen=True, slots=True)
class Listing:
    """A LIST's read of Redis: the partition's list version (None: not marked complete), the ids (and their
    scores, if read)."""

    version: bytes | None
    ids: list[str]
    scores: list[float]

    @property
    def complete(self) -> bool:
        """Whether the partition is marked complete (Redis holds all its jobs)."""
        return self.version is not None


@dataclass(frozen=True, slots=True)
class Rebuild:
    """A record to restore from the cluster (if Redis has none), with the status read with it."""

    record: JobRecord
    status: JobStatus
    observed_at: float


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


class VersionTokens:
    """List-version tokens that no writer used before: a random prefix per process and a counter. (An INCR
    would repeat values after Redis lost the key, or after a failover to a replica that was behind, and a
    replica's LIST cache would then take new answers for old ones.)"""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:16]
        self._count = itertools.count()

    def next(self) -> str:
        """A new token."""
        return f"{self._prefix}.{next(self._count)}"


class JobStore(RedisPart):
    """Typed access to the jobs' keys (see module docstring)."""

    _versions = VersionTokens()

    # Phase changes into the phases stream: "" off (no webhooks), "1" appended by the writing script,
    # "r" returned by it and appended right after (cluster mode: the stream is in another slot).
    _event_mode = ""
    _event_max_length = 0

    def notify_phases(self, *, max_length: int) -> None:
        """From now on, append every phase change a write makes to the phases stream (bounded, MAXLEN ~)."""
        self._event_mode = "r" if isinstance(self.redis, RedisCluster) else "1"
        self._event_max_length = max_length

    def _event(self, cluster: str, partition: str, job_id: str, status: JobStatus | None,
               observed_at: float) -> list[Any]:
        """The event block of a status-writing script (see _HELPERS)."""
        if status is None or not self._event_mode:
            return ["", 0, "", "", "", "", cluster, partition, job_id]
        return [self._event_mode, self._event_max_length, status.phase, status.reason or "", status.message or "",
                repr(observed_at), cluster, partition, job_id]

    def _with_stream(self, keys: builtins.list[str]) -> builtins.list[str]:
        return [*keys, self.keys.phases] if self._event_mode == "1" else keys

    async def _settled(self, results: builtins.list[Any]) -> builtins.list[int]:
        """Status scripts' answers as numbers; the phase changes they returned (cluster mode) are appended
        now, by this writer only: its script's compare-and-set is what saw the change."""
        events = [r for r in results if isinstance(r, list)]
        if events:
            def build(pipe: AnyPipeline) -> None:
                for fields in events:
                    pipe.xadd(self.keys.phases, dict(zip(fields[0::2], fields[1::2], strict=True)),
                              maxlen=self._event_max_length, approximate=True)

            await self._pipelined("phases-add", build)
        return [1 if isinstance(r, list) else int(r) for r in results]

    # ----- reads (the hot path)

    async def read(self, cluster: str, partition: str, job_id: str) -> StoredJob | None:
        """The job's stored answer (None: no record): one command."""
        key = self.keys.job(cluster, partition, job_id)
        # execute_command: redis-py's hmget only rebuilds the same argument list on the hot path.
        return decode_stored(await self._call("read", lambda: self.redis.execute_command("HMGET", key, *_READ)))

    async def list_ids(self, cluster: str, partition: str, *, owner: str | None) -> builtins.list[str]:
        """Ids of the partition's jobs (or one owner's there), oldest first: one command."""
        index = self.keys.index(cluster, partition) if owner is None else self.keys.owner(cluster, partition, owner)
        ids = await self._call("list", lambda: self.redis.zrange(index, 0, -1))
        return [i.decode() for i in ids]

    async def listing(self, cluster: str, partition: str, *, owner: str | None, scores: bool = False) -> Listing:
        """The partition's list version (`list_version`, read first) and the ids (oldest first) of its jobs
        or of one owner's there (with their sort scores if asked): one round trip to one node (the same
        hash tag)."""
        index = self.keys.index(cluster, partition) if owner is None else self.keys.owner(cluster, partition, owner)

        def build(pipe: AnyPipeline) -> None:
            # Two GETs, not an MGET: redis-py refuses multi-key commands in a cluster pipeline.
            pipe.get(self.keys.complete(cluster, partition))
            pipe.get(self.keys.version(cluster, partition))
            pipe.zrange(index, 0, -1, withscores=scores)

        marker, version, rows = await self._pipelined("list", build)
        stamp = _version_of(marker, version)
        if not scores:
            return Listing(version=stamp, ids=[row.decode() for row in rows], scores=[])
        return Listing(version=stamp, ids=[str(text(i)) for i, _ in rows], scores=[float(s) for _, s in rows])

    async def certify(self, cluster: str, partitions: dict[str, int], *, generation: str) -> set[str]:
        """Mark partitions complete, each only if its index holds at least the given number of jobs; the
        partitions marked."""
        names = sorted(partitions)

        def build(pipe: AnyPipeline) -> None:
            for partition in names:
                _CERTIFY.queue(pipe, [self.keys.complete(cluster, partition), self.keys.index(cluster, partition),
                                      self.keys.version(cluster, partition)],
                               [generation, partitions[partition], self._versions.next()])

        results = await self._pipelined("certify", build, scripts=(_CERTIFY,))
        return {partition for partition, marked in zip(names, results, strict=True) if int(marked)}

    async def uncertified(self, cluster: str, partitions: Iterable[str]) -> set[str]:
        """Which of `partitions` have no completeness marker (lost since they were marked)."""
        names = sorted(partitions)

        def build(pipe: AnyPipeline) -> None:
            for partition in names:
                pipe.exists(self.keys.complete(cluster, partition))

        results = await self._pipelined("certified", build) if names else []
        return {partition for partition, marked in zip(names, results, strict=True) if not int(marked)}

    async def list_version(self, cluster: str, partition: str) -> bytes | None:
        """What identifies the partition's current list answers (`ListVersions`): None while the partition is
        not marked complete (nothing read now may be reused), else the same bytes until one of its jobs'
        answers, its index or its marker changes. One command."""
        marker, version = await self._call("list", lambda: self.redis.mget(
            self.keys.complete(cluster, partition), self.keys.version(cluster, partition)))
        return _version_of(marker, version)

    async def joined(self, cluster: str, partition: str, ids: builtins.list[str], *,
                     complete: bool = False) -> tuple[int, bytes]:
        """The answers of `ids` joined with commas (and how many: jobs gone meanwhile are left out). With
        `complete`, each batch is read only while the partition's completeness marker is there, else
        `PartitionLost` (the data went between reading the ids and reading the jobs)."""
        found = await self.rows(cluster, partition, ids, complete=complete)
        return len(found), join_views((view, status) for _, view, status in found)

    async def freshness(self, cluster: str, partition: str,
                        ids: builtins.list[str]) -> dict[str, tuple[float, str | None]]:
        """(observed at, pending) per job that has a record (used only when the watch is not live)."""
        def build(pipe: AnyPipeline) -> None:
            for job_id in ids:
                pipe.hmget(self.keys.job(cluster, partition, job_id), "t", "p", "o")

        rows = await self._pipelined("freshness", build)
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
        await self._script("release-name", _RELEASE_NAME, [self.keys.names(cluster, partition)], [name, job_id])

    # ----- records

    def _record_keys(self, record: JobRecord) -> list[str]:
        """job, index, owner index, names, list version: the keys every record write touches (one hash tag)."""
        ident = record.identity
        return [self.keys.job(ident.cluster, ident.partition, ident.id), self.keys.index(ident.cluster, ident.partition),
                self.keys.owner(ident.cluster, ident.partition, ident.owner),
                self.keys.names(ident.cluster, ident.partition), self.keys.version(ident.cluster, ident.partition)]

    def _record_args(self, record: JobRecord, status: JobStatus | None, observed_at: float | None) -> list[Any]:
        """score, id, name, then the hash's field/value pairs."""
        fields = record_fields(record)
        if status is not None:
            fields |= status_fields(status, observed_at if observed_at is not None else self._clock())
        flat: list[Any] = [repr(creation_score(record.identity.created)), record.identity.id, record.spec.name]
        for name, value in fields.items():
            flat += [name, value]
        return flat

    async def put(self, record: JobRecord, *, status: JobStatus | None = None, observed_at: float | None = None,
                  fence: JobFence | None = None) -> None:
        """Write the record, its indexes and its name claim (and optionally its status) atomically;
        with `fence`, only while that lock is still held (else `JobChanged`, nothing written)."""
        ident = record.identity
        observed = observed_at if observed_at is not None else self._clock()
        keys = self._with_stream([*self._record_keys(record), self.keys.lock(ident.cluster, ident.partition, ident.id),
                                  self.keys.archived(ident.cluster, ident.partition)])
        args = [fence.token if fence is not None else "", self._versions.next(),
                *self._event(ident.cluster, ident.partition, ident.id, status, observed),
                *self._record_args(record, status, observed)]
        if not (await self._settled([await self._script("put", _PUT, keys, args, durable=True)]))[0]:
            raise self._changed(record)

    async def put_if_absent(self, record: JobRecord, *, status: JobStatus, observed_at: float) -> bool:
        """Rebuild path: write the record only when no record, no tombstone and no other holder of its name
        exist; True when written."""
        return (await self.rebuild([Rebuild(record, status, observed_at)])) == ["written"]

    async def rebuild(self, entries: Iterable[Rebuild]) -> builtins.list[str]:
        """`put_if_absent` for many records in one round trip; per entry "written", "exists" (a record
        is there), "deleted" (a tombstone: deleted through the API) or "name-taken" (logged)."""
        batch = list(entries)
        if not batch:
            return []

        def build(pipe: AnyPipeline) -> None:
            for entry in batch:
                ident = entry.record.identity
                keys = self._with_stream([*self._record_keys(entry.record),
                                          self.keys.gone(ident.cluster, ident.partition, ident.id)])
                _PUT_IF_ABSENT.queue(pipe, keys, [
                    self._versions.next(),
                    *self._event(ident.cluster, ident.partition, ident.id, entry.status, entry.observed_at),
                    *self._record_args(entry.record, entry.status, entry.observed_at)])

        outcomes = [REBUILT[r] for r in await self._settled(
            await self._pipelined("rebuild", build, scripts=(_PUT_IF_ABSENT,)))]
        for entry, outcome in zip(batch, outcomes, strict=True):
            if outcome == "name-taken":
                ident = entry.record.identity
                log.warning("rebuild skipped: name held by another job", cluster=ident.cluster, job=ident.id,
                            holder=await self.name_holder(ident.cluster, ident.partition, entry.record.spec.name))
        return outcomes

    async def settle(self, record: JobRecord, *, status: JobStatus, observed_at: float,
                     fence: JobFence | None = None) -> bool:
        """Clear the record's pending operation and store `status`, only if the pending operation is still
        the one `record` carries (and, with `fence`, the lock is still ours); False: nothing written."""
        ident = record.identity
        keys = self._with_stream([self.keys.job(ident.cluster, ident.partition, ident.id),
                                  fence.key if fence is not None else self.keys.lock(ident.cluster, ident.partition,
                                                                                     ident.id),
                                  self.keys.version(ident.cluster, ident.partition)])
        args: list[Any] = [record.pending or "", fence.token if fence is not None else "", self._versions.next(),
                           *self._event(ident.cluster, ident.partition, ident.id, status, observed_at), "p", ""]
        for name, value in status_fields(status, observed_at).items():
            args += [name, value]
        return bool((await self._settled([await self._script("settle", _SETTLE, keys, args, durable=True)]))[0])

    async def remove(self, record: JobRecord, *, fence: JobFence | None = None) -> None:
        """Delete the record, its index entries and its name claim (when it holds it), leaving a tombstone;
        with `fence`, only while that lock is still held (else `JobChanged`, nothing written)."""
        ident = record.identity
        keys = [*self._record_keys(record), self.keys.lock(ident.cluster, ident.partition, ident.id),
                self.keys.gone(ident.cluster, ident.partition, ident.id),
                self.keys.archived(ident.cluster, ident.partition)]
        args = [fence.token if fence is not None else "", ident.id, record.spec.name, TOMBSTONE_SECONDS,
                self._versions.next()]
        if not await self._script("remove", _REMOVE, keys, args, durable=True):
            raise self._changed(record)

    @staticmethod
    def _changed(record: JobRecord) -> JobChanged:
        return JobChanged(f"job {record.identity.id} was changed by another request meanwhile; "
                          "nothing was stored: read it again and retry", details={"id": record.identity.id})

    # ----- status

    async def publish(self, updates: Iterable[StatusUpdate]) -> builtins.list[int]:
        """Write statuses (see module docstring); per update 1 written, 0 skipped, -1 no record."""
        batch = list(updates)
        if not batch:
            return []
        def build(pipe: AnyPipeline) -> None:
            for u in batch:
                _PUBLISH.queue(pipe, self._with_stream([self.keys.job(u.cluster, u.partition, u.job_id),
                                                        self.keys.archived(u.cluster, u.partition),
                                                        self.keys.version(u.cluster, u.partition)]),
                               [status_bytes(u.status), repr(u.observed_at), "1" if u.only_if_newer else "0",
                                *self._event(u.cluster, u.partition, u.job_id, u.status, u.observed_at),
                                self._versions.next()])

        return await self._settled(await self._pipelined("publish", build, scripts=(_PUBLISH,)))

    # ----- history: finished jobs whose cluster object is gone

    async def archive(self, jobs: Iterable[tuple[str, str, str]]) -> int:
        """Archive each (cluster, partition, id) that is a finished job with no pending operation and no
        change in progress (see _ARCHIVE); how many were archived now."""
        batch = list(jobs)
        if not batch:
            return 0
        now = self._clock()

        def build(pipe: AnyPipeline) -> None:
            for cluster, partition, job_id in batch:
                _ARCHIVE.queue(pipe, [self.keys.job(cluster, partition, job_id), self.keys.archived(cluster, partition),
                                      self.keys.lock(cluster, partition, job_id), self.keys.version(cluster, partition)],
                               [job_id, repr(now), self._versions.next()])

        return sum(int(r) for r in await self._pipelined("archive", build, scripts=(_ARCHIVE,)))

    async def sweep_archived(self, cluster: str, partition: str, *, cutoff: float, batch: int = 500) -> int:
        """Remove the partition's jobs archived at or before `cutoff` (epoch s); how many were removed."""
        archived = self.keys.archived(cluster, partition)
        removed = 0
        while True:
            ids = [str(text(i)) for i in await self._call("sweep", lambda: self.redis.zrangebyscore(
                archived, "-inf", repr(cutoff), start=0, num=batch))]
            if not ids:
                return removed
            outcomes = await self._sweep_batch(cluster, partition, ids, cutoff)
            removed += sum(outcomes)
            if len(ids) < batch or not any(outcomes):
                return removed  # the rest is being changed right now: the next sweep gets it

    async def _sweep_batch(self, cluster: str, partition: str, ids: builtins.list[str],
                           cutoff: float) -> builtins.list[int]:
        """_SWEEP for each of `ids` (its owner and name read first: they name the keys it touches)."""
        def read(pipe: AnyPipeline) -> None:
            for job_id in ids:
                pipe.hmget(self.keys.job(cluster, partition, job_id), "o", "v")

        rows = await self._pipelined("sweep", read)
        archived = self.keys.archived(cluster, partition)

        def build(pipe: AnyPipeline) -> None:
            for job_id, (owner, view) in zip(ids, rows, strict=True):
                owner_text = text(owner) or ""
                _SWEEP.queue(pipe, [self.keys.job(cluster, partition, job_id), self.keys.index(cluster, partition),
                                    self.keys.owner(cluster, partition, owner_text),
                                    self.keys.names(cluster, partition), archived,
                                    self.keys.lock(cluster, partition, job_id), self.keys.version(cluster, partition)],
                             [job_id, repr(cutoff), owner_text, _name_of(view), self._versions.next()])

        return [int(r) for r in await self._pipelined("sweep", build, scripts=(_SWEEP,))]

    async def rows(self, cluster: str, partition: str, ids: builtins.list[str], *,
                   complete: bool = False) -> builtins.list[tuple[str, bytes, bytes]]:
        """(id, view, status) of the jobs among `ids` that have a record, in order (one script call per
        `JOIN_BATCH` jobs, pipelined). With `complete`, each batch is read only while the partition's
        completeness marker is there, else `PartitionLost`."""
        if not ids:
            return []
        marker = self.keys.complete(cluster, partition)
        batches = [ids[i:i + JOIN_BATCH] for i in range(0, len(ids), JOIN_BATCH)]

        def build(pipe: AnyPipeline) -> None:
            for part in batches:
                _ROWS.queue(pipe, [marker, *(self.keys.job(cluster, partition, i) for i in part)],
                            ["1" if complete else "0"])

        results = await self._pipelined("list", build, scripts=(_ROWS,))
        if any(int(r[0]) < 0 for r in results):
            raise PartitionLost(f"partition {partition} of cluster {cluster} was lost while it was read")
        return [(job_id, view, status) for part, result in zip(batches, results, strict=True)
                for job_id, view, status in zip(part, result[1::2], result[2::2], strict=True) if view and status]

    # ----- one writer per job

    async def try_lock_job(self, cluster: str, partition: str, job_id: str, *, ttl_ms: int) -> JobFence | None:
        """Take the job's lock for `ttl_ms` if nobody holds it; None when somebody does."""
        fence = JobFence(self.keys.lock(cluster, partition, job_id), uuid.uuid4().hex)
        async with self._guard("job-lock"):
            taken = await self.redis.set(fence.key, fence.token, nx=True, px=ttl_ms)
        return fence if taken else None

    async def renew_job_lock(self, fence: JobFence, *, ttl_ms: int) -> bool:
        """Extend the lock if it is still ours; False when it was lost."""
        return await self._compare_and_expire(fence.key, fence.token, ttl_ms, what="job-lock")

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


def _name_of(view: Any) -> str:
    """The job name in a stored view (archived or not); "" when unreadable."""
    if view is None:
        return ""
    try:
        prefix = bytes(view).removesuffix(ARCHIVED_SUFFIX)
        return str(orjson.loads(prefix + b"}")["metadata"]["name"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ""


def _version_of(marker: bytes | None, version: bytes | None) -> bytes | None:
    """A partition's list version from its completeness marker and version key (None: not marked)."""
    return None if marker is None else bytes(marker) + b"|" + bytes(version or b"")


def _float(value: object) -> float | None:
    try:
        return float(value) if value is not None else None  # type: ignore[arg-type]
    except ValueError:
        return None
