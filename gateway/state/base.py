"""The Redis connection and the error boundary every state module shares.

Contract: every Redis failure leaves this package as `gateway.errors.StoreUnavailable` (503), chained
from redis-py's exception; a busy connection pool waits (`redis.poolWaitSeconds`) instead of failing.
Values are bytes (the read model is served as stored); modules decode the few text values they need.
Compare-and-set steps use WATCH/MULTI through redis-py's `transaction()`; the read-model writes that
must check and write in one step use Lua scripts (registered once, run with EVALSHA).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from redis import asyncio as redis_asyncio
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from gateway.errors import StoreUnavailable
from gateway.state.keys import Keys

log = structlog.get_logger(__name__)

Step = Callable[[Pipeline], Awaitable[bool]]


def text(value: Any) -> str | None:
    """A Redis reply as text (None stays None)."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisPart:
    """One concern's view of the shared Redis client: keys, clock, error boundary, CAS helper."""

    def __init__(self, redis: redis_asyncio.Redis, keys: Keys, *, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keys = keys
        self._clock = clock

    @asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except (RedisError, OSError, TimeoutError) as e:
            log.warning("redis call failed", operation=what, error=type(e).__name__)
            raise StoreUnavailable("the gateway's store (Redis) is unavailable") from e

    async def _call(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        async with self._guard(what):
            return await call()

    async def _compare_and_set(self, what: str, keys: tuple[str, ...], step: Step) -> bool:
        """Run `step` as a WATCH/MULTI transaction on `keys`; redis-py reruns it while they change under it.
        `step` reads first, then either queues its writes after `pipe.multi()` and returns True, or
        unwatches and returns False (nothing written)."""
        async with self._guard(what):
            return bool(await self.redis.transaction(step, *keys, value_from_callable=True))

    async def _compare_and_delete(self, key: str, expected: str) -> bool:
        async def step(pipe: Pipeline) -> bool:
            if text(await pipe.get(key)) != expected:
                await pipe.unwatch()
                return False
            pipe.multi()
            pipe.delete(key)
            return True

        return await self._compare_and_set("compare-and-delete", (key,), step)
