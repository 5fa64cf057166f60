"""Leases in Redis: one holder per name (the watch of a cluster), with a time to live renewed by the holder.

Contract: `acquire` takes a free lease or extends our own; with `takeover=<identity>` it also takes a
lease held by an earlier life of the same replica identity (holders are `<identity> <incarnation>`,
see `gateway.workers.sync`), so a replica restarted after a crash does not wait for its own lease to
lapse. `renew` extends it only while we still hold it (False: lost); `release` gives it up so another
replica takes over at once. Each is one Lua script on the lease's own key (`{lease:<name>}`).
"""

from __future__ import annotations

from gateway.state.base import Lua, RedisPart, text

# KEYS[1] lease; ARGV: holder, ttl (ms), takeover prefix ("" = none). 1 taken or extended, 0 held by another.
_ACQUIRE = Lua("""
local current = redis.call('GET', KEYS[1])
if (not current) or current == ARGV[1]
   or (ARGV[3] ~= '' and string.sub(current, 1, string.len(ARGV[3])) == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
""")


class Leases(RedisPart):
    """Named leases (see module docstring)."""

    async def acquire(self, name: str, holder: str, *, ttl_ms: int, takeover: str | None = None) -> bool:
        """Take the lease if free (or already ours, then extend it); with `takeover`, also when its holder
        starts with `takeover` (an earlier life of this replica)."""
        return bool(await self._script("lease", _ACQUIRE, [self.keys.lease(name)], [holder, ttl_ms, takeover or ""]))

    async def renew(self, name: str, holder: str, *, ttl_ms: int) -> bool:
        """Extend the lease if `holder` still holds it; False when lost."""
        return await self._compare_and_expire(self.keys.lease(name), holder, ttl_ms, what="lease")

    async def release(self, name: str, holder: str) -> None:
        """Give the lease up so another replica takes over at once."""
        await self._compare_and_delete(self.keys.lease(name), holder)

    async def holder(self, name: str) -> str | None:
        """Who holds the lease now, if anybody."""
        return text(await self._call("lease", lambda: self.redis.get(self.keys.lease(name))))
