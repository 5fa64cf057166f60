"""Scaled time for the simulated controllers.

Simulated seconds run `1 / time_scale` times faster than real ones: a scenario's `after=5` waits
`5 * time_scale` real seconds. Deadlines inside the controllers use `SimClock.now()` (monotonic,
simulated seconds); timestamps written into objects are wall-clock UTC in Kubernetes' RFC 3339
second-precision form, like a real cluster's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from kubesim.store import now_rfc3339


def rfc3339(moment: datetime | None = None) -> str:
    """Kubernetes' metav1.Time form, e.g. 2026-01-02T03:04:05Z."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_duration(seconds: float) -> str:
    """A metav1.Duration string like Go prints it (1h2m3.5s, 4.25s)."""
    seconds = max(0.0, seconds)
    hours, rem = divmod(seconds, 3600)
    minutes, secs = divmod(rem, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


class SimClock:
    """Simulated monotonic seconds and the real delay that corresponds to simulated seconds."""

    def __init__(self, time_scale: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        self._monotonic = monotonic
        self._origin = monotonic()

    def now(self) -> float:
        """Simulated seconds since the clock was made."""
        return (self._monotonic() - self._origin) / self.time_scale

    def real_delay(self, simulated_seconds: float) -> float:
        """Real seconds to wait for `simulated_seconds` to pass."""
        return max(0.0, simulated_seconds) * self.time_scale

    @staticmethod
    def timestamp() -> str:
        """Wall-clock RFC 3339 timestamp for object fields (the store's, formatted once a second)."""
        return now_rfc3339()
