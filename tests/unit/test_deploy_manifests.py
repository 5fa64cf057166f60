"""deploy/kubernetes/: the alerts watch metrics the gateway really exports; the probes hit real routes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics
from gateway.web.routes import add_routes

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "base"


def exported_series() -> set[str]:
    """Every series name `/metrics` can show (counters with `_total`, histograms with their parts)."""
    metrics = Metrics()
    metrics.requests.labels("/r", "GET", "200").inc()
    metrics.latency.labels("/r", "GET").observe(0.1)
    metrics.cluster_calls.labels("c", "get", "200").inc()
    metrics.cluster_errors.labels("c", "get", "timeout").inc()
    metrics.cluster_auth_failures.labels("c", "unauthorized").inc()
    metrics.sync_backlog.labels("c").set(0)
    metrics.watch_age.labels("c").set(0)
    text, _ = metrics.render()
    return {sample.name for family in text_string_to_metric_families(text.decode()) for sample in family.samples}


def test_every_alert_expression_names_an_exported_series() -> None:
    rule: dict[str, Any] = yaml.safe_load((KUBERNETES / "alerts.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    exported = exported_series()
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert rules
    for alert in rules:
        names = set(re.findall(r"clever_gateway_[a-z_]+", alert["expr"]))
        assert names and names <= exported, (alert["alert"], names - exported)
        assert alert["annotations"]["summary"]


def test_deployment_probes_and_scrape_path_are_served() -> None:
    app = web.Application()
    add_routes(app)
    served = {resource.canonical for resource in app.router.resources()}
    documents = list(yaml.safe_load_all((KUBERNETES / "deployment.yaml").read_text()))
    (deployment,) = [d for d in documents if d and d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    probe_paths = {container[probe]["httpGet"]["path"] for probe in ("readinessProbe", "livenessProbe")}
    assert probe_paths == {"/api/ping", "/healthz"}
    assert probe_paths | {pod["metadata"]["annotations"]["prometheus.io/path"]} <= served
