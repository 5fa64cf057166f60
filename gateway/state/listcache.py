"""Each replica's cache of LIST answers, checked against the partition's list version in Redis.

Contract:
- `holds(key)`: whether an answer is kept for `key` (cluster, partition, owner or None for the whole
  partition), so that a LIST reads the partition's version first only when that can pay; `get(key,
  version)` is the answer stored under exactly `version` (`JobStore.list_version`), else None. `put` stores one; the least
  recently used answers go first once the answers held exceed `max_bytes` (0 = no cache).
- Why it is right: every write of a job's answer or of a partition's indexes sets the partition's version
  to a token never used before, in the same script (`gateway.state.jobs`), and a reader takes the version
  *before* it reads the jobs. An answer stored under a version therefore holds at least what that version
  stood for, and a write after it changes the version, so the next reader misses. A partition whose data
  Redis lost has no version (no completeness marker) and is never served from here.
- Why it pays: legacy clients poll the same list; between two changes of a partition every replica
  answers it with one small Redis read instead of reading and joining every job.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeAlias

ListKey: TypeAlias = tuple[str, str, str | None]


class ListCache:
    """LRU of list answers bounded by their bytes (see module docstring)."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: OrderedDict[ListKey, tuple[bytes, bytes]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        """Whether answers are kept at all."""
        return self._max_bytes > 0

    @property
    def held_bytes(self) -> int:
        """The bytes of the answers held."""
        return self._bytes

    def holds(self, key: ListKey) -> bool:
        """Whether an answer is kept for `key` (worth reading the partition's version for); a LIST that finds
        none counts as a miss."""
        if key in self._entries:
            return True
        self.misses += 1
        return False

    def get(self, key: ListKey, version: bytes) -> bytes | None:
        """The answer stored for `key` under `version`, if any."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: ListKey, version: bytes, body: bytes) -> None:
        """Keep `body` as the answer for `key` under `version` (an answer larger than the whole cache is not
        kept, and drops what was kept for that key)."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        if not self.enabled or len(body) > self._max_bytes:
            return
        self._entries[key] = (version, body)
        self._bytes += len(body)
        while self._bytes > self._max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._bytes -= len(evicted)
