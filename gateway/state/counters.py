"""Per-user write counters in Redis, shared by every replica (the write rate limit); one key per user and
minute (`{writes:<user>}:<minute>`), counted and given its expiry by one script."""

from __future__ import annotations

from gateway.state.base import Lua, RedisPart

# KEYS[1] the user's counter of one minute; ARGV: seconds to keep it. The count so far.
_COUNT = Lua("""
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return count
""")


class WriteCounters(RedisPart):
    """Fixed one-minute windows: INCR of the user's key for the current minute, expiring after two."""

    async def count_write(self, user: str) -> tuple[int, float]:
        """Count one write of `user` in the current minute: (writes so far this minute, seconds it has left)."""
        now = self._clock()
        minute = int(now // 60)
        key = self.keys.writes(user, minute)
        count = await self._script("count-write", _COUNT, [key], [120])
        return int(count), (minute + 1) * 60 - now
