"""The aiohttp middleware: request id, access log + metrics, the ONE error → HTTP mapping, timeout, auth.

Contract:
- Every answer carries `X-Request-Id` (the caller's, when it is a sane token: 1 to 64 letters, digits,
  `.`, `_`, `-`; else a new one), and so does every cluster call made for the request.
- With tracing on (`gateway.tracing`) each request is one server span, continuing the caller's `traceparent`.
- Every error answer is the legacy body `{"code", "reason", "message", "details"}` with
  `details.requestId`: `GatewayError` as it says, a cluster error (`gateway.kube.errors.KubeError`) as
  `gateway.web.errors.legacy_error` maps it, `SpecError` → 400 `Invalid` with `details.fields`,
  aiohttp's own 404/405/413 in the same shape, an unexpected exception → 500 (logged with the
  request id and traceback, never sent to the client).
- Requests under `/api/v1alpha1/` and `/api/v1alpha2/` are authenticated (`request["principal"]`);
  version, health and metrics are not; ping authenticates only callers who present credentials (its
  detail is for admins, `gateway.web.handlers.ping`).
- A request running longer than `limits.requestTimeoutSeconds` is answered 504 (`request[DEADLINE]` is that
  timeout: a streaming handler with bounds of its own may reschedule it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable, Callable

import orjson
import structlog
from aiohttp import web

from gateway import tracing
from gateway.auth import Authenticator, Principal
from gateway.errors import (
    ClusterTimeout,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from gateway.kube.errors import KubeError
from gateway.metrics import LabelCache, Metrics
from gateway.version import API_VERSIONS
from gateway.web.errors import legacy_error
from translators.errors import SpecError

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID_HEADER = "X-Request-Id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
# The request's timeout: a handler that streams with bounds of its own (a followed log) reschedules it.
DEADLINE: web.RequestKey[asyncio.Timeout] = web.RequestKey("deadline", asyncio.Timeout)
_AUTHENTICATED_PREFIXES = tuple(f"/api/{version}/" for version in API_VERSIONS)


# A 503 is always "come back later" here (Redis, a cluster or the identity provider is away): say when.
UNAVAILABLE_RETRY_AFTER_SECONDS = 5


def error_response(error: GatewayError, *, request_id: str | None) -> web.Response:
    """The legacy error answer for `error`."""
    body = error.body(request_id=request_id)
    try:
        encoded = orjson.dumps(body)
    except TypeError:
        # A message quoting client input that orjson refuses (a lone surrogate): ASCII-escaped instead.
        encoded = json.dumps(body).encode()
    response = web.Response(body=encoded, status=error.status, content_type="application/json")
    for name, value in error.headers.items():
        response.headers[name] = value
    if error.status == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
    return response


def spec_error_to_gateway(error: SpecError) -> ValidationFailed:
    """A translation error as the gateway's 400 with field paths."""
    fields = [{"path": f.path, "message": f.message} for f in error.fields]
    return ValidationFailed(error.message, fields or [{"path": "(body)", "message": error.message}])


def _from_http_exception(exc: web.HTTPException) -> GatewayError:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        return MethodNotAllowed(f"method {exc.method} is not allowed here; allowed: {', '.join(allowed)}",
                                headers={"Allow": ", ".join(allowed)})
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("no such API path")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge("request body too large")
    error = GatewayError(exc.reason or "request failed")
    error.status = exc.status  # type: ignore[misc]
    error.reason = (exc.reason or "Error").replace(" ", "")  # type: ignore[misc]
    return error


def build_middlewares(*, authenticator: Callable[[], Authenticator], metrics: Metrics,
                      request_timeout: float) -> list[Callable[..., Awaitable[web.StreamResponse]]]:
    """The middleware chain: one middleware, so that a cached read pays for one layer, not four."""
    counted = LabelCache(metrics.requests)
    timed = LabelCache(metrics.latency)

    @web.middleware
    async def gateway(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER)
        request_id = incoming if incoming is not None and _SANE_REQUEST_ID.match(incoming) else os.urandom(16).hex()
        request[REQUEST_ID] = request_id
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        try:
            if tracing.enabled():
                response = await _traced(request, handler, request_id)
            else:
                response = await _answer(request, handler, request_id)
            status = response.status
            response.headers[REQUEST_ID_HEADER] = request_id
            return response
        finally:
            elapsed = time.perf_counter() - started
            route = _route_name(request)
            counted.labels(route, request.method, status).inc()
            timed.labels(route, request.method).observe(elapsed)
            principal: Principal | None = request.get(PRINCIPAL)
            log.info("request", method=request.method, route=route, path=request.path, status=status,
                     durationMs=round(elapsed * 1000, 1), user=principal.user if principal else None)
            structlog.contextvars.reset_contextvars(**tokens)

    async def _traced(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
        """`_answer` in a server span (the cluster calls and Redis operations it makes are its children)."""
        route = _route_name(request)
        attributes = {"http.request.method": request.method, "http.route": route, "url.path": request.path,
                      "clever.request_id": request_id}
        with tracing.server_span(f"{request.method} {route}", request.headers, attributes) as span:
            response = await _answer(request, handler, request_id)
            tracing.set_status_code(span, response.status, server=True)
            return response

    async def _answer(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
        """Authenticate and run the handler within the request timeout; every error as the legacy body."""
        try:
            try:
                async with asyncio.timeout(request_timeout) as deadline:
                    request[DEADLINE] = deadline
                    if request.path.startswith(_AUTHENTICATED_PREFIXES):
                        request[PRINCIPAL] = await authenticator().authenticate(request.headers)
                    return await handler(request)
            except TimeoutError as e:
                raise ClusterTimeout(f"the request took longer than {request_timeout:g}s") from e
        except GatewayError as e:
            return error_response(e, request_id=request_id)
        except KubeError as e:
            return error_response(legacy_error(e), request_id=request_id)
        except SpecError as e:
            return error_response(spec_error_to_gateway(e), request_id=request_id)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return error_response(_from_http_exception(e), request_id=request_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error", path=request.path, method=request.method)
            return error_response(GatewayError("internal error; quote the request id when reporting it"),
                                  request_id=request_id)

    return [gateway]


def _route_name(request: web.Request) -> str:
    info = request.match_info
    route = info.route if info is not None else None
    resource = getattr(route, "resource", None)
    canonical = getattr(resource, "canonical", None)
    if info is not None and getattr(info, "http_exception", None) is not None:
        return "unmatched"
    return str(canonical) if canonical else "unmatched"
