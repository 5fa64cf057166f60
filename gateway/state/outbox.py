"""The outbox stream: creates and deletes a cluster has not accepted yet (Redis Streams, consumer group).

Contract: `add` appends an operation (a small JSON object); `read` gives a consumer new entries (waiting
up to `block_ms`) or, with `pending=True`, the ones it read but did not acknowledge; `claim_stale` takes
over entries another consumer left unacknowledged for `min_idle_ms` (a replica that died); `ack` marks an
entry done and drops it; `depth` counts what is left, `oldest` is the first entry left. `ensure` creates the stream and its group (also
after a Redis that lost its data).
"""

from __future__ import annotations

import builtins
from typing import Any

import orjson
import structlog
from redis.exceptions import ResponseError

from gateway.state.base import Lua, RedisPart, text

log = structlog.get_logger(__name__)

GROUP = "workers"

# KEYS[1] the stream; ARGV: group, entry id. Acknowledge and drop in one step.
_ACK = Lua("""
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
""")


class OutboxStream(RedisPart):
    """Typed access to the outbox stream."""

    async def ensure(self) -> None:
        """Create the stream and its consumer group if missing."""
        async with self._guard("outbox-init"):
            try:
                await self.redis.xgroup_create(self.keys.outbox, GROUP, id="0", mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    async def add(self, operation: dict[str, Any]) -> str:
        """Append an operation (durable: a client is told its operation is queued); returns its stream id."""
        payload: Any = {"op": orjson.dumps(operation)}
        results = await self._pipelined("outbox-add", lambda pipe: pipe.xadd(self.keys.outbox, payload),
                                        durable_key=self.keys.outbox)
        return str(text(results[0]))

    async def read(self, consumer: str, *, count: int = 16, block_ms: int | None = 1000,
                   pending: bool = False) -> builtins.list[tuple[str, dict[str, Any]]]:
        """New entries for `consumer`, waiting up to `block_ms` (None: do not wait); pending=True: the
        ones it read but did not acknowledge yet."""
        stream_id = "0" if pending else ">"
        answer: Any = await self._call("outbox-read", lambda: self.redis.xreadgroup(
            GROUP, consumer, {self.keys.outbox: stream_id}, count=count, block=None if pending else block_ms))
        return _decode_entries(answer[0][1] if answer else [])

    async def claim_stale(self, consumer: str, *, min_idle_ms: int,
                          count: int = 16) -> builtins.list[tuple[str, dict[str, Any]]]:
        """Take over entries another consumer read but left unacknowledged for `min_idle_ms`."""
        answer: Any = await self._call("outbox-claim", lambda: self.redis.xautoclaim(
            self.keys.outbox, GROUP, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count))
        return _decode_entries(answer[1] if answer and len(answer) > 1 else [])

    async def ack(self, entry_id: str) -> None:
        """Mark an entry done and drop it from the stream."""
        await self._script("outbox-ack", _ACK, [self.keys.outbox], [GROUP, entry_id])

    async def oldest(self) -> tuple[str, dict[str, Any]] | None:
        """The oldest entry still in the stream (any consumer's), None when it is empty."""
        answer: Any = await self._call("outbox-oldest", lambda: self.redis.xrange(self.keys.outbox, count=1))
        entries = _decode_entries(answer)
        return entries[0] if entries else None

    async def depth(self) -> int:
        """Entries not yet acknowledged."""
        return int(await self._call("outbox-depth", lambda: self.redis.xlen(self.keys.outbox)))


def _decode_entries(entries: Any) -> builtins.list[tuple[str, dict[str, Any]]]:
    result = []
    for entry_id, fields in entries or []:
        if not fields:
            continue  # deleted meanwhile
        entry = str(text(entry_id))
        try:
            decoded = orjson.loads(fields.get(b"op") or fields.get("op"))
            result.append((entry, decoded if isinstance(decoded, dict) else {}))
        except (orjson.JSONDecodeError, TypeError):
            log.error("undecodable outbox entry dropped", entry=entry)
            result.append((entry, {}))
    return result
