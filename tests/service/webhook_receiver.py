"""A webhook receiver on loopback for the webhook tests: a real aiohttp server that records every request.

`Receiver(secret)`: `await start()` / `await stop()`; `url(path)`; every POST is recorded as a `Delivery`
(path, the delivery id header, the raw body, whether its signature verified, the status answered). The
answer is chosen per path by `answers[path]` (a list of statuses consumed one per request, the last one
repeated; default 200); `hang` paths never answer (a dead receiver that accepts connections).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Delivery:
    path: str
    delivery_id: str
    body: bytes
    signed_ok: bool
    status: int

    @property
    def event(self) -> dict[str, Any]:
        decoded: dict[str, Any] = orjson.loads(self.body)
        return decoded


@dataclass
class Receiver:
    secret: bytes
    answers: dict[str, list[int]] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    deliveries: list[Delivery] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def delivered(self, path: str) -> list[Delivery]:
        """The requests to `path` that were answered 2xx."""
        return [d for d in self.deliveries if d.path == path and 200 <= d.status < 300]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        signed_ok = hmac.compare_digest(expected, request.headers.get("X-Clever-Signature", ""))
        if request.path in self.hang:
            await asyncio.Event().wait()
        queue = self.answers.get(request.path) or [200]
        status = queue.pop(0) if len(queue) > 1 else queue[0]
        self.deliveries.append(Delivery(request.path, request.headers.get("X-Clever-Delivery", ""), body,
                                        signed_ok, status))
        return web.Response(status=status, text="ok" if status < 300 else "no")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server: Any = site._server  # aiohttp has no public accessor for the bound port
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
