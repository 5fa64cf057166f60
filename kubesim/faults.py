"""Fault injection for kubesim: outages, latency, failing calls, cut watches, short history.

Contract: `Faults` is driven from tests (`sim.faults.down()`) or over HTTP (`/kubesim/admin/faults/...`, see
kubesim.server). All methods are synchronous and take effect for the next request:
- `down(mode="refuse")` stops listening (new connections are refused; `up()` listens again on the same port);
  `down(mode="503")` answers every API call with 503 ServiceUnavailable.
- `latency(seconds)` delays every API call; `fail_next(n, status, path=, method=, reason=)` fails the next n
  matching calls with a proper `Status` (429 carries Retry-After); `cut_watches()` ends every open watch
  stream abruptly; `shrink_history(n)` keeps only n watch events so older resourceVersions get 410;
  `clear()` undoes all of it.
The admin endpoints are never subject to faults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubesim import errors
from kubesim.errors import ApiError
from kubesim.store import Store


@dataclass
class FailureRule:
    """Fail the next `remaining` calls matching path substring / method."""

    remaining: int
    status: int
    path: str | None = None
    method: str | None = None
    reason: str | None = None
    message: str | None = None

    def matches(self, method: str, path: str) -> bool:
        """Whether a request is targeted by this rule."""
        if self.method and self.method.upper() != method.upper():
            return False
        return not self.path or self.path in path


@dataclass
class Faults:
    """Mutable fault state consulted by the server on every request."""

    store: Store
    on_down: Callable[[], None] = lambda: None  # stop listening
    on_up: Callable[[], None] = lambda: None  # listen again
    on_cut_watches: Callable[[], int] = lambda: 0
    mode: str | None = None  # None | "refuse" | "503"
    delay: float = 0.0
    failures: list[FailureRule] = field(default_factory=list)
    injected: int = 0  # calls failed so far by fail_next rules

    def down(self, mode: str = "refuse") -> None:
        """Take the cluster down: `refuse` connections or answer `503`."""
        if mode not in ("refuse", "503"):
            raise ValueError(f"unknown down mode {mode!r}: use 'refuse' or '503'")
        previous, self.mode = self.mode, mode
        if mode == "refuse" and previous != "refuse":
            self.on_down()
        if mode == "503" and previous == "refuse":
            self.on_up()

    def up(self) -> None:
        """Bring the cluster back."""
        previous, self.mode = self.mode, None
        if previous == "refuse":
            self.on_up()

    def latency(self, seconds: float) -> None:
        """Delay every API call by `seconds` (0 removes the delay)."""
        self.delay = max(0.0, float(seconds))

    def fail_next(self, n: int, status: int, *, path: str | None = None, method: str | None = None,
                  reason: str | None = None, message: str | None = None) -> None:
        """Fail the next `n` calls (matching `path` substring / `method`) with HTTP `status`."""
        self.failures.append(FailureRule(int(n), int(status), path, method, reason, message))

    def cut_watches(self) -> int:
        """Abort every open watch stream; returns how many were cut."""
        return self.on_cut_watches()

    def shrink_history(self, n: int) -> None:
        """Keep only the newest `n` watch events; older resourceVersions answer 410 Expired."""
        self.store.shrink_history(int(n))

    def clear(self) -> None:
        """Remove every fault (and listen again if down)."""
        self.up()
        self.delay = 0.0
        self.failures.clear()

    def failure_for(self, method: str, path: str) -> ApiError | None:
        """The injected error for this request, consuming one count of the first matching rule."""
        if self.mode == "503":
            return errors.service_unavailable()
        for rule in self.failures:
            if rule.remaining > 0 and rule.matches(method, path):
                rule.remaining -= 1
                self.injected += 1
                if rule.remaining == 0:
                    self.failures.remove(rule)
                return errors.from_code(rule.status, reason=rule.reason, message=rule.message)
        return None

    def describe(self) -> dict[str, Any]:
        """Current state, for the admin endpoint."""
        return {"mode": self.mode, "latency": self.delay, "injected": self.injected,
                "failures": [vars(rule) | {} for rule in self.failures],
                "historyLimit": self.store.history_limit}


__all__ = ["FailureRule", "Faults"]
