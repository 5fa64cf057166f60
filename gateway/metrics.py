"""Prometheus metrics of one gateway app, served at `/metrics`.

Contract: `Metrics()` owns its own `CollectorRegistry` (several apps can live in one test process), with
the process, platform and garbage-collector collectors prometheus_client's default registry would have
and `clever_gateway_build_info`. The middleware records requests by route template and status; the
cluster transport (`gateway.kube.transport`) records every cluster exchange, with its latency; the state
package's one error boundary (`gateway.state.base.RedisPart`) times every Redis operation; the outbox
and sync update their gauges; `track_oidc` exports the OIDC authenticator's counters as they are at each
scrape. Label values are bounded: route templates, not raw paths; Redis operations are the literal
names the state modules give them.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Self

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.errors import StoreUnavailable
from gateway.state.listcache import ListCache
from gateway.version import VERSION

# Cluster calls: a cached GET answers in a millisecond, a create through admission webhooks can take
# seconds, and a call that times out is the request timeout (30s by default).
CLUSTER_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Redis on the same network answers in well under a millisecond; the tail is a failover or a busy pool.
REDIS_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class LabelCache:
    """A metric family's children by label values, looked up once: prometheus_client's `labels()` takes a
    lock and builds a key on every call, which a per-request counter pays thousands of times a second."""

    def __init__(self, family: Any) -> None:
        self._family = family
        self._children: dict[tuple[Any, ...], Any] = {}

    def labels(self, *values: Any) -> Any:
        """The child for `values` (stringified, as prometheus_client does)."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._family.labels(*(str(v) for v in values))
        return child


class Metrics:
    """The gateway's metric families, registered in a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("clever_gateway_http_requests_total", "HTTP requests answered",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("clever_gateway_http_request_duration_seconds", "HTTP request latency",
                                 ["route", "method"], registry=self.registry)
        self.cluster_calls = Counter("clever_gateway_cluster_requests_total", "Kubernetes API calls",
                                     ["cluster", "verb", "code"], registry=self.registry)
        self.cluster_errors = Counter("clever_gateway_cluster_errors_total",
                                      "Kubernetes API calls that failed (transport or 5xx)",
                                      ["cluster", "verb", "kind"], registry=self.registry)
        self.cluster_auth_failures = Counter(
            "clever_gateway_cluster_auth_failures_total",
            "Cluster calls refused for the gateway's credentials (kind unauthorized: 401 after a fresh token; "
            "forbidden: 403; credentials: none could be obtained, e.g. an exec plugin failed)",
            ["cluster", "kind"], registry=self.registry)
        self.outbox_depth = Gauge("clever_gateway_outbox_depth", "Operations waiting for a cluster",
                                  registry=self.registry)
        self.cluster_latency = Histogram(
            "clever_gateway_cluster_request_duration_seconds",
            "Kubernetes API call latency until the answer's status line (code: HTTP status, or timeout, tls, "
            "proxy, unreachable)", ["cluster", "verb", "code"], buckets=CLUSTER_BUCKETS, registry=self.registry)
        self.redis_latency = Histogram(
            "clever_gateway_redis_operation_duration_seconds",
            "Redis operation latency (one command, pipeline or script call of the named operation; failed "
            "ones included), including the wait for a pooled connection", ["operation"],
            buckets=REDIS_BUCKETS, registry=self.registry)
        self.redis_failures = Counter("clever_gateway_redis_operation_failures_total",
                                      "Redis operations that failed (a client request is answered 503, background work retries)",
                                      ["operation"], registry=self.registry)
        self.outbox_oldest_age = Gauge("clever_gateway_outbox_oldest_age_seconds",
                                       "Age of the oldest operation in the outbox stream, whichever replica works "
                                       "on it (0: the outbox is empty)", registry=self.registry)
        self.sync_backlog = Gauge("clever_gateway_sync_backlog_jobs",
                                  "Jobs whose latest cluster state is not in Redis yet (watching replica only)",
                                  ["cluster"], registry=self.registry)
        self.watch_age = Gauge(
            "clever_gateway_watch_last_event_age_seconds",
            "Seconds since this replica's watch of a cluster last received an event or bookmark from the API "
            "server, counted from when it started watching while none came yet (-1: this replica does not "
            "watch that cluster, another holds its lease)", ["cluster"], registry=self.registry)
        self.build_info = Gauge("clever_gateway_build_info", "The running gateway's version and Python (always 1)",
                                ["version", "python"], registry=self.registry)
        self.build_info.labels(VERSION, platform.python_version()).set(1)
        self.webhook_deliveries = Counter("clever_gateway_webhook_deliveries_total",
                                          "Phase-change deliveries attempted, by hook and outcome "
                                          "(delivered: 2xx; failed: retried later)",
                                          ["hook", "outcome"], registry=self.registry)
        self.webhook_dropped = Counter("clever_gateway_webhook_dropped_total",
                                       "Phase changes given up undelivered after notifications.maxAgeSeconds",
                                       ["hook"], registry=self.registry)
        self.archived_swept = Counter("clever_gateway_archived_jobs_swept_total",
                                      "Archived finished jobs removed after retention.finishedJobsDays",
                                      registry=self.registry)
        # What prometheus_client's default registry carries (CPU, memory, open files, start time; the
        # Python build; collections), on this private registry.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._redis_timed: dict[str, tuple[Any, Any]] = {}
        self._oidc = _OIDCCollector()
        self.registry.register(self._oidc)
        self._list_cache = _ListCacheCollector()
        self.registry.register(self._list_cache)

    def redis_operation(self, operation: str, inner: AbstractContextManager[object] | None = None) -> _Timed:
        """Times one Redis operation (`gateway.state.base.Topology.instrument`) around `inner` (its span);
        `StoreUnavailable` leaving it counts the operation as failed."""
        timed = self._redis_timed.get(operation)
        if timed is None:
            timed = self._redis_timed[operation] = (self.redis_latency.labels(operation),
                                                    self.redis_failures.labels(operation))
        return _Timed(timed[0], timed[1], inner)

    def track_list_cache(self, cache: ListCache) -> None:
        """Export this replica's LIST cache counters (read at each scrape)."""
        self._list_cache.source = cache

    def track_oidc(self, stats: Callable[[], Mapping[str, int]] | None) -> None:
        """Export the OIDC authenticator's counters (`gateway.auth.oidc.AuthStats.snapshot`), read at each
        scrape; None while authentication is not OIDC (the families are then absent)."""
        self._oidc.source = stats

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Timed:
    """One timed operation: observes its duration, counts a failure, enters and leaves `inner` around it."""

    __slots__ = ("_failures", "_histogram", "_inner", "_started")

    def __init__(self, histogram: Any, failures: Any, inner: AbstractContextManager[object] | None) -> None:
        self._histogram = histogram
        self._failures = failures
        self._inner = inner
        self._started = 0.0

    def __enter__(self) -> Self:
        if self._inner is not None:
            self._inner.__enter__()
        self._started = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._histogram.observe(time.perf_counter() - self._started)
        # Only the store failing: a refusal decided on what Redis answered (a name taken) is no failure.
        if kind is not None and issubclass(kind, StoreUnavailable):
            self._failures.inc()
        if self._inner is not None:
            self._inner.__exit__(kind, error, tb)


