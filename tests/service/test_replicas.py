"""Two gateway replicas on one Redis and one cluster: when one goes away, the other takes over its watch
and the outbox entries it had read but not finished, so a queued job still lands and its status moves."""

from __future__ import annotations

from typing import Any

from gateway import appkeys
from tests.conftest import Gateway, wait_until
from tests.service.seed_bodies import minimal

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
