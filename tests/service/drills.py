"""Failure drills against a running gateway: a stream of creates while something breaks, then the count.

`CreateStream(post, workers=)` sends creates (`drill-<n>`, bounded by `limit`) from a few concurrent
workers until stopped and remembers which were acknowledged (200) and which were refused or cut off.
`Figures` is what a drill reports: acknowledged creates, how many of them were found afterwards,
duplicates (a name or id listed twice), creates found that were never acknowledged, and the time until
every acknowledged create was visible. Tests print the figures (`pytest -s` shows them) and assert on them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

Post = Callable[[str], Awaitable[tuple[int, dict[str, Any] | None]]]


@dataclass
class Figures:
    """The closing figures of one drill."""

    drill: str
    acknowledged: int
    found: int
    duplicates: int
    unacknowledged_found: int
    refused: int
    seconds_to_visible: float | None
    notes: dict[str, Any] = field(default_factory=dict)

    def report(self) -> str:
        line = (f"[drill {self.drill}] acknowledged={self.acknowledged} found={self.found} "
                f"duplicates={self.duplicates} unacknowledged_found={self.unacknowledged_found} "
                f"refused={self.refused} seconds_to_visible="
                f"{'never' if self.seconds_to_visible is None else round(self.seconds_to_visible, 2)}")
        return line + "".join(f" {k}={v}" for k, v in self.notes.items())


class CreateStream:
    """Concurrent creates until `stop()` (see module docstring)."""

    def __init__(self, post: Post, *, workers: int = 4, limit: int = 100, pause: float = 0.0,
                 pause_after_refusal: float = 0.05) -> None:
        self._post = post
        self._workers = workers
        self._limit = limit
        self._pause = pause
        self._pause_after_refusal = pause_after_refusal
        self._next = 0
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.acknowledged: dict[str, str] = {}  # name -> id
        self.refused: Counter[str] = Counter()  # status code or error type -> count
        self.attempted = 0
        self.last_ack_at: float | None = None

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks)

    async def _work(self) -> None:
        while not self._stopping.is_set() and self._next < self._limit:
            name = f"drill-{self._next}"
            self._next += 1
            self.attempted += 1
            try:
                status, body = await self._post(name)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:  # cut off mid-request: not acknowledged
                self.refused[type(e).__name__] += 1
                await asyncio.sleep(self._pause_after_refusal)
                continue
            if status == 200 and body is not None:
                self.acknowledged[name] = str(body["metadata"]["id"])
                self.last_ack_at = time.monotonic()
            else:
                self.refused[str(status)] += 1
                await asyncio.sleep(self._pause_after_refusal)
            if self._pause:
                await asyncio.sleep(self._pause)


def count(drill: str, stream: CreateStream, listed: list[dict[str, Any]], *, seconds_to_visible: float | None,
          **notes: Any) -> Figures:
    """The figures of a drill from what the stream sent and what a listing shows afterwards."""
    names = Counter(str(item["spec"]["name"]) for item in listed)
    ids = Counter(str(item["metadata"]["id"]) for item in listed)
    listed_ids = set(ids)
    acknowledged_ids = set(stream.acknowledged.values())
    duplicates = sum(n - 1 for n in names.values() if n > 1) + sum(n - 1 for n in ids.values() if n > 1)
    return Figures(drill=drill, acknowledged=len(acknowledged_ids), found=len(acknowledged_ids & listed_ids),
                   duplicates=duplicates,
                   unacknowledged_found=len({i for i in listed_ids if i not in acknowledged_ids}),
                   refused=sum(stream.refused.values()), seconds_to_visible=seconds_to_visible, notes=notes)


async def until_all_visible(list_items: Callable[[], Awaitable[list[dict[str, Any]] | None]], ids: set[str], *,
                            since: float, timeout: float) -> tuple[float | None, list[dict[str, Any]]]:
    """Poll a listing until every id in `ids` is in it: (seconds since `since`, or None on timeout; last list)."""
    last: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = await list_items()
        if items is not None:
            last = items
            if ids <= {str(i["metadata"]["id"]) for i in items}:
                return time.monotonic() - since, items
        await asyncio.sleep(0.05)
    return None, last
