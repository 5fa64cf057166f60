"""A gateway (with KubeSim and the real Redis) on an event loop in a thread of its own, for tests that
drive it from plain sockets or from libraries that are not asyncio (Hypothesis, schemathesis)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

from aiohttp import web
from redis import asyncio as redis_asyncio

from gateway.app import create_app, server_options
from gateway.config import load_settings
from gateway.web.server import GatewayRunner, bound_port
from kubesim.store import TFJOBS
from kubesim.testing import KubeSim
from tests.conftest import PARTITION, REDIS_URL, RUNTIMES, deep_merge
from tests.service import rawhttp
from translators.labels import LABEL_JOB_ID

BODY_TIMEOUT = 0.3


class LiveGateway:
    """KubeSim + gateway on an event loop in a background thread; `run(coro)` executes there."""

    def __init__(self, **overrides: Any) -> None:
        self._overrides = overrides
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-gateway", daemon=True)
        self.prefix = f"test:{uuid.uuid4().hex}:"
        self.port = 0
        self.ids: list[str] = []
        self._sim: Any = None
        self._runner: GatewayRunner | None = None
        self.redis: redis_asyncio.Redis | None = None

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        """Run a coroutine on the gateway's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        """Start the thread, the simulator and the gateway."""
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        self._sim = KubeSim(namespaces=("default", PARTITION), time_scale=0.01, default_scenario="hold")
        await self._sim.__aenter__()
        sim = self._sim
        config = load_settings(environ={}, base=deep_merge({
            "listen": {"host": "127.0.0.1", "port": 0},
            "redis": {"url": REDIS_URL, "keyPrefix": self.prefix},
            "auth": {"mode": "none", "adminUsers": ["admin"]},
            "clusters": [{"id": "c1", "server": sim.url, "token": sim.token, "caFile": sim.ca_file,
                          "runtimes": RUNTIMES, "requestTimeoutSeconds": 5}],
            "limits": {"bodyReadTimeoutSeconds": BODY_TIMEOUT, "maxBodyBytes": 64 * 1024,
                       "writesPerUserPerMinute": 0},
            "sync": {"relistBackoffSeconds": 0.05, "leaseSeconds": 1.5, "outboxRetrySeconds": 0.05},
        }, self._overrides))
        self._runner = GatewayRunner(create_app(config), access_log=None, **server_options(config))
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = bound_port(self._runner)
        self.redis = redis_asyncio.Redis.from_url(REDIS_URL, decode_responses=True)

    def stop(self) -> None:
        """Stop everything and delete the test's keys."""
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._sim is not None:
            await self._sim.__aexit__(None, None, None)
        if self.redis is not None:
            keys = [k async for k in self.redis.scan_iter(match=self.prefix + "*", count=1000)]
            if keys:
                await self.redis.delete(*keys)
            await self.redis.aclose()

    def send(self, pieces: list[bytes], *, pause: float = 0.0, head_only: bool = False) -> rawhttp.RawResponse | None:
        """One raw request to the gateway."""
        return rawhttp.send_blocking("127.0.0.1", self.port, pieces, pause=pause, head_only=head_only,
                                     timeout=BODY_TIMEOUT + 10)

    def cluster_job_ids(self) -> set[str]:
        """Clever ids of the managed TFJobs on the cluster (not being deleted)."""
        async def read() -> set[str]:
            return {str((o["metadata"].get("labels") or {}).get(LABEL_JOB_ID))
                    for o in self._sim.store.list(TFJOBS)[0] if not o["metadata"].get("deletionTimestamp")}
        return set(self.run(read()))