class _ListCacheCollector(Collector):
    """This replica's LIST cache (`gateway.state.listcache.ListCache`): answers served from it, LISTs that
    read Redis instead, and the bytes it holds, read at scrape time."""

    def __init__(self) -> None:
        self.source: ListCache | None = None

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        cache = self.source
        if cache is None:
            return []
        lookups = CounterMetricFamily("clever_gateway_list_cache_lookups",
                                      "LISTs by whether this replica answered from its cache (hit) or read "
                                      "Redis (miss: the partition changed, or first time)", labels=["outcome"])
        lookups.add_metric(["hit"], cache.hits)
        lookups.add_metric(["miss"], cache.misses)
        held = GaugeMetricFamily("clever_gateway_list_cache_bytes", "Bytes of LIST answers this replica holds "
                                 "(bounded by limits.listCacheBytes)", value=cache.held_bytes)
        return [lookups, held]

    def describe(self) -> Iterable[CounterMetricFamily]:
        return []


class _OIDCCollector(Collector):
    """The OIDC authenticator's plain counters (it counts on its hot path without prometheus_client's locks)
    as counter families, read at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, int]] | None = None

    def collect(self) -> Iterable[CounterMetricFamily]:
        source = self.source
        if source is None:
            return []
        stats = source()
        tokens = CounterMetricFamily(
            "clever_gateway_oidc_tokens", "Bearer tokens by verification outcome (verified: signature and "
            "claims checked now; cached: a token verified before; rejected: 401; unavailable: no signing keys "
            "could be fetched, 503)", labels=["outcome"])
        for outcome in ("verified", "cached", "rejected", "unavailable"):
            tokens.add_metric([outcome], stats.get(outcome, 0))
        fetches = CounterMetricFamily("clever_gateway_oidc_jwks_fetches",
                                      "Fetches of the issuer's signing keys (discovery + JWKS) by outcome",
                                      labels=["outcome"])
        fetches.add_metric(["ok"], stats.get("jwks_ok", 0))
        fetches.add_metric(["failed"], stats.get("jwks_failed", 0))
        return [tokens, fetches]

    def describe(self) -> Iterable[CounterMetricFamily]:
        # Described empty: the registry's auto_describe must not call collect() before a source is set.
        return []
