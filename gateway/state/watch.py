"""What each cluster's watch keeps in Redis: its heartbeat, resume points, the jobs' last pod failures,
and the cluster's completeness bookkeeping.

Contract: the watching replica writes them (`gateway.workers.sync`); every replica reads the heartbeat
(reads fall back to the API server when it is stale, `/api/ping` reports its age). `last_failures`
survive a leader change, so a verdict that comes after the failed pods are gone still says which pod
failed. Completeness: `generation` is the cluster's marker, written by the watch after a complete
relist; `register_partitions` records every partition before it is first marked complete
(`JobStore.certify`). `partition_is_new` tells a partition that has no completeness marker because it
was never used (the registry is intact and does not name it: nothing can be missing) from one whose
data was lost (it is registered, or the registry itself is gone with the generation).
"""

from __future__ import annotations

import builtins
from dataclasses import asdict

import orjson
import structlog

from gateway.state.base import AnyPipeline, RedisPart, text
from translators.status import PodProblem

log = structlog.get_logger(__name__)


class WatchState(RedisPart):
    """Heartbeat, resume points and last failures of each cluster's watch."""

    async def set_heartbeat(self, cluster: str, at: float | None = None) -> None:
        """Record that Redis holds everything the watch of `cluster` received up to `at` (default now)."""
        value = repr(at if at is not None else self._clock())
        await self._call("watchbeat", lambda: self.redis.set(self.keys.heartbeat(cluster), value))

    async def heartbeat(self, cluster: str) -> float | None:
        """When the watch of `cluster` was last known current (epoch seconds), or None."""
        value = await self._call("watchbeat", lambda: self.redis.get(self.keys.heartbeat(cluster)))
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    async def resource_version(self, cluster: str, what: str) -> str | None:
        """Last resourceVersion the watch of `what` saw on `cluster`."""
        return text(await self._call("rv", lambda: self.redis.get(self.keys.resource_version(cluster, what))))

    async def set_resource_version(self, cluster: str, what: str, rv: str) -> None:
        """Remember where the watch of `what` got to."""
        await self._call("rv", lambda: self.redis.set(self.keys.resource_version(cluster, what), rv))

    async def generation(self, cluster: str) -> str | None:
        """The cluster's marker (the watch's last complete relist), or None (never written, or lost)."""
        return text(await self._call("generation", lambda: self.redis.get(self.keys.generation(cluster))))

    async def set_generation(self, cluster: str, generation: str) -> None:
        """Write the cluster's marker after a complete relist."""
        await self._call("generation", lambda: self.redis.set(self.keys.generation(cluster), generation))

    async def register_partitions(self, cluster: str, partitions: builtins.list[str]) -> None:
        """Record partitions as used (before they are first marked complete)."""
        if partitions:
            await self._call("partitions", lambda: self.redis.sadd(self.keys.marked_partitions(cluster), *partitions))

    async def partition_is_new(self, cluster: str, partition: str) -> bool:
        """True when the cluster's marker is there and the partition was never registered (never used);
        False when it was (its marker is gone: lost) or the marker is gone too (cannot tell: lost)."""
        def build(pipe: AnyPipeline) -> None:
            pipe.exists(self.keys.generation(cluster))
            pipe.sismember(self.keys.marked_partitions(cluster), partition)

        marked, registered = await self._pipelined("partitions", build)
        return bool(marked) and not bool(registered)

    async def last_failures(self, cluster: str) -> dict[str, PodProblem]:
        """The last pod failure seen per job of `cluster` (unreadable entries are skipped)."""
        raw = await self._call("lastfail", lambda: self.redis.hgetall(self.keys.last_failures(cluster)))
        decoded = {str(text(job_id)): _decode_failure(value) for job_id, value in raw.items()}
        return {job_id: failure for job_id, failure in decoded.items() if failure is not None}

    async def last_failure(self, cluster: str, job_id: str) -> PodProblem | None:
        """The last pod failure the watch saw for one job, if any."""
        value = await self._call("lastfail", lambda: self.redis.hget(self.keys.last_failures(cluster), job_id))
        return _decode_failure(value) if value is not None else None

    async def set_last_failure(self, cluster: str, job_id: str, failure: PodProblem) -> None:
        """Remember the last pod failure seen for a job."""
        value = orjson.dumps(asdict(failure))
        await self._call("lastfail", lambda: self.redis.hset(self.keys.last_failures(cluster), job_id, value))

    async def forget_last_failures(self, cluster: str, job_ids: builtins.list[str]) -> None:
        """Drop the failures of jobs that are gone."""
        if job_ids:
            await self._call("lastfail", lambda: self.redis.hdel(self.keys.last_failures(cluster), *job_ids))


def _decode_failure(value: bytes | str) -> PodProblem | None:
    try:
        data = orjson.loads(value)
        code = data.get("exit_code")
        return PodProblem(int(data["rank"]), str(data["reason"]), str(data["message"]),
                          pod=str(data["pod"]) if data.get("pod") else None,
                          exit_code=int(code) if isinstance(code, int) else None)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.warning("unreadable last failure skipped")
        return None
