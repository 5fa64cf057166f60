"""Failover drills: the Redis master is killed (SIGKILL) while creates stream in; no acknowledged create is
lost and the gateway recovers without a restart.

- Sentinel: one master, one replica, three sentinels; the sentinels promote the replica.
- Cluster: three masters with a replica each; the master serving the partition's slot is killed and
  its replica takes over.

The Kubernetes cluster is down throughout the stream, so every create is queued: its record and outbox
entry exist only in Redis, and nothing could rebuild them from the cluster's labels. That they all
survive (records and outbox entries) shows that an acknowledged create is on the replica before the
client hears of it (WAIT, `redis.waitReplicas`). In the cluster drill the Kubernetes cluster then comes
back and every one of them lands. (Not in the Sentinel drill, only to keep it short: a job lock the
outbox took on the old master just before the kill may outlive the failover, and then holds that one
job back for the lock's time to live, up to 30 s.) Each test prints its
figures (`pytest -s`). Each drill has its own topology: killing a master changes it for good. (Fixtures that own servers come
before `make_gateway` in a signature, so that the gateway stops before its servers do.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import appkeys
from tests.conftest import Gateway, RedisMode, mode_of, wait_until
from tests.redis_servers import ClusterSet, RedisServer, SentinelSet
from tests.service.drills import CreateStream, count, until_all_visible
from tests.service.seed_bodies import minimal

ALICE = {"X-User": "alice"}
MakeGateway = Callable[..., Awaitable[Gateway]]
SECONDS_OF_CREATES_BEFORE_THE_KILL = 1.0
CREATES = 36  # at most, over the whole drill


@pytest.fixture
def own_sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    servers = SentinelSet(tmp_path / "sentinel")
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def own_redis_cluster(tmp_path: Path) -> Iterator[ClusterSet]:
    servers = ClusterSet(tmp_path / "cluster")
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


async def _drill(name: str, make_gateway: MakeGateway, mode: RedisMode, kill: Callable[[], RedisServer],
                 wait_failover: Callable[[RedisServer], Any], *, check_landing: bool) -> None:
    # Until the killed server is a replica again, every durable write waits out its WAIT: keep that short.
    gw = await make_gateway(redis={**mode.settings, "waitTimeoutMs": 100})
    gw.redis = mode.client
    gw.sim.controllers.set_default_scenario("hold")
    await wait_until(lambda: _listable(gw))  # the watch is live and Redis is current before the drill

    async def post(job_name: str) -> tuple[int, dict[str, Any] | None]:
        answer = await gw.client.post(gw.jobs_url(), json=minimal(job_name), headers=ALICE)
        return answer.status, (await answer.json() if answer.status == 200 else None)

    gw.sim.faults.down()  # every create is queued: it exists only in Redis
    stream = CreateStream(post, workers=4, limit=CREATES, pause_after_refusal=0.25)
    stream.start()
    started = time.monotonic()
    # Killed in the middle of the stream: after a second, or once a good part of it is acknowledged.
    await wait_until(lambda: _true(len(stream.acknowledged) >= CREATES // 3
                                   or time.monotonic() - started >= SECONDS_OF_CREATES_BEFORE_THE_KILL))
    killed_at = time.monotonic()
    victim = await asyncio.to_thread(kill)
    acknowledged_before_kill = len(stream.acknowledged)
    await asyncio.to_thread(wait_failover, victim)
    failover_seconds = time.monotonic() - killed_at
    # The killed server comes back (empty) and is made a replica of the new master: WAIT finds a replica
    # again instead of timing out on every write.
    await asyncio.to_thread(victim.start)

    # Recovery without a restart: the same gateway process accepts creates again.
    async def accepting() -> bool:
        return len(stream.acknowledged) > acknowledged_before_kill or stream.attempted >= CREATES

    await wait_until(accepting, timeout=30)
    await stream.stop()

    async def listed() -> list[dict[str, Any]] | None:
        answer = await gw.client.get(gw.jobs_url(), headers=ALICE)
        return (await answer.json())["items"] if answer.status == 200 else None

    seconds, items = await until_all_visible(listed, set(stream.acknowledged.values()), since=killed_at, timeout=30)
    figures = count(name, stream, items, seconds_to_visible=seconds,
                    acknowledged_before_kill=acknowledged_before_kill, failover_seconds=round(failover_seconds, 2))
    print(figures.report())
    assert figures.acknowledged > 0 and figures.found == figures.acknowledged, figures
    assert figures.duplicates == 0, figures
    assert all(item["status"]["phase"] == "queued" for item in items)
    after = await gw.client.post(gw.jobs_url(), json=minimal("after-the-failover"), headers=ALICE)
    assert after.status == 200, await after.text()  # the same process, not restarted, takes writes again
    stream.acknowledged["after-the-failover"] = (await after.json())["metadata"]["id"]

    # Their outbox entries survived too (the queue, in another slot, was written with WAIT as well).
    queued = {json.loads(fields["op"])["id"] for _, fields in await gw.redis.xrange(gw.key_names.outbox)}
    assert set(stream.acknowledged.values()) <= queued
    if not check_landing:
        return
    gw.sim.faults.up()  # the queued creates land: every acknowledged one ends up on the cluster

    async def all_landed() -> bool:
        answer = await gw.client.get(gw.jobs_url(), headers=ALICE)
        if answer.status != 200:
            return False
        phases = {i["metadata"]["id"]: i["status"]["phase"] for i in (await answer.json())["items"]}
        return all(phases.get(i) in ("pending", "running") for i in stream.acknowledged.values())

    await wait_until(all_landed, timeout=60)
    assert (await gw.client.get("/api/ping")).status == 200


async def _true(value: bool) -> bool:
    return value


async def _listable(gw: Gateway) -> bool:
    if not gw.app[appkeys.WATCHES].live("c1"):
        return False
    return (await gw.client.get(gw.jobs_url(), headers=ALICE)).status == 200


async def test_sentinel_failover_loses_no_acknowledged_create(own_sentinel_set: SentinelSet,
                                                              make_gateway: MakeGateway) -> None:
    mode = mode_of("sentinel", own_sentinel_set.settings())
    try:
        await _drill("sentinel-failover", make_gateway, mode, own_sentinel_set.kill_master,
                     lambda victim: own_sentinel_set.wait_failover(victim.port), check_landing=False)
    finally:
        await mode.close()


async def test_cluster_failover_loses_no_acknowledged_create(own_redis_cluster: ClusterSet,
                                                             make_gateway: MakeGateway, redis_prefix: str) -> None:
    mode = mode_of("cluster", own_redis_cluster.settings())
    partition_key = f"{redis_prefix}{{c1/clever}}:idx"

    def kill() -> RedisServer:
        victim = own_redis_cluster.master_of(partition_key)
        victim.kill()
        return victim

    try:
        await _drill("cluster-failover", make_gateway, mode, kill,
                     lambda victim: own_redis_cluster.wait_failover(partition_key, victim), check_landing=True)
    finally:
        await mode.close()
