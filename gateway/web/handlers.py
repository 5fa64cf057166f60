"""HTTP handlers: thin — parse the request, call JobService or a probe, render JSON.

Contract: each handler returns a 200 JSON answer or raises a `gateway.errors` error (mapped to the
legacy body by `gateway.web.middleware`). Request bodies are read whole and parsed strictly by
`gateway.web.body` before anything else happens (413, 408, 415 and 400 as it says).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway import appkeys
from gateway.auth import Principal
from gateway.service import ListFilter
from gateway.version import version_info
from gateway.web.body import read_json_object
from gateway.web.middleware import PRINCIPAL, UNAVAILABLE_RETRY_AFTER_SECONDS


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
    phases = request.query.getall("phase", [])
    filters = ListFilter.parse(",".join(phases) if phases else None, request.query.get("since"))
    return json_bytes(await service.list(_principal(request), **_path(request),
                                         requested_user=request.query.get("user"), filters=filters))


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
    """GET /api/ping: readiness (`gateway.health`): 200, or 503 when Redis or every cluster is unreachable.
    Anyone gets `{"status": ...}`; an authenticated admin (the API's own authentication) gets the detail."""
    ready, report = await request.app[appkeys.READINESS].check(detail=await _is_admin(request))
    response = json_answer(report, status=200 if ready else 503)
    if not ready:
        response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
    return response


async def _is_admin(request: web.Request) -> bool:
    """Whether the caller presents credentials of an admin. No credentials: not an admin (a readiness probe);
    credentials that do not verify: the API's 401/403, so that an admin learns why."""
    settings = request.app[appkeys.SETTINGS]
    presented = "Authorization" in request.headers or (settings.auth.mode == "none" and "X-User" in request.headers)
    if not presented:
        return False
    principal: Principal = await request.app[appkeys.AUTHENTICATOR].authenticate(request.headers)
    return principal.is_admin
