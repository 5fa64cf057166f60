"""Webhook deliveries survive a SIGKILL: a gateway process (`clever-gateway serve --config`) with a hook
whose receiver answers 503, jobs driven through their phases, the gateway killed while deliveries are
pending and restarted with the same identity, the receiver healed, more jobs driven through. Every change
appended to the phases stream must have reached the receiver at least once, and each job's changes must
link up (previousPhase → phase) from its first status to its final phase: none lost. The deliveries seen
are printed (`pytest -s`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from redis import asyncio as redis_asyncio

from gateway.state.keys import Keys
from tests.conftest import PARTITION, RUNTIMES
from tests.redis_servers import free_port
from tests.service.seed_bodies import minimal
from tests.service.test_crash_drill import GatewayProcess
from tests.service.webhook_receiver import Receiver
from translators.naming import object_name

ALICE = {"X-User": "alice"}
SECRET = b"restart-secret"
IDENTITY = "webhook-gateway-0"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as made:
        yield made


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    made = Receiver(SECRET)
    await made.start()
    yield made
    await made.stop()


async def test_deliveries_survive_a_sigkill(kubesim: Any, redis_prefix: str, tmp_path: Path,
                                            redis_client: redis_asyncio.Redis, session: aiohttp.ClientSession,
                                            receiver: Receiver) -> None:
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
        "sync": {"leaseSeconds": 15, "relistBackoffSeconds": 0.1},
        "notifications": {"webhooks": [{"url": receiver.url("/hook"), "secret": SECRET.decode(), "timeoutSeconds": 2}],
                          "retryInitialSeconds": 0.2, "retryMaxSeconds": 0.5, "claimIdleSeconds": 30},
        "logging": {"level": "warning"},
    }))
    kubesim.controllers.set_default_scenario("hold")  # jobs run until told to finish
    receiver.answers["/hook"] = [503]  # down: every delivery stays pending
    first = GatewayProcess(config, port, tmp_path / "gateway.log")
    second = GatewayProcess(config, port, tmp_path / "gateway.log")
    stream = Keys(redis_prefix).phases
    jobs: list[str] = []
    names: dict[str, str] = {}

    async def create(gateway: GatewayProcess, name: str) -> None:
        async with session.post(f"{gateway.url}/api/v1alpha1/clusters/c1/partitions/{PARTITION}/tfjobs",
                                json=minimal(name), headers=ALICE) as answer:
            assert answer.status == 200, await answer.text()
            jobs.append(str((await answer.json())["metadata"]["id"]))
            names[jobs[-1]] = name

    def finish(job_ids: list[str]) -> None:
        for job_id in job_ids:
            kubesim.controllers.set_job_scenario(PARTITION, object_name(names[job_id], job_id), "succeed:after=0.5")

    try:
        await first.start(session)
        for n in range(5):
            await create(first, f"before-{n}")
        # pending and running of each job refused at least once
        await _until(lambda: _refused_at_least(receiver, 10), what="deliveries refused by the receiver")
        pending_at_kill = await _pending(redis_client, stream)
        await first.kill()
        killed_at = time.monotonic()
        finish(list(jobs))  # they finish while no gateway runs: the restarted one sees it at its relist
        receiver.answers["/hook"] = [200]
        await asyncio.sleep(1.0)
        await second.start(session)
        for n in range(3):
            await create(second, f"after-{n}")
        finish(jobs[5:])

        async def settled() -> bool:
            return await _all_succeeded(session, second, jobs) and await _pending(redis_client, stream) == 0

        await _until(settled, what="every job succeeded and every change delivered", timeout=60)
        appended = [str(entry_id) for entry_id, _ in await redis_client.xrange(stream)]
        delivered = receiver.delivered("/hook")
        print(f"\n[webhook restart] jobs={len(jobs)} appended={len(appended)} pending_at_kill={pending_at_kill} "
              f"attempts={len(receiver.deliveries)} delivered={len(delivered)} "
              f"seconds_after_kill={time.monotonic() - killed_at:.1f}")
        for d in sorted(delivered, key=lambda d: (d.event["id"], d.event["at"])):
            e = d.event
            print(f"  {e['id']} {e['previousPhase']!s:>10} -> {e['phase']:<10} at {e['at']} delivery {d.delivery_id}")

        assert pending_at_kill > 0
        assert all(d.signed_ok for d in receiver.deliveries)
        assert set(appended) <= {d.delivery_id for d in delivered}, "a change appended was never delivered"
        events = [d.event for d in delivered]
        for job_id in jobs:
            chain = _chain(events, job_id)
            assert chain[:1] == ["pending"] and chain[-1] == "succeeded", (job_id, chain)
    finally:
        await first.kill()
        await second.stop()


def _chain(events: list[dict[str, Any]], job_id: str) -> list[str]:
    by_previous = {e["previousPhase"]: e["phase"] for e in events if e["id"] == job_id}
    chain: list[str] = []
    current = None
    while current in by_previous and len(chain) <= len(by_previous):
        current = by_previous[current]
        chain.append(current)
    return chain


async def _refused_at_least(receiver: Receiver, count: int) -> bool:
    return sum(1 for d in receiver.deliveries if d.status >= 500) >= count


async def _pending(redis: redis_asyncio.Redis, stream: str) -> int:
    groups = await redis.xinfo_groups(stream) if await redis.exists(stream) else []
    return sum(int(g["pending"]) + int(g.get("lag") or 0) for g in groups)


async def _all_succeeded(session: aiohttp.ClientSession, gateway: GatewayProcess, jobs: list[str]) -> bool:
    async with session.get(f"{gateway.url}/api/v1alpha1/clusters/c1/partitions/{PARTITION}/tfjobs",
                           headers=ALICE) as answer:
        if answer.status != 200:
            return False
        phases = {item["metadata"]["id"]: item["status"]["phase"] for item in (await answer.json())["items"]}
    return all(phases.get(job_id) == "succeeded" for job_id in jobs)


async def _until(check: Any, *, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"{what}: not within {timeout}s")
