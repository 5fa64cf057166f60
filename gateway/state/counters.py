"""Per-user write counters in Redis, shared by every replica (the write rate limit)."""

from __future__ import annotations

from gateway.state.base import RedisPart


class WriteCounters(RedisPart):
    """Fixed one-minute windows: INCR of the user's key for the current minute, expiring after two."""

    async def count_write(self, user: str) -> tuple[int, float]:
        """Count one write of `user` in the current minute: (writes so far this minute, seconds it has left)."""
        now = self._clock()
        minute = int(now // 60)
        key = self.keys.writes(user, minute)
        async with self._guard("count-write"), self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
        return int(count), (minute + 1) * 60 - now
