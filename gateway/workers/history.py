"""History: finished jobs stay listed after their cluster object is gone, for a while, then are swept.

Contract:
- Archiving (`JobStore.archive`): a succeeded or failed job whose cluster object is gone (a TTL, a cleanup,
  deleted by hand on the cluster) keeps its record, marked `"archived": true` in its legacy object, from
  when the gateway saw the object go. Who notices: the cluster's watch (`gateway.workers.sync`: an object
  and its pods deleted, or missing at a relist), and with the watch off the reads straight from the
  cluster (`gateway.workers.status`). A DELETE through the API still removes the job at once; a job whose
  object comes back (a status is written again) or that is written anew is no longer archived.
- `HistorySweeper.run()` (every replica runs one; one at a time sweeps, under the lease `history-sweep`
  of `gateway.state.leases`, the mechanism of the watches): every `retention.sweepIntervalSeconds` it
  removes the keys of the jobs archived more than `retention.finishedJobsDays` ago, partition by
  partition (the registry of `gateway.state.partitions`), each with one script that checks the job is
  still archived that long and not being changed. The lease lives for three intervals: if its holder
  dies another replica sweeps after that; two sweeps at once would only do the same removals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterable

import structlog

from gateway.config import RetentionSettings
from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics
from gateway.state import State

log = structlog.get_logger(__name__)

LEASE = "history-sweep"
_DAY_SECONDS = 86400.0


class HistorySweeper:
    """The periodic sweep of archived jobs (see module docstring)."""

    def __init__(self, state: State, cluster_ids: Iterable[str], *, settings: RetentionSettings, holder: str,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._clusters = list(cluster_ids)
        self._settings = settings
        self._holder = holder
        self._lease_holder = f"{holder} {uuid.uuid4().hex[:12]}"
        self._metrics = metrics
        self._clock = clock
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask `run` to return."""
        self._stopping.set()

    async def run(self) -> None:
        """Sweep every interval while holding the lease; until `stop()`."""
        interval = self._settings.sweep_interval_seconds
        ttl_ms = int(interval * 3000)
        first = True
        while not self._stopping.is_set():
            try:
                # A restarted replica takes its own earlier life's lease back at once (as the watches do).
                if await self._state.leases.acquire(LEASE, self._lease_holder, ttl_ms=ttl_ms,
                                                    takeover=f"{self._holder} " if first else None):
                    await self.sweep()
                first = False
            except StoreUnavailable:
                pass  # next interval
            except Exception:  # the sweep must outlive one odd partition
                log.exception("history sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)
        with contextlib.suppress(StoreUnavailable):
            await asyncio.shield(self._state.leases.release(LEASE, self._lease_holder))

    async def sweep(self) -> int:
        """Remove every job archived more than `finishedJobsDays` ago; how many were removed."""
        cutoff = self._clock() - self._settings.finished_jobs_days * _DAY_SECONDS
        removed = 0
        for cluster, partitions in (await self._state.partitions.of(self._clusters)).items():
            for partition in partitions:
                removed += await self._state.jobs.sweep_archived(cluster, partition, cutoff=cutoff)
        if removed:
            log.info("archived jobs swept", removed=removed, olderThanDays=self._settings.finished_jobs_days)
            if self._metrics is not None:
                self._metrics.archived_swept.inc(removed)
        return removed
