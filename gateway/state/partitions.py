"""The partitions registry: which partitions of each cluster ever had a job, so that a view across
partitions (the dashboard's "my jobs") knows which per-partition indexes to read.

Contract: `PartitionRegistry.add(cluster, partitions)` (SADD, idempotent) and `of(clusters)` (the sorted
partitions of each cluster, one pipelined round trip). Keys: `P{partitions:<cluster>}`, one set per
cluster, used alone (never inside a job's one-slot transaction: a create adds its partition beside the
transaction, so a partition may be listed that has no job left, never the other way round).
Who adds: `JobService.create` (before the job reaches Redis or the cluster, queued creates included;
`add_recent` skips partitions this process added within the last minute, a round trip saved on almost
every create, as a Redis that lost the set gets it back within that minute) and each cluster's sync on
every relist of its jobs (so a Redis that lost its data, or jobs created around
the gateway's back, are registered again). Entries are never removed: a partition without jobs costs a
reader one empty index read.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable
from typing import Any

from gateway.state.base import RedisPart, text

# How long `add_recent` trusts this process's own earlier SADD of a partition.
RECENT_SECONDS = 60.0


class PartitionRegistry(RedisPart):
    """The partitions of each cluster that ever had a job (see module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._added: dict[tuple[str, str], float] = {}  # (cluster, partition) → monotonic time of its SADD

    async def add_recent(self, cluster: str, partition: str) -> None:
        """`add` one partition, unless this process added it within `RECENT_SECONDS`."""
        now = time.monotonic()
        if now - self._added.get((cluster, partition), -RECENT_SECONDS) < RECENT_SECONDS:
            return
        await self.add(cluster, [partition])
        self._added[(cluster, partition)] = now

    async def add(self, cluster: str, partitions: Iterable[str]) -> None:
        """Register partitions of `cluster` (no-op for none)."""
        members = sorted(set(partitions))
        if members:
            key = self.keys.partitions(cluster)
            await self._call("partitions-add", lambda: self.redis.sadd(key, *members))

    async def of(self, clusters: Iterable[str]) -> dict[str, builtins.list[str]]:
        """Each cluster's registered partitions, sorted."""
        ids = list(clusters)
        if not ids:
            return {}
        async with self._guard("partitions"), self.redis.pipeline(transaction=False) as pipe:
            for cluster in ids:
                pipe.smembers(self.keys.partitions(cluster))
            rows = await pipe.execute()
        return {cluster: sorted(t for t in (text(m) for m in members) if t)
                for cluster, members in zip(ids, rows, strict=True)}
