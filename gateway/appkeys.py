"""Typed application state (`web.AppKey`s) shared by the app factory, handlers and middlewares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.auth import Authenticator
    from gateway.config import Settings
    from gateway.diagnostics import JobDiagnostics
    from gateway.health import Readiness
    from gateway.kube import ClusterRegistry
    from gateway.metrics import Metrics
    from gateway.service import JobService
    from gateway.state import State
    from gateway.web.ui.handlers import Dashboard
    from gateway.workers.outbox import Outbox
    from gateway.workers.status import StatusWriter, WatchMonitor
    from gateway.workers.sync import ClusterSync

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STATE: web.AppKey[State] = web.AppKey("state")
OPENAPI: web.AppKey[bytes] = web.AppKey("openapi", bytes)
CLUSTERS: web.AppKey[ClusterRegistry] = web.AppKey("clusters")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
SERVICE: web.AppKey[JobService] = web.AppKey("service")
OUTBOX: web.AppKey[Outbox] = web.AppKey("outbox")
SYNCS: web.AppKey[dict[str, ClusterSync]] = web.AppKey("syncs")
STATUSES: web.AppKey[StatusWriter] = web.AppKey("statuses")
WATCHES: web.AppKey[WatchMonitor] = web.AppKey("watches")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
DIAGNOSTICS: web.AppKey[JobDiagnostics] = web.AppKey("diagnostics")
DASHBOARD: web.AppKey[Dashboard] = web.AppKey("dashboard")
READINESS: web.AppKey[Readiness] = web.AppKey("readiness")
