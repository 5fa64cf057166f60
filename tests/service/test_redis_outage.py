"""A real Redis outage: the gateway's own redis-server (not the shared one) is killed and comes back empty.

While Redis is away every API call that needs it is a legacy 503 and /api/ping says so; the jobs keep
running on the cluster. When an empty Redis comes back the watch loses its lease, relists and rebuilds
every record from the cluster's labels and annotations: nothing is lost.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis import asyncio as redis_asyncio
from redis.exceptions import RedisError

from tests.conftest import Gateway, wait_until
from tests.service.seed_bodies import minimal

USER = {"X-User": "alice"}
ADMIN = {"X-User": "ops"}


class PrivateRedis:
    """A redis-server on a free loopback port, without persistence, that a test may kill and restart."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: ./run test installs it (apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        client = redis_asyncio.Redis.from_url(self.url)
        try:
            for _ in range(200):
                try:
                    if await client.ping():
                        return
                except (OSError, RedisError):
                    pass
                await asyncio.sleep(0.02)
            pytest.fail(f"private redis-server on port {self.port} did not start")
        finally:
            await client.aclose()

    async def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            await self.process.wait()
            self.process = None


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


async def test_redis_outage_is_503_and_an_empty_redis_is_rebuilt(make_gateway: Any,
                                                                 private_redis: PrivateRedis) -> None:
    gw: Gateway = await make_gateway(redis={"url": private_redis.url}, auth={"mode": "none", "adminUsers": ["ops"]})
    gw.sim.controllers.set_default_scenario("hold")
    ids = []
    for name in ("survivor-a", "survivor-b"):
        response = await gw.client.post(gw.jobs_url(), json=minimal(name), headers=USER)
        assert response.status == 200
        ids.append((await response.json())["metadata"]["id"])

    await private_redis.kill()
    for method, path, body in (("GET", gw.jobs_url(), None), ("GET", f"{gw.jobs_url()}/{ids[0]}", None),
                               ("POST", gw.jobs_url(), minimal("during-outage")),
                               ("DELETE", f"{gw.jobs_url()}/{ids[0]}", None)):
        answer = await gw.client.request(method, path, json=body, headers=USER)
        assert answer.status == 503, (method, path, await answer.text())
        assert int(answer.headers["Retry-After"]) > 0
        error = await answer.json()
        assert error["code"] == 503 and error["reason"] == "ServiceUnavailable" and error["message"]
    async def ping_says_redis_is_down() -> bool:
        ping = await gw.client.get("/api/ping", headers=ADMIN)
        return ping.status == 503 and (await ping.json())["redis"]["reachable"] is False

    await wait_until(ping_says_redis_is_down)  # the next background read of Redis fails (half a second)

    await private_redis.start()  # back, and empty

    async def everything_back() -> bool:
        answer = await gw.client.get(gw.jobs_url(), headers=USER)
        if answer.status != 200:
            return False
        listing = await answer.json()
        return sorted(item["metadata"]["id"] for item in listing["items"]) == sorted(ids)

    await wait_until(everything_back)  # no request_relist(): the lost lease makes the watch relist
    duplicate = await gw.client.post(gw.jobs_url(), json=minimal("survivor-a"), headers=USER)
    assert duplicate.status == 409  # the name claims came back with the records
    await wait_until(lambda: _ready(gw))


async def _ready(gw: Gateway) -> bool:
    return (await gw.client.get("/api/ping")).status == 200
