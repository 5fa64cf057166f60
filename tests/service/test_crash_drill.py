"""The crash drill: a gateway process (`clever-gateway serve --config`) that holds the watch lease is killed
with SIGKILL after a second of concurrent creates, and restarted at once with the same identity
(`replicaId`, the pod name in Kubernetes).

The restarted process takes its own lease back at once (not after `sync.leaseSeconds`, 15 s here, the
default) and relists, so the creates the dead process made on the cluster but had not recorded appear
within a second or two of the restart (of the new process answering: starting Python takes seconds on a
busy machine, and is reported apart). Counted: acknowledged creates, how many are found afterwards,
duplicates (the same name or id twice, in the list or on the cluster), creates found that were never
acknowledged, and the time until every job on the cluster is listed. The figures are printed
(`pytest -s`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from redis import asyncio as redis_asyncio

from tests.conftest import PARTITION, RUNTIMES
from tests.redis_servers import free_port
from tests.service.drills import CreateStream, count, until_all_visible
from tests.service.seed_bodies import minimal
from translators.labels import ANNOTATION_NAME, job_id_of

ALICE = {"X-User": "alice"}
IDENTITY = "drill-gateway-0"
LEASE_SECONDS = 15.0  # the default: what a replica that came back had to wait for
CREATES = 100
SECONDS_OF_CREATES_BEFORE_THE_KILL = 1.0


class GatewayProcess:
    """`clever-gateway serve --config FILE` as a child process."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config = config
        self.port = port
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, session: aiohttp.ClientSession) -> None:
        binary = Path(sys.executable).parent / "clever-gateway"
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                str(binary), "serve", "--config", str(self.config), stdout=out, stderr=out,
                env={k: v for k, v in os.environ.items() if not k.startswith("CLEVER_GATEWAY")})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{self.url}/healthz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if self.process.returncode is not None:
                pytest.fail(f"the gateway exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            await asyncio.sleep(0.05)
        pytest.fail("the gateway did not start")

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=15)
            except TimeoutError:
                await self.kill()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as made:
        yield made


async def test_a_killed_leader_restarted_with_its_identity(kubesim: Any, redis_prefix: str, tmp_path: Path,
                                                           redis_client: redis_asyncio.Redis,
                                                           session: aiohttp.ClientSession) -> None:
    from kubesim.store import TFJOBS
    from tests.conftest import REDIS_URL

    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "replicaId": IDENTITY,
        "listen": {"host": "127.0.0.1", "port": port},
        "redis": {"url": REDIS_URL, "keyPrefix": redis_prefix},
        "auth": {"mode": "none"},
        "clusters": [{"id": "c1", "server": kubesim.url, "token": kubesim.token, "caFile": kubesim.ca_file,
                      "runtimes": RUNTIMES, "requestTimeoutSeconds": 5}],
        "limits": {"writesPerUserPerMinute": 0},
        "sync": {"leaseSeconds": LEASE_SECONDS, "relistBackoffSeconds": 0.1},
        "logging": {"level": "warning"},
    }))
    kubesim.controllers.set_default_scenario("hold")
    lease_key = f"{redis_prefix}{{lease:watch:c1}}"
    gateway = GatewayProcess(config, port, tmp_path / "gateway.log")
    await gateway.start(session)
    restarted = GatewayProcess(config, port, tmp_path / "gateway.log")
    try:
        await _wait_for(lambda: _leads(redis_client, lease_key), what="first leadership")
        first_holder = await redis_client.get(lease_key)

        async def post(name: str) -> tuple[int, dict[str, Any] | None]:
            async with session.post(f"{gateway.url}/api/v1alpha1/clusters/c1/partitions/{PARTITION}/tfjobs",
                                    json=minimal(name), headers=ALICE) as answer:
                return answer.status, (await answer.json() if answer.status == 200 else None)

        stream = CreateStream(post, workers=4, limit=CREATES)
        stream.start()
        await asyncio.sleep(SECONDS_OF_CREATES_BEFORE_THE_KILL)
        await gateway.kill()
        killed_at = time.monotonic()
        await stream.stop()
        on_cluster = {_job_id(obj) for obj in kubesim.store.list(TFJOBS, PARTITION)[0]}
        recorded = set(await redis_client.zrange(f"{redis_prefix}{{c1/{PARTITION}}}:idx", 0, -1))
        unrecorded = on_cluster - recorded  # created by the dead process, never stored

        spawned_at = time.monotonic()
        await restarted.start(session)
        restarted_at = time.monotonic()  # the process answers (Python's start-up is seconds on a busy box)
        await _wait_for(lambda: _leads(redis_client, lease_key, not_by=first_holder), what="lease taken back",
                        timeout=LEASE_SECONDS)
        lease_back = time.monotonic() - restarted_at

        async def listed() -> list[dict[str, Any]] | None:
            async with session.get(f"{restarted.url}/api/v1alpha1/clusters/c1/partitions/{PARTITION}/tfjobs",
                                   headers=ALICE) as answer:
                return (await answer.json())["items"] if answer.status == 200 else None

        seconds, items = await until_all_visible(listed, on_cluster | set(stream.acknowledged.values()),
                                                 since=restarted_at, timeout=30)
        names_on_cluster = Counter(obj["metadata"]["annotations"][ANNOTATION_NAME]
                                   for obj in kubesim.store.list(TFJOBS, PARTITION)[0])
        figures = count("sigkill-restart", stream, items, seconds_to_visible=seconds,
                        attempted=stream.attempted, on_cluster=len(on_cluster), unrecorded_at_kill=len(unrecorded),
                        process_start_seconds=round(restarted_at - spawned_at, 2),
                        lease_back_after_start=round(lease_back, 2),
                        seconds_since_kill=None if seconds is None else round(seconds + restarted_at - killed_at, 2))
        print(figures.report())
        assert figures.acknowledged > 0 and figures.found == figures.acknowledged, figures
        assert figures.duplicates == 0 and max(names_on_cluster.values()) == 1, figures
        assert {str(i["metadata"]["id"]) for i in items} == on_cluster | set(stream.acknowledged.values())
        # Taken back at once: everything visible within seconds of the new process answering, where
        # waiting for the dead process's lease to lapse would take up to LEASE_SECONDS.
        assert seconds is not None and seconds < 5 and lease_back < 2, figures
    finally:
        await gateway.kill()
        await restarted.stop()


def _job_id(obj: dict[str, Any]) -> str:
    return str(job_id_of(obj))


async def _leads(redis: redis_asyncio.Redis, key: str, *, not_by: str | None = None) -> bool:
    holder = await redis.get(key)
    return bool(holder and holder.startswith(f"{IDENTITY} ") and holder != not_by)


async def _wait_for(check: Any, *, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"{what}: not within {timeout}s")
