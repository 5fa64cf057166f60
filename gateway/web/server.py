"""The HTTP server around the app: protocol errors in the legacy shape, no version banner, and `serve()`.

aiohttp answers requests it cannot parse (control bytes in headers, obs-fold, an overlong request line,
duplicate or negative Content-Length, Content-Length with Transfer-Encoding, unknown methods,
`HTTP/1.2`, ...) itself, before any middleware runs: a `text/plain` 400 that echoes the offending
bytes, and a traceback logged at error level for each. `GatewayRunner` replaces that answer with the
legacy error body (`{"code", "reason", "message", "details": {"requestId"}}`, the input never echoed)
and one warning log line with the request id.

aiohttp offers no public hook for this: its `RequestHandler.handle_error` is the documented place the
low-level server builds those answers, so `LegacyErrorRequestHandler` overrides it, and
`GatewayRunner` makes the app's `web.Server` create that handler. tests/service/test_hostile_http.py
sends each kind of malformed request over a raw socket, so an aiohttp change that bypasses this fails
there.

Every answer says `Server: clever-gateway` (no Python or aiohttp version).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = structlog.get_logger(__name__)

SERVER_HEADER = "clever-gateway"

_MESSAGES = {
    400: "the request is not valid HTTP/1.1 (bad request line, header or framing)",
    405: "the request method is not supported",
    408: "the request did not arrive in time",
    413: "the request is too large",
    414: "the request line is too long",
    431: "the request headers are too large",
    501: "the request method or framing is not supported",
    504: "the request took too long",
}


def legacy_error_body(status: int, message: str, request_id: str) -> bytes:
    """The legacy error body for an answer built outside the app (protocol errors)."""
    try:
        reason = HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        reason = "Error"
    return orjson.dumps({"code": status, "reason": reason, "message": message,
                         "details": {"requestId": request_id}})


class LegacyErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, with the answers it builds itself in the legacy shape."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """Answer a request the app never saw (parse errors) or that broke outside the middlewares."""
        request_id = uuid.uuid4().hex
        if status >= 500 and status != 501:
            log.error("request failed outside the app", status=status, error=type(exc).__name__ if exc else None,
                      request_id=request_id)
        else:
            log.warning("malformed request refused", status=status,
                        error=type(exc).__name__ if exc else None, request_id=request_id)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error answer")
        text = _MESSAGES.get(status, "the request failed")
        response = web.Response(status=status, body=legacy_error_body(status, text, request_id),
                                content_type="application/json")
        response.headers["Server"] = SERVER_HEADER
        response.headers["X-Request-Id"] = request_id
        response.force_close()
        return response


class _LegacyErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return LegacyErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose server answers protocol errors in the legacy shape."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _LegacyErrorServer(server.request_handler, request_factory=server.request_factory,
                                  handler_cancellation=server.handler_cancellation, loop=server._loop,
                                  **server._kwargs)


async def on_response_prepare(_request: web.Request, response: web.StreamResponse) -> None:
    """Signal handler: every answer of the app names the gateway, not the runtime's versions."""
    response.headers["Server"] = SERVER_HEADER


def bound_port(runner: web.BaseRunner) -> int:
    """The TCP port the runner's first site listens on."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return 0


async def serve(app: web.Application, *, host: str, port: int, shutdown_timeout: float,
                server_options: dict[str, Any], on_ready: Callable[[int], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Serve `app` until SIGINT/SIGTERM (or `stop`), then shut down within `shutdown_timeout` seconds.

    Raises OSError when the address cannot be bound (the CLI turns it into one line naming the flag)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner = GatewayRunner(app, access_log=None, shutdown_timeout=shutdown_timeout, **server_options)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        if on_ready is not None:
            on_ready(bound_port(runner))
        await stop.wait()
    finally:
        await runner.cleanup()
