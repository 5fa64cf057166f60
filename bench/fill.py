"""Fill the partition through the gateway: each user gets exactly the number of jobs asked for.

Creates go through the legacy API with a bounded number in flight: halved (not below a quarter of the
bound) when the gateway refuses (503, connection errors), grown back by one after a run of successes.
A 504 is a slow cluster, not an overloaded gateway: the create usually lands anyway, and fewer in
flight would only slow the fill further (kubesim answers creates in batches), so it changes nothing.
Each pass counts every user's jobs with a LIST, creates what is missing, and after a pass with
failures waits for creates that answered late (a 504 may still land) before counting again; a user with
more than asked is trimmed with DELETEs. Progress goes to stderr every few seconds. At the deadline the
fill stops and reports what it has: callers record the real counts.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping

import aiohttp

from bench.clients import HttpError, Legacy, job_body
from bench.report import progress

_SETTLE_AFTER_FAILURES_S = 3.0


def interleave(missing: Mapping[str, int]) -> list[str]:
    """One entry per job to create, users taken in turn (each user's jobs spread over the whole fill)."""
    order: list[str] = []
    for round_ in range(max(missing.values(), default=0)):
        order.extend(user for user, n in missing.items() if n > round_)
    return order


class Filler:
    """Creates jobs through one gateway (see module docstring)."""

    def __init__(self, api: Legacy, *, concurrency: int, label: str = "fill") -> None:
        self.api = api
        self.max_concurrency = max(1, concurrency)
        self.concurrency = self.max_concurrency
        self.label = label
        self.created = 0
        self.failures = 0
        self._names = itertools.count()
        self._streak = 0
        self._in_flight = 0

    async def fill(self, targets: Mapping[str, int], *, deadline: float) -> dict[str, int]:
        """Bring each user to its target count (or stop at `deadline`, a `time.monotonic()` value);
        returns the counts reached."""
        counts = await self._counts(targets)
        while True:
            for user, have in counts.items():
                if have > targets[user]:
                    await self._trim(user, have - targets[user])
            missing = {u: targets[u] - counts[u] for u in targets if counts[u] < targets[u]}
            if not missing or time.monotonic() > deadline:
                break
            failed_before = self.failures
            await self._create(missing, deadline)
            if self.failures > failed_before:
                await asyncio.sleep(_SETTLE_AFTER_FAILURES_S)
            counts = await self._counts(targets)
        counts = await self._counts(targets)
        short = {u: f"{counts[u]}/{n}" for u, n in targets.items() if counts[u] < n}
        if short:
            progress(f"{self.label}: deadline reached, short of the target: {short}")
        return counts

    async def _counts(self, targets: Mapping[str, int]) -> dict[str, int]:
        sem = asyncio.Semaphore(8)

        async def count(user: str) -> int:
            async with sem:
                return len(await self.api.list(user))

        values = await asyncio.gather(*(count(u) for u in targets))
        return dict(zip(targets, values, strict=True))

    async def _trim(self, user: str, extra: int) -> None:
        items = await self.api.list(user)
        for item in items[-extra:]:
            await self.api.delete(user, item["metadata"]["id"])

    async def _create(self, missing: Mapping[str, int], deadline: float) -> None:
        queue = interleave(missing)
        total, started = len(queue), time.monotonic()
        done_before = self.created
        self._in_flight = 0
        slots = asyncio.Condition()
        last_report = started

        async def one(user: str) -> None:
            try:
                await self.api.create(user, job_body(f"{user}-{next(self._names)}"))
                self.created += 1
                self._streak += 1
                if self._streak >= 2 * self.concurrency and self.concurrency < self.max_concurrency:
                    self.concurrency += 1
                    self._streak = 0
            except (TimeoutError, HttpError, aiohttp.ClientError) as e:
                self.failures += 1
                self._streak = 0
                if not isinstance(e, HttpError) or e.status == 503:
                    self.concurrency = max(self.max_concurrency // 4, 1, self.concurrency // 2)
            finally:
                async with slots:
                    self._in_flight -= 1
                    slots.notify_all()

        tasks = []
        for user in queue:
            async with slots:
                await slots.wait_for(lambda: self._in_flight < self.concurrency)
                self._in_flight += 1
            if time.monotonic() > deadline:
                async with slots:
                    self._in_flight -= 1
                break
            tasks.append(asyncio.create_task(one(user)))
            now = time.monotonic()
            if now - last_report > 3:
                last_report = now
                done = self.created - done_before
                progress(f"{self.label}: {done}/{total} created, {done / (now - started):.1f}/s, "
                         f"{self._in_flight} in flight (bound {self.concurrency}), {self.failures} failed")
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
        done = self.created - done_before
        progress(f"{self.label}: pass done, {done}/{total} created in {elapsed:.1f}s "
                 f"({done / max(elapsed, 1e-9):.1f}/s), {self.failures} failed so far")
