"""HTTP handlers: thin — parse the request, call JobService or a probe, render JSON.

Contract: each handler returns a 200 JSON answer or raises a `gateway.errors` error (mapped to the
legacy body by `gateway.middleware`). Request bodies: at most `limits.maxBodyBytes` (else 413), sent as
JSON — `Content-Type` absent, a JSON type, or one of the types scripted legacy clients send a JSON body
under (`curl -d` defaults to form-urlencoded), else 415 — and a JSON object (else 400).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from gateway import appkeys
from gateway.auth import Principal, auth_warning
from gateway.errors import BadRequest, GatewayError, PayloadTooLarge, UnsupportedMediaType
from gateway.middleware import PRINCIPAL
from gateway.version import version_info

_JSON_TYPES = ("application/json", "text/json")
# Legacy clients were written against a server that read any body as JSON; `curl -d '{...}'` labels it
# form-urlencoded. Accept these when the body parses as JSON; refuse types that are clearly something else.
_TOLERATED_TYPES = ("text/plain", "application/x-www-form-urlencoded", "application/octet-stream")
_PING_TIMEOUT_SECONDS = 3.0


def _principal(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def _path(request: web.Request) -> dict[str, str]:
    return {"cluster_id": request.match_info["cid"], "partition": request.match_info["partition"]}


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, enforcing content type and size."""
    limit = request.app[appkeys.SETTINGS].limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    content_type = request.headers.get("Content-Type")
    if content_type is not None:
        mime = content_type.split(";", 1)[0].strip().lower()
        is_json = mime in _JSON_TYPES or (mime.startswith("application/") and mime.endswith("+json"))
        if not is_json and mime not in _TOLERATED_TYPES:
            raise UnsupportedMediaType(f"send the job as JSON (Content-Type: application/json), not {mime!r}")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise BadRequest(f"the request body must be a JSON object, not {type(data).__name__}")
    return data


async def list_jobs(request: web.Request) -> web.Response:
    """GET …/tfjobs"""
    service = request.app[appkeys.SERVICE]
    result = await service.list(_principal(request), **_path(request), requested_user=request.query.get("user"))
    return web.json_response(result)


async def create_job(request: web.Request) -> web.Response:
    """POST …/tfjobs"""
    body = await read_json_object(request)
    result = await request.app[appkeys.SERVICE].create(_principal(request), **_path(request), body=body)
    return web.json_response(result)


async def get_job(request: web.Request) -> web.Response:
    """GET …/tfjobs/{id}"""
    result = await request.app[appkeys.SERVICE].get(_principal(request), **_path(request),
                                                    job_id=request.match_info["id"])
    return web.json_response(result)


async def update_job(request: web.Request) -> web.Response:
    """PATCH …/tfjobs/{id}"""
    body = await read_json_object(request)
    result = await request.app[appkeys.SERVICE].update(_principal(request), **_path(request),
                                                       job_id=request.match_info["id"], body=body)
    return web.json_response(result)


async def delete_job(request: web.Request) -> web.Response:
    """DELETE …/tfjobs/{id}"""
    result = await request.app[appkeys.SERVICE].delete(_principal(request), **_path(request),
                                                       job_id=request.match_info["id"])
    return web.json_response(result)


async def version(_request: web.Request) -> web.Response:
    """GET /api/version"""
    return web.json_response(version_info())


async def healthz(_request: web.Request) -> web.Response:
    """GET /healthz: liveness, no dependencies."""
    return web.json_response({"status": "ok"})


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
    store = app[appkeys.STORE]
    report: dict[str, Any] = {"version": version_info()["version"], "authMode": settings.auth.mode}
    warning = auth_warning(settings.auth)
    if warning:
        report["warning"] = warning
    try:
        async with asyncio.timeout(_PING_TIMEOUT_SECONDS):
            report["redis"] = {"reachable": True, "latencyMs": round(await store.ping(), 2)}
    except (GatewayError, TimeoutError) as e:
        report["redis"] = {"reachable": False, "error": _why(e)}
    clusters = [app[appkeys.CLUSTERS].get(cid) for cid in app[appkeys.CLUSTERS].ids()]
    results = await asyncio.gather(*(_ping_cluster(request, c) for c in clusters))
    report["clusters"] = {c.id: r for c, r in zip(clusters, results, strict=True)}
    queued = None
    if report["redis"]["reachable"]:
        try:
            queued = await store.outbox_depth()
        except GatewayError:
            queued = None
    report["outboxDepth"] = queued
    healthy = report["redis"]["reachable"] and any(r["reachable"] for r in results)
    report["status"] = "ok" if healthy else "unavailable"
    return web.json_response(report, status=200 if healthy else 503)


async def _ping_cluster(request: web.Request, cluster: Any) -> dict[str, Any]:
    app = request.app
    result: dict[str, Any] = {"backend": cluster.profile.backend}
    try:
        async with asyncio.timeout(_PING_TIMEOUT_SECONDS):
            result.update(reachable=True, latencyMs=round(await cluster.ping(), 2))
    except (GatewayError, TimeoutError) as e:
        result.update(reachable=False, error=_why(e))
    settings = app[appkeys.SETTINGS]
    age: float | None = None
    if settings.sync.watch:
        try:
            beat = await app[appkeys.STORE].watch_heartbeat(cluster.id)
        except GatewayError:
            beat = None
        age = round(max(0.0, time.time() - beat), 3) if beat is not None else None
        if age is not None:
            app[appkeys.METRICS].watch_age.labels(cluster.id).set(age)
    result["lastWatchEventAgeSeconds"] = age
    result["watchLive"] = age is not None and age <= settings.sync.fallback_after_seconds
    return result


def _why(error: BaseException) -> str:
    if isinstance(error, GatewayError):
        return error.message
    return "timed out"
