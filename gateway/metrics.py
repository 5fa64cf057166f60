"""Prometheus metrics of one gateway app, served at `/metrics`.

Contract: `Metrics()` owns its own `CollectorRegistry` (several apps can live in one test process);
the middleware records requests by route template and status, ClusterClient records cluster calls,
the outbox and sync update their gauges. Label values are bounded: route templates, not raw paths.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


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
        self.outbox_oldest_age = Gauge("clever_gateway_outbox_oldest_age_seconds",
                                       "Age of the oldest queued operation this replica is working on (0: none)",
                                       registry=self.registry)
        self.sync_backlog = Gauge("clever_gateway_sync_backlog_jobs",
                                  "Jobs whose latest cluster state is not in Redis yet (watching replica only)",
                                  ["cluster"], registry=self.registry)
        self.watch_age = Gauge("clever_gateway_watch_last_event_age_seconds",
                               "Seconds since the last watch event of a cluster (-1: no watch here)",
                               ["cluster"], registry=self.registry)
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

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
