"""Typed application state (`web.AppKey`s) shared by the app factory, handlers and middlewares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.auth import Authenticator
    from gateway.clusters import ClusterRegistry
    from gateway.config import Settings
    from gateway.metrics import Metrics
    from gateway.outbox import Outbox
    from gateway.service import JobService
    from gateway.store import JobStore
    from gateway.sync import ClusterSync

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[JobStore] = web.AppKey("store")
CLUSTERS: web.AppKey[ClusterRegistry] = web.AppKey("clusters")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
SERVICE: web.AppKey[JobService] = web.AppKey("service")
OUTBOX: web.AppKey[Outbox] = web.AppKey("outbox")
SYNCS: web.AppKey[dict[str, ClusterSync]] = web.AppKey("syncs")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
