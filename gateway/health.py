"""Readiness (`/api/ping`), cheap enough to be called by anyone, as often as they like.

Contract: `Readiness(...).check(detail=)` returns (ready, report).
- Ready = Redis answers and at least one cluster is reachable: one cluster down never makes the gateway
  unready (it would take every replica out of the load balancer for the other clusters' users).
- Redis: the outcome of the `WatchMonitor`'s background reads (every half second): no Redis call per
  ping. Unready when the last read failed or none worked for `REDIS_STALE_SECONDS`.
- A cluster: reachable while its watch heartbeat is fresh (`WATCH_FRESH_SECONDS`; the leader writes it at
  least every second while its streams are up), which costs nothing. Otherwise its API server is
  probed (`GET /version`), at most once per `PROBE_SECONDS` per cluster, the answer shared by every
  caller meanwhile (one probe in flight per cluster), so a flood of pings is no load on any API server.
- `detail=False` (anyone): `{"status": "ok" | "unavailable"}` and nothing else: no cluster ids, no
  backends, no auth mode. `detail=True` (authenticated admins, decided by the handler): per cluster
  reachability, where it was learnt (`watch` or `probe`), latency or error, the age of its watch
  heartbeat (`heartbeatAgeSeconds`: Redis holds everything the watch received up to then); Redis; the
  outbox depth (one Redis read); version and auth mode.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.auth import auth_warning
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.kube import ClusterClient, ClusterRegistry, KubeError
from gateway.state import State
from gateway.version import version_info
from gateway.workers.status import WatchMonitor

PROBE_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 3.0
WATCH_FRESH_SECONDS = 3.0
REDIS_STALE_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe of a cluster's API server."""

    at: float  # monotonic
    reachable: bool
    latency_ms: float | None
    error: str | None


class Readiness:
    """See module docstring."""

    def __init__(self, *, settings: Settings, state: State, clusters: ClusterRegistry, watches: WatchMonitor,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._state = state
        self._clusters = clusters
        self._watches = watches
        self._clock = clock
        self._monotonic = monotonic
        self._probes: dict[str, Probe] = {}
        self._probing: dict[str, asyncio.Task[Probe]] = {}

    async def check(self, *, detail: bool) -> tuple[bool, dict[str, Any]]:
        """(ready, the report: minimal unless `detail`)."""
        redis = self._redis()
        clusters = [self._clusters.get(cid) for cid in self._clusters.ids()]
        states = await asyncio.gather(*(self._cluster(c) for c in clusters))
        ready = bool(redis["reachable"]) and any(s["reachable"] for s in states)
        status = "ok" if ready else "unavailable"
        if not detail:
            return ready, {"status": status}
        report: dict[str, Any] = {"status": status, "version": version_info()["version"],
                                  "authMode": self._settings.auth.mode}
        warning = auth_warning(self._settings.auth)
        if warning:
            report["warning"] = warning
        report["redis"] = redis
        report["clusters"] = {c.id: {"backend": c.profile.backend, **s} for c, s in zip(clusters, states, strict=True)}
        depth = None
        if redis["reachable"]:
            try:
                depth = await self._state.outbox.depth()
            except GatewayError:
                depth = None
        report["outboxDepth"] = depth
        return ready, report

    def _redis(self) -> dict[str, Any]:
        ok_at, latency_ms, error = self._watches.redis_state()
        age = None if ok_at is None else self._monotonic() - ok_at
        reachable = error is None and age is not None and age <= REDIS_STALE_SECONDS
        result: dict[str, Any] = {"reachable": reachable, "latencyMs": None if latency_ms is None else
                                  round(latency_ms, 2), "lastReadAgeSeconds": None if age is None else round(age, 3)}
        if not reachable:
            result["error"] = error or "no answer lately"
        return result

    async def _cluster(self, cluster: ClusterClient) -> dict[str, Any]:
        beat = self._watches.beat(cluster.id)
        age = None if beat is None else max(0.0, self._clock() - beat)
        result: dict[str, Any] = {"heartbeatAgeSeconds": None if age is None else round(age, 3),
                                  "watchLive": self._watches.live(cluster.id)}
        if age is not None and age <= WATCH_FRESH_SECONDS:
            return {"reachable": True, "source": "watch", **result}
        probe = await self._probe(cluster)
        result |= {"reachable": probe.reachable, "source": "probe",
                   "probedAgeSeconds": round(self._monotonic() - probe.at, 3)}
        if probe.reachable:
            result["latencyMs"] = None if probe.latency_ms is None else round(probe.latency_ms, 2)
        else:
            result["error"] = probe.error
        return result

    async def _probe(self, cluster: ClusterClient) -> Probe:
        """The last probe if recent enough, else the one in flight, else a new one (shared)."""
        last = self._probes.get(cluster.id)
        if last is not None and self._monotonic() - last.at < PROBE_SECONDS:
            return last
        task = self._probing.get(cluster.id)
        if task is None:
            task = asyncio.create_task(self._run_probe(cluster), name=f"probe-{cluster.id}")
            self._probing[cluster.id] = task
            task.add_done_callback(lambda _done: self._probing.pop(cluster.id, None))
        # Shielded: a caller that gives up must not cancel the probe the others wait for.
        return await asyncio.shield(task)

    async def _run_probe(self, cluster: ClusterClient) -> Probe:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                latency = await cluster.ping()
            probe = Probe(self._monotonic(), True, latency, None)
        except (GatewayError, KubeError, TimeoutError) as e:
            why = e.message if isinstance(e, (GatewayError, KubeError)) else "timed out"
            probe = Probe(self._monotonic(), False, None, why)
        self._probes[cluster.id] = probe
        return probe
