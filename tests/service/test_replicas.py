"""Two gateway replicas on one Redis and one cluster: when one goes away, the other takes over its watch
and the outbox entries it had read but not finished, so a queued job still lands and its status moves."""

from __future__ import annotations

from typing import Any

from gateway import appkeys
from tests.conftest import PARTITION, Gateway, wait_until
from tests.service.seed_bodies import minimal
from translators.naming import object_name

USER = {"X-User": "alice"}
FAST_TAKEOVER = {"sync": {"leaseSeconds": 1.0, "outboxClaimIdleSeconds": 0.5}}


async def test_the_surviving_replica_takes_over_watch_and_outbox(make_gateway: Any) -> None:
    first: Gateway = await make_gateway(**FAST_TAKEOVER)
    await wait_until(lambda: _leading(first))
    first.sim.controllers.set_default_scenario("hold")
    first.sim.faults.down()
    try:
        created = await (await first.client.post(first.jobs_url(), json=minimal("handover"), headers=USER)).json()
        assert created["status"]["phase"] == "queued"
        job_url = f"{first.jobs_url()}/{created['metadata']['id']}"
        # The first replica's outbox has read the entry (and failed to deliver it)...
        await wait_until(lambda: _holds_pending(first))
        second: Gateway = await make_gateway(**FAST_TAKEOVER)
        assert not second.app[appkeys.SYNCS]["c1"].leading  # one watcher per cluster
        # ...and goes away with it unfinished.
        await first.client.close()
    finally:
        first.sim.faults.up()

    async def running_via_second() -> bool:
        job = await (await second.client.get(job_url, headers=USER)).json()
        return bool(job["status"]["phase"] == "running")

    await wait_until(running_via_second)  # delivered by the second's outbox, status from its watch
    assert second.app[appkeys.SYNCS]["c1"].leading
    assert not await _holds_pending(second)  # the entry was claimed, delivered and acknowledged


async def _leading(gw: Gateway) -> bool:
    return bool(gw.app[appkeys.SYNCS]["c1"].leading)


async def _holds_pending(gw: Gateway) -> bool:
    """This replica's outbox consumer holds an entry it read but has not acknowledged."""
    consumer = gw.app[appkeys.OUTBOX].consumer
    summary = await gw.redis.xpending(gw.key_names.outbox, "workers")
    return any(c["name"] == consumer and int(c["pending"]) > 0 for c in summary.get("consumers") or [])


async def test_a_replica_serves_its_cached_list_only_while_no_replica_changed_the_partition(
        make_gateway: Any) -> None:
    """Each replica keeps the LIST answers it gave; a change made through another replica, or by the
    watch, makes the next LIST read Redis again, at once (no waiting for anything to expire)."""
    first: Gateway = await make_gateway()
    await wait_until(lambda: _leading(first))
    second: Gateway = await make_gateway()

    async def second_trusts_redis() -> bool:  # it reads the first's heartbeat (else it asks the cluster)
        return second.app[appkeys.WATCHES].live("c1")

    await wait_until(second_trusts_redis)
    first.sim.controllers.set_default_scenario("hold")
    created = await (await first.client.post(first.jobs_url(), json=minimal("cached"), headers=USER)).json()
    job_id = created["metadata"]["id"]
    cache = second.app[appkeys.SERVICE].list_cache

    async def listed() -> dict[str, Any]:
        answer = await second.client.get(second.jobs_url(), headers=USER)
        assert answer.status == 200
        items: list[dict[str, Any]] = (await answer.json())["items"]
        return {item["metadata"]["id"]: item for item in items}

    async def running() -> bool:
        return bool((await listed())[job_id]["status"]["phase"] == "running")

    await wait_until(running)
    hits = cache.hits
    assert (await listed())[job_id]["status"]["phase"] == "running"
    assert cache.hits == hits + 1  # the same answer again, from the cache
    # A PATCH through the other replica: the very next LIST here shows it.
    patched = await first.client.patch(f"{first.jobs_url()}/{job_id}", json={"description": "changed"},
                                       headers=USER)
    assert patched.status == 200
    assert (await listed())[job_id]["spec"]["description"] == "changed"
    # The watch (held by the first replica) sees the job end: this replica's LIST shows it.
    first.sim.controllers.set_job_scenario(PARTITION, object_name("cached", job_id), "succeed:after=0.2")

    async def succeeded() -> bool:
        return bool((await listed())[job_id]["status"]["phase"] == "succeeded")

    await wait_until(succeeded)
    another = await (await first.client.post(first.jobs_url(), json=minimal("second"), headers=USER)).json()
    assert set(await listed()) == {job_id, another["metadata"]["id"]}
    deleted = await first.client.delete(f"{first.jobs_url()}/{job_id}", headers=USER)
    assert deleted.status == 200
    assert set(await listed()) == {another["metadata"]["id"]}
