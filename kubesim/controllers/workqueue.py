"""A work queue of dirty keys with per-key deadlines, as controller-runtime's workqueue (Add, AddAfter).

Contract: `add(key)` marks a key dirty (a key is queued at most once however often it is added); `take()`
returns the dirty keys in the order they were first added and empties the set. `schedule(key, due)` sets the
one simulated time at which `key` becomes dirty again (None cancels it; a later call replaces an earlier
one, so a reconcile that returns its next deadline keeps exactly one timer per key); `fire(now)` moves every
key whose time has come into the dirty set; `next_due()` is the earliest pending deadline. Not thread-safe:
the controllers' single task owns it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Dirty keys plus one timer per key."""

    def __init__(self) -> None:
        self._dirty: dict[K, None] = {}  # a dict keeps insertion order and drops duplicates
        self._due: dict[K, float] = {}
        # (due, tie-breaker, key); entries whose due no longer matches _due are stale and skipped
        self._heap: list[tuple[float, int, K]] = []
        self._sequence = itertools.count()

    def add(self, key: K) -> None:
        """Mark `key` dirty."""
        self._dirty[key] = None

    def add_all(self, keys: Iterable[K]) -> None:
        """Mark every key dirty."""
        for key in keys:
            self._dirty[key] = None

    def take(self) -> list[K]:
        """The dirty keys, oldest first; the set is empty afterwards."""
        keys = list(self._dirty)
        self._dirty.clear()
        return keys

    def schedule(self, key: K, due: float | None) -> None:
        """Make `key` dirty at simulated time `due` (None: no timer), replacing its previous timer."""
        if due is None:
            self._due.pop(key, None)
        elif self._due.get(key) != due:
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._sequence), key))

    def fire(self, now: float) -> None:
        """Move every key whose timer is due at `now` into the dirty set."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, key = heapq.heappop(heap)
            if self._due.get(key) == due:
                del self._due[key]
                self._dirty[key] = None

    def next_due(self) -> float | None:
        """The earliest pending timer, if any."""
        heap = self._heap
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def __len__(self) -> int:
        """How many keys are dirty now."""
        return len(self._dirty)


__all__ = ["WorkQueue"]
