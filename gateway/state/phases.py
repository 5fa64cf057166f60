"""The phases stream: every change of a job's phase, for the webhooks (Redis Streams, a group per hook).

Contract: the changes are appended by the status writes themselves (`gateway.state.jobs`, `_HELPERS`), one
entry per change, with the fields `id name owner cluster partition phase previousPhase reason message at`
(`at`: when the new status was observed, epoch seconds). Each hook reads the stream through its own
consumer group (`hook:<name>`), so hooks progress independently: `ensure(group)` creates it (at the
stream's end: a new hook is sent the changes from then on); `read` gives a consumer new entries or, with
`after=`, its own unacknowledged ones (those of its earlier life, after a restart); `claim_stale` takes
over entries another consumer left unacknowledged for `min_idle_ms` (a replica that died); `touch` resets
the idle time of entries still being retried, so a live replica keeps them; `ack` ends an entry for one
hook (the stream itself is trimmed by length on append, as other hooks may still need the entry).
"""

from __future__ import annotations

import builtins
from typing import Any

from redis.exceptions import ResponseError

from gateway.state.base import RedisPart, text

Entry = tuple[str, dict[str, str]]


class PhaseStream(RedisPart):
    """Typed access to the phases stream (see module docstring)."""

    async def ensure(self, group: str, *, start: str = "$") -> None:
        """Create the stream and the hook's group if missing (`start`: where a new group begins)."""
        async with self._guard("phases-init"):
            try:
                await self.redis.xgroup_create(self.keys.phases, group, id=start, mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    async def read(self, group: str, consumer: str, *, count: int, block_ms: int | None = None,
                   after: str | None = None) -> builtins.list[Entry]:
        """New entries for `consumer` (waiting up to `block_ms`), or with `after` its own unacknowledged
        entries after that id ("0": from the first)."""
        stream_id = ">" if after is None else after
        answer: Any = await self._call("phases-read", lambda: self.redis.xreadgroup(
            group, consumer, {self.keys.phases: stream_id}, count=count, block=block_ms if after is None else None))
        return _decode(answer[0][1] if answer else [])

    async def claim_stale(self, group: str, consumer: str, *, min_idle_ms: int, count: int,
                          cursor: str = "0-0") -> tuple[str, builtins.list[Entry]]:
        """Take over entries left unacknowledged for `min_idle_ms`, scanning from `cursor`; (the next
        cursor, "0-0" once the scan went round, and the entries)."""
        answer: Any = await self._call("phases-claim", lambda: self.redis.xautoclaim(
            self.keys.phases, group, consumer, min_idle_time=min_idle_ms, start_id=cursor, count=count))
        if not answer:
            return "0-0", []
        return str(text(answer[0])), _decode(answer[1] if len(answer) > 1 else [])

    async def touch(self, group: str, consumer: str, entry_ids: builtins.list[str]) -> None:
        """Reset the idle time of entries this consumer still works on (XCLAIM JUSTID to itself)."""
        ids: Any = list(entry_ids)  # redis-py's annotation wants a list of a union; a list of str is one
        if ids:
            await self._call("phases-touch", lambda: self.redis.xclaim(
                self.keys.phases, group, consumer, min_idle_time=0, message_ids=ids, justid=True))

    async def ack(self, group: str, entry_id: str) -> None:
        """The hook is done with an entry (delivered, filtered out, or given up)."""
        await self._call("phases-ack", lambda: self.redis.xack(self.keys.phases, group, entry_id))



def _decode(entries: Any) -> builtins.list[Entry]:
    result = []
    for entry_id, fields in entries or []:
        entry = str(text(entry_id))
        # An entry trimmed from the stream while unacknowledged comes back without fields: nothing to send,
        # the reader acknowledges it.
        result.append((entry, {str(text(k)): str(text(v)) for k, v in (fields or {}).items()}))
    return result
