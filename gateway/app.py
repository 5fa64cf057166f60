"""The application factory: `create_app(settings) -> web.Application`.

Resources are owned by `cleanup_ctx` generators (created at startup, released at shutdown, in reverse
order): the Redis store, the cluster clients, the authenticator, then the service with its background
tasks (outbox worker, one watch per cluster). Nothing connects at import or factory time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from typing import Any

import orjson
import structlog
from aiohttp import web

from gateway import appkeys, tracing
from gateway.auth import OIDCAuthenticator, build_authenticator
from gateway.auth.policy import PartitionAccess, impersonates
from gateway.config import Settings
from gateway.diagnostics import JobDiagnostics
from gateway.errors import StoreUnavailable
from gateway.health import Readiness
from gateway.kube import ClusterClient, ClusterRegistry
from gateway.logging import flush_logs_periodically
from gateway.metrics import Metrics
from gateway.service import JobService
from gateway.state import State
from gateway.web.middleware import build_middlewares
from gateway.web.openapi import openapi_document
from gateway.web.routes import add_routes
from gateway.web.server import on_response_prepare
from gateway.web.ui.handlers import Dashboard
from gateway.workers.history import HistorySweeper
from gateway.workers.outbox import Outbox
from gateway.workers.status import StatusWriter, WatchMonitor
from gateway.workers.sync import ClusterSync
from gateway.workers.webhooks import WebhookDelivery

log = structlog.get_logger(__name__)

_STOP_GRACE_SECONDS = 3.0


# aiohttp refuses header fields over 8190 bytes with a bare text 400 before any of our code runs; big
# OIDC tokens (many groups) pass that easily, so fields may be this large and the auth layer's own
# limit (auth.oidc.maxTokenBytes) answers an oversized token with the legacy 401 instead.
MIN_HEADER_FIELD_BYTES = 64 * 1024


def server_options(settings: Settings) -> dict[str, Any]:
    """aiohttp server (AppRunner / run_app) options that go with `settings`."""
    token_limit = settings.auth.oidc.maxTokenBytes if settings.auth.oidc is not None else 0
    # "Authorization: Bearer " plus the token must fit in one field
    return {"max_field_size": max(MIN_HEADER_FIELD_BYTES, token_limit + 1024)}


def create_app(settings: Settings, *, replica_id: str | None = None) -> web.Application:
    """A ready-to-run gateway for `settings`; `replica_id` (default `settings.replica_identity()`) names this
    replica in the watch leases and the outbox, and must stay the same across its restarts."""
    metrics = Metrics()
    holder = replica_id or settings.replica_identity()
    traced = tracing.configure(os.environ)  # ConfigError naming the OTEL_* variable it cannot honour

    def redis_instrument(operation: str) -> AbstractContextManager[object]:
        # A client span inside the timing when tracing is on (checked per call: tests install a provider).
        span = (tracing.client_span(f"redis {operation}", {"db.system.name": "redis", "db.operation.name": operation})
                if tracing.enabled() else None)
        return metrics.redis_operation(operation, span)
    app = web.Application(
        middlewares=build_middlewares(authenticator=lambda: app[appkeys.AUTHENTICATOR], metrics=metrics,
                                      request_timeout=settings.limits.request_timeout_seconds),
        client_max_size=settings.limits.max_body_bytes,
    )
    app.on_response_prepare.append(on_response_prepare)
    app[appkeys.SETTINGS] = settings
    app[appkeys.OPENAPI] = orjson.dumps(openapi_document(settings))
    app[appkeys.METRICS] = metrics
    clients = {c.id: ClusterClient(c, retry=settings.retry, metrics=metrics,
                                   impersonate=impersonates(settings.auth, cluster=c.id))
               for c in settings.clusters}
    app[appkeys.CLUSTERS] = ClusterRegistry(clients)
    add_routes(app, ui=settings.ui.enabled)
    if settings.ui.enabled:
        app[appkeys.DASHBOARD] = Dashboard(settings)  # reads the session keys: a bad file fails the start

    async def log_flush_ctx(app: web.Application) -> AsyncIterator[None]:
        flusher = asyncio.create_task(flush_logs_periodically(), name="log-flush")
        yield
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher

    async def state_ctx(app: web.Application) -> AsyncIterator[None]:
        state = State.from_settings(settings.redis, instrument=redis_instrument)
        if settings.notifications.webhooks:
            # Before anything writes a status: from now on every phase change is queued for the hooks.
            state.jobs.notify_phases(max_length=settings.notifications.stream_max_length)
        app[appkeys.STATE] = state
        yield
        await state.close()

    async def clusters_ctx(app: web.Application) -> AsyncIterator[None]:
        registry = app[appkeys.CLUSTERS]
        await registry.start()
        yield
        await registry.close()

    async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
        authenticator = build_authenticator(settings.auth)
        await authenticator.start()  # auth.mode none logs its loud warning here
        app[appkeys.AUTHENTICATOR] = authenticator
        metrics.track_oidc(authenticator.stats.snapshot if isinstance(authenticator, OIDCAuthenticator) else None)
        yield
        metrics.track_oidc(None)
        await authenticator.close()

    async def service_ctx(app: web.Application) -> AsyncIterator[None]:
        state = app[appkeys.STATE]
        registry = app[appkeys.CLUSTERS]
        statuses = StatusWriter(state, page_size=settings.limits.list_page_size)
        watches = WatchMonitor(state, registry.ids(), settings=settings.sync)
        app[appkeys.WATCHES] = watches
        outbox = Outbox(state, registry, settings=settings.sync, statuses=statuses, metrics=metrics,
                        consumer=holder)
        access = PartitionAccess(settings.auth, reviewers={c.id: c for c in registry}, redis=state.redis,
                                 key_prefix=settings.redis.key_prefix)
        app[appkeys.OUTBOX] = outbox
        app[appkeys.STATUSES] = statuses
        app[appkeys.SERVICE] = JobService(settings=settings, state=state, clusters=registry, outbox=outbox,
                                          access=access, statuses=statuses, watches=watches)
        metrics.track_list_cache(app[appkeys.SERVICE].list_cache)
        app[appkeys.DIAGNOSTICS] = JobDiagnostics(service=app[appkeys.SERVICE], settings=settings)
        syncs = {c.id: ClusterSync(c, state, statuses=statuses, settings=settings.sync, metrics=metrics,
                                   holder=holder, watches=watches)
                 for c in registry}
        app[appkeys.SYNCS] = syncs
        app[appkeys.READINESS] = Readiness(settings=settings, state=state, clusters=registry, watches=watches)
        webhooks = WebhookDelivery(state, settings.notifications, consumer=holder, metrics=metrics)
        sweeper = HistorySweeper(state, registry.ids(), settings=settings.retention, holder=holder, metrics=metrics)
        with contextlib.suppress(StoreUnavailable):
            await watches.refresh()  # the first reads already know whether a watch is live
        with contextlib.suppress(StoreUnavailable):
            await webhooks.ensure()  # the hooks' groups exist before this replica's first status write
        tasks = [asyncio.create_task(outbox.run(), name="outbox"),
                 asyncio.create_task(watches.run(), name="watch-monitor"),
                 asyncio.create_task(webhooks.run(), name="webhooks"),
                 asyncio.create_task(sweeper.run(), name="history-sweep")]
        if settings.sync.watch:
            tasks += [asyncio.create_task(s.run(), name=f"sync-{cid}") for cid, s in syncs.items()]
        yield
        # Cooperative stop first (leases released, no half-written entries), then cancellation; bounded
        # either way so that shutdown never hangs on a stuck connection.
        outbox.stop()
        watches.stop()
        webhooks.stop()
        sweeper.stop()
        for sync in syncs.values():
            sync.stop()
        _done, pending = await asyncio.wait(tasks, timeout=_STOP_GRACE_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            _done, still = await asyncio.wait(pending, timeout=_STOP_GRACE_SECONDS)
            if still:
                log.warning("background tasks did not stop", tasks=[t.get_name() for t in still])

    async def ui_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        if appkeys.DASHBOARD in app:
            await app[appkeys.DASHBOARD].close()

    async def tracing_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        if traced:
            # First in the list, so its exit runs last (aiohttp exits in reverse): the spans of the other
            # contexts' shutdown calls go out too. A blocking flush, bounded by the exporter's timeout.
            tracing.shutdown()

    async def heap_ctx(app: web.Application) -> AsyncIterator[None]:
        # Last: everything made at startup (modules, settings, clients, routes; hundreds of thousands of
        # objects) lives as long as the process. Frozen, the cyclic collector stops scanning it over and
        # over as requests allocate: a cached GET is about a tenth faster.
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()

    app.cleanup_ctx.extend([tracing_ctx, log_flush_ctx, state_ctx, clusters_ctx, auth_ctx, service_ctx, ui_ctx, heap_ctx])
    return app
