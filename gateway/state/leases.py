"""Leases in Redis: one holder per name (the watch of a cluster), with a time to live renewed by the holder.

Contract: `acquire` takes a free lease or extends our own; `renew` extends it only while we still hold it
(False: lost); `release` gives it up so another replica takes over at once.
"""

from __future__ import annotations

from redis.asyncio.client import Pipeline

from gateway.state.base import RedisPart, text


class Leases(RedisPart):
    """Named leases (SET NX PX; renewed by compare-and-expire)."""

    async def acquire(self, name: str, holder: str, *, ttl_ms: int) -> bool:
        """Take the lease if free (or already ours, then extend it)."""
        key = self.keys.lease(name)
        async with self._guard("lease"):
            if await self.redis.set(key, holder, nx=True, px=ttl_ms):
                return True
        return await self.renew(name, holder, ttl_ms=ttl_ms)

    async def renew(self, name: str, holder: str, *, ttl_ms: int) -> bool:
        """Extend the lease if `holder` still holds it; False when lost."""
        key = self.keys.lease(name)

        async def step(pipe: Pipeline) -> bool:
            if text(await pipe.get(key)) != holder:
                await pipe.unwatch()
                return False
            pipe.multi()
            pipe.pexpire(key, ttl_ms)
            return True

        return await self._compare_and_set("lease", (key,), step)

    async def release(self, name: str, holder: str) -> None:
        """Give the lease up so another replica takes over at once."""
        await self._compare_and_delete(self.keys.lease(name), holder)

    async def holder(self, name: str) -> str | None:
        """Who holds the lease now, if anybody."""
        return text(await self._call("lease", lambda: self.redis.get(self.keys.lease(name))))
