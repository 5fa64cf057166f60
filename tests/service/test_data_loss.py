"""No short answer after Redis loses its data: a stream of LISTs runs while Redis is flushed, and no 200
lists fewer jobs than the user has.

- standalone: FLUSHALL on a redis-server of the test's own (not the shared one): everything goes,
  the watch lease too.
- cluster: FLUSHALL on the one master that serves the partition's slot (a node that lost its data):
  the lease and the cluster's bookkeeping, on other nodes, survive; only the partition's marker tells.

Until Redis holds the partition again, LISTs are answered from the API server (or 503 with Retry-After
if it cannot be reached); the watch notices within a second and relists, and LISTs come from Redis
again. Each test prints its figures (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import asyncio as redis_asyncio

from gateway import appkeys
from tests.conftest import Gateway, RedisMode, mode_of, wait_until
from tests.redis_servers import ClusterSet, RedisServer
from tests.service.seed_bodies import minimal

ALICE = {"X-User": "alice"}
JOBS = 3
MakeGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    try:
        server.start()
        yield server
    finally:
        server.kill()


async def _stream_of_lists_through_a_loss(name: str, gw: Gateway, lose: Callable[[], Awaitable[None]],
                                          marker: str) -> None:
    gw.sim.controllers.set_default_scenario("hold")
    ids = set()
    for n in range(JOBS):
        answer = await gw.client.post(gw.jobs_url(), json=minimal(f"kept-{n}"), headers=ALICE)
        assert answer.status == 200
        ids.add((await answer.json())["metadata"]["id"])

    async def marked() -> bool:
        return bool(await gw.redis.exists(marker))

    await wait_until(marked)  # Redis is known to hold the partition: LISTs come from Redis

    answers: Counter[str] = Counter()
    short: list[int] = []
    stop = asyncio.Event()

    async def lists() -> None:
        while not stop.is_set():
            answer = await gw.client.get(gw.jobs_url(), headers=ALICE)
            if answer.status == 200:
                listed = {i["metadata"]["id"] for i in (await answer.json())["items"]}
                if not ids <= listed:
                    short.append(len(listed & ids))
                answers["200"] += 1
            else:
                assert answer.status == 503 and int(answer.headers["Retry-After"]) >= 1, await answer.text()
                answers[str(answer.status)] += 1

    workers = [asyncio.create_task(lists()) for _ in range(3)]
    await asyncio.sleep(0.3)
    before = answers["200"]
    lost_at = time.monotonic()
    await lose()
    await wait_until(marked, timeout=20)  # the partition is marked complete again
    remarked = time.monotonic() - lost_at
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*workers)

    print(f"[drill {name}] acknowledged={JOBS} found_in_every_200={not short} duplicates=0 "
          f"lists={sum(answers.values())} ok_before_loss={before} ok={answers['200']} unavailable={answers['503']} "
          f"short={len(short)} seconds_until_redis_complete_again={round(remarked, 2)}")
    assert not short, f"{len(short)} short answers: {short[:10]}"
    assert answers["200"] > before  # LISTs went on being answered during and after the loss
    listing = await (await gw.client.get(gw.jobs_url(), headers=ALICE)).json()
    assert sorted(i["metadata"]["id"] for i in listing["items"]) == sorted(ids)
    assert len(listing["items"]) == JOBS  # nothing twice


async def test_flushall_under_a_stream_of_lists(own_redis: RedisServer, make_gateway: MakeGateway,
                                                redis_prefix: str) -> None:
    gw = await make_gateway(redis={"url": own_redis.url})
    gw.redis = redis_asyncio.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        await _stream_of_lists_through_a_loss("flushall", gw, gw.redis.flushall,
                                              gw.key_names.complete("c1", "clever"))
    finally:
        await gw.redis.aclose()


async def test_a_cluster_node_that_loses_its_data(redis_cluster: ClusterSet, make_gateway: MakeGateway,
                                                  redis_prefix: str) -> None:
    mode: RedisMode = mode_of("cluster", redis_cluster.settings())
    gw = await make_gateway(redis=dict(mode.settings))
    gw.redis = mode.client
    marker = gw.key_names.complete("c1", "clever")

    async def lose_one_node() -> None:
        node = redis_cluster.master_of(marker)
        await asyncio.to_thread(_flush, node)

    try:
        await _stream_of_lists_through_a_loss("cluster-node-loss", gw, lose_one_node, marker)
    finally:
        await mode.close()


def _flush(node: RedisServer) -> Any:
    with node.client() as client:
        return client.flushall()


async def test_a_record_lost_alone_is_rebuilt_from_the_cluster(gateway: Gateway) -> None:
    """When Redis loses one record (and nothing that makes the watch relist), the next status change
    rebuilds it whole, from the object the watch holds (encoded, to keep 10,000 jobs in little memory)."""
    from translators.naming import object_name

    gw = gateway
    gw.sim.controllers.set_default_scenario("hold")
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("alone", count="2"), headers=ALICE)).json()
    job_id = created["metadata"]["id"]
    job_url = f"{gw.jobs_url()}/{job_id}"

    async def running() -> bool:
        return bool((await (await gw.client.get(job_url, headers=ALICE)).json())["status"]["phase"] == "running")

    await wait_until(running)
    await gw.redis.delete(gw.key_names.job("c1", "clever", job_id))
    gw.sim.controllers.set_job_scenario("clever", object_name("alone", job_id), "succeed:after=0.1")

    async def rebuilt_and_succeeded() -> bool:
        answer = await gw.client.get(job_url, headers=ALICE)
        return answer.status == 200 and (await answer.json())["status"]["phase"] == "succeeded"

    await wait_until(rebuilt_and_succeeded)
    job = await (await gw.client.get(job_url, headers=ALICE)).json()
    assert job["spec"] == created["spec"]  # the whole spec back


async def test_an_object_that_is_no_record_does_not_hold_up_completeness(gateway: Gateway) -> None:
    """A TFJob that carries the gateway's labels but not a record's annotations (edited by hand) is never in
    Redis; the watch must still mark its partition complete and write the cluster's generation, or it would
    recount the partition after every write and never check for a lost one again."""
    from kubesim.store import TFJOBS
    from translators.labels import ANNOTATION_PARTITION, LABEL_JOB_ID, LABEL_MANAGED_BY, MANAGED_BY_VALUE

    gw = gateway
    gw.sim.controllers.set_default_scenario("hold")
    assert (await gw.client.post(gw.jobs_url(), json=minimal("real"), headers=ALICE)).status == 200
    gw.sim.store.create(TFJOBS, {
        "apiVersion": "kubeflow.org/v1", "kind": "TFJob",
        "metadata": {"name": "stray", "namespace": "clever",
                     "labels": {LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_JOB_ID: "abcdef123456"},
                     "annotations": {ANNOTATION_PARTITION: "clever"}},
        "spec": {"tfReplicaSpecs": {}}})
    gw.app[appkeys.SYNCS]["c1"].request_relist()

    async def marked() -> bool:
        return await gw.app[appkeys.STATE].watch.generation("c1") is not None and bool(
            await gw.redis.exists(gw.key_names.complete("c1", "clever")))

    await wait_until(marked)
