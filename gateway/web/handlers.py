"""HTTP handlers: thin — parse the request, call JobService or a probe, render JSON.

Contract: each handler returns a 200 JSON answer or raises a `gateway.errors` error (mapped to the
legacy body by `gateway.web.middleware`). Request bodies are read whole and parsed strictly by
`gateway.web.body` before anything else happens (413, 408, 415 and 400 as it says).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from gateway import appkeys
from gateway.auth import Principal, auth_warning
from gateway.errors import GatewayError
from gateway.kube.errors import KubeError
from gateway.version import version_info
from gateway.web.body import read_json_object
from gateway.web.middleware import PRINCIPAL

_PING_TIMEOUT_SECONDS = 3.0


def _principal(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def _path(request: web.Request) -> dict[str, str]:
    return {"cluster_id": request.match_info["cid"], "partition": request.match_info["partition"]}


async def _json_body(request: web.Request) -> dict[str, Any]:
    return await read_json_object(request, limits=request.app[appkeys.SETTINGS].limits)


def json_bytes(body: bytes, *, status: int = 200) -> web.Response:
    """An answer whose JSON is already encoded (the read model's bytes)."""
    return web.Response(body=body, status=status, content_type="application/json")


def json_answer(data: Any, *, status: int = 200) -> web.Response:
    """An answer encoded with orjson."""
    return json_bytes(orjson.dumps(data), status=status)


async def list_jobs(request: web.Request) -> web.Response:
    """GET …/tfjobs"""
    service = request.app[appkeys.SERVICE]
    return json_bytes(await service.list(_principal(request), **_path(request),
                                         requested_user=request.query.get("user")))


async def create_job(request: web.Request) -> web.Response:
    """POST …/tfjobs"""
    body = await _json_body(request)
    return json_bytes(await request.app[appkeys.SERVICE].create(_principal(request), **_path(request), body=body))


async def get_job(request: web.Request) -> web.Response:
    """GET …/tfjobs/{id}"""
    return json_bytes(await request.app[appkeys.SERVICE].get(_principal(request), **_path(request),
                                                             job_id=request.match_info["id"]))


async def update_job(request: web.Request) -> web.Response:
    """PATCH …/tfjobs/{id}"""
    body = await _json_body(request)
    return json_bytes(await request.app[appkeys.SERVICE].update(_principal(request), **_path(request),
                                                                job_id=request.match_info["id"], body=body))


async def delete_job(request: web.Request) -> web.Response:
    """DELETE …/tfjobs/{id}"""
    return json_bytes(await request.app[appkeys.SERVICE].delete(_principal(request), **_path(request),
                                                                job_id=request.match_info["id"]))


async def version(_request: web.Request) -> web.Response:
    """GET /api/version"""
    return json_answer(version_info())


async def openapi(request: web.Request) -> web.Response:
    """GET /api/openapi.json: the API document (built once, by the app factory)."""
    return json_bytes(request.app[appkeys.OPENAPI])


async def healthz(_request: web.Request) -> web.Response:
    """GET /healthz: liveness, no dependencies."""
    return json_answer({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus exposition."""
    body, content_type = request.app[appkeys.METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def ping(request: web.Request) -> web.Response:
    """GET /api/ping: Redis and every cluster; 503 when Redis or every cluster is unreachable."""
    app = request.app
    settings = app[appkeys.SETTINGS]
    state = app[appkeys.STATE]
    report: dict[str, Any] = {"version": version_info()["version"], "authMode": settings.auth.mode}
    warning = auth_warning(settings.auth)
    if warning:
        report["warning"] = warning
    try:
        async with asyncio.timeout(_PING_TIMEOUT_SECONDS):
            report["redis"] = {"reachable": True, "latencyMs": round(await state.ping(), 2)}
    except (GatewayError, TimeoutError) as e:
        report["redis"] = {"reachable": False, "error": _why(e)}
    clusters = [app[appkeys.CLUSTERS].get(cid) for cid in app[appkeys.CLUSTERS].ids()]
    results = await asyncio.gather(*(_ping_cluster(request, c) for c in clusters))
    report["clusters"] = {c.id: r for c, r in zip(clusters, results, strict=True)}
    queued = None
    if report["redis"]["reachable"]:
        try:
            queued = await state.outbox.depth()
        except GatewayError:
            queued = None
    report["outboxDepth"] = queued
    healthy = report["redis"]["reachable"] and any(r["reachable"] for r in results)
    report["status"] = "ok" if healthy else "unavailable"
    return json_answer(report, status=200 if healthy else 503)


async def _ping_cluster(request: web.Request, cluster: Any) -> dict[str, Any]:
    app = request.app
    result: dict[str, Any] = {"backend": cluster.profile.backend}
    try:
        async with asyncio.timeout(_PING_TIMEOUT_SECONDS):
            result.update(reachable=True, latencyMs=round(await cluster.ping(), 2))
    except (GatewayError, KubeError, TimeoutError) as e:
        result.update(reachable=False, error=_why(e))
    watches = app[appkeys.WATCHES]
    beat = watches.beat(cluster.id)
    age = round(max(0.0, time.time() - beat), 3) if beat is not None else None
    if age is not None:
        app[appkeys.METRICS].watch_age.labels(cluster.id).set(age)
    result["lastWatchEventAgeSeconds"] = age
    result["watchLive"] = watches.live(cluster.id)
    return result


def _why(error: BaseException) -> str:
    if isinstance(error, (GatewayError, KubeError)):
        return error.message
    return "timed out"
