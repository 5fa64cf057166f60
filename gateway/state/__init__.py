"""The gateway's state in Redis, by concern: jobs and their read model, the watches' bookkeeping, leases,
the outbox stream, write counters. Everything can be rebuilt from the clusters (DESIGN §3).

Contract: `State.from_settings(settings.redis)` connects (nothing is sent until the first command);
`state.jobs` (`gateway.state.jobs.JobStore`), `state.watch`, `state.leases`, `state.outbox`,
`state.counters`, `state.partitions` (`gateway.state.partitions.PartitionRegistry`) share one client and
one connection pool; `state.ping()` and `state.close()`. The pool is redis-py's `BlockingConnectionPool`:
a request that finds every connection busy waits up to `redis.poolWaitSeconds` for one, so load makes
requests slower, not failed; only a Redis that does not answer gives 503 (`StoreUnavailable`). `redis.url: embedded` is an in-process fakeredis (the demo).
Key names and hash tags: `gateway.state.keys`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import asyncio as redis_asyncio
from redis.exceptions import RedisError

from gateway.config import EMBEDDED_REDIS, RedisSettings
from gateway.state.base import RedisPart
from gateway.state.counters import WriteCounters
from gateway.state.jobs import JobBusy, JobChanged, JobFence, JobStore, StatusUpdate
from gateway.state.keys import Keys
from gateway.state.leases import Leases
from gateway.state.outbox import OutboxStream
from gateway.state.partitions import PartitionRegistry
from gateway.state.views import JobRecord, StoredJob
from gateway.state.watch import WatchState


class State(RedisPart):
    """All of the gateway's Redis state (see module docstring)."""

    def __init__(self, redis: redis_asyncio.Redis, keys: Keys, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(redis, keys, clock=clock)
        self.jobs = JobStore(redis, keys, clock=clock)
        self.watch = WatchState(redis, keys, clock=clock)
        self.leases = Leases(redis, keys, clock=clock)
        self.outbox = OutboxStream(redis, keys, clock=clock)
        self.counters = WriteCounters(redis, keys, clock=clock)
        self.partitions = PartitionRegistry(redis, keys, clock=clock)

    @classmethod
    def from_settings(cls, settings: RedisSettings, *, clock: Callable[[], float] = time.time) -> State:
        """Connect per settings (`embedded` → in-process fakeredis for the demo)."""
        return cls(connect(settings), Keys(settings.key_prefix), clock=clock)

    async def ping(self) -> float:
        """Round trip in milliseconds; StoreUnavailable when Redis does not answer."""
        started = time.perf_counter()
        await self._call("ping", self.redis.ping)
        return (time.perf_counter() - started) * 1000.0

    async def close(self) -> None:
        """Close the client and its connection pool."""
        try:
            await self.redis.aclose()
        except (RedisError, OSError):
            pass


def connect(settings: RedisSettings) -> redis_asyncio.Redis:
    """A client for the configured Redis (values as bytes)."""
    if settings.url == EMBEDDED_REDIS:
        import fakeredis  # only the demo needs it

        return fakeredis.FakeAsyncRedis(decode_responses=False)
    pool = redis_asyncio.BlockingConnectionPool.from_url(
        settings.url, max_connections=settings.max_connections, timeout=settings.pool_wait_seconds,
        socket_timeout=settings.socket_timeout_seconds, socket_connect_timeout=settings.socket_timeout_seconds)
    return redis_asyncio.Redis(connection_pool=pool)


__all__ = ["JobBusy", "JobChanged", "JobFence", "JobRecord", "JobStore", "Keys", "State", "StatusUpdate",
           "StoredJob", "connect"]
