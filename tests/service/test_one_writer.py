"""One writer per job: PATCH (in place or recreate), DELETE and the outbox, interleaved on one job.

The invariant (issue 9): a DELETE that answered 200 means the job never runs again — no record, not in
the list, no object on the cluster, now or a moment later; a recreate that loses the race to a DELETE
is undone and answers 404 or 409, never 200 with the job gone; nothing answers 5xx.

Each seed picks the order and the gaps between the requests and the cluster's latency, so the requests
overlap at different points (before the recreate deleted the old object, while it waits for it to go,
after the new create); the seeds are fixed, so a failure names a reproducible interleaving.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from aiohttp import ClientResponse

from kubesim.store import TFJOBS
from tests.conftest import Gateway, wait_until
from tests.service.seed_bodies import minimal
from translators.labels import LABEL_JOB_ID

USER = {"X-User": "alice"}
SEEDS = 12


def objects_of(gw: Gateway, job_id: str) -> list[dict[str, Any]]:
    """The cluster objects (TFJobs) of one Clever job, not being deleted."""
    return [o for o in gw.sim.store.list(TFJOBS)[0]
            if (o["metadata"].get("labels") or {}).get(LABEL_JOB_ID) == job_id
            and not o["metadata"].get("deletionTimestamp")]


async def finished_job(gw: Gateway, name: str) -> str:
    """A job that ran to `succeeded` (so a shape change may recreate it)."""
    created = await (await gw.client.post(gw.jobs_url(), json=minimal(name), headers=USER)).json()
    job_id = str(created["metadata"]["id"])

    async def succeeded() -> bool:
        job = await (await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=USER)).json()
        return bool(job["status"]["phase"] == "succeeded")

    await wait_until(succeeded, timeout=15)
    return job_id


async def later(gw: Gateway, delay: float, method: str, url: str, **kwargs: Any) -> ClientResponse:
    """One request after `delay` seconds, its body read."""
    await asyncio.sleep(delay)
    response: ClientResponse = await gw.client.request(method, url, headers=USER, **kwargs)
    await response.read()
    return response


async def assert_deleted_for_good(gw: Gateway, job_id: str) -> None:
    """No record, not listed, no object on the cluster; and still so a moment later."""
    async def gone() -> bool:
        return not objects_of(gw, job_id) and not await gw.redis.exists(gw.job_key(job_id))

    await wait_until(gone, timeout=10)
    for _ in range(2):
        response = await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=USER)
        assert response.status == 404, await response.text()
        listing = await (await gw.client.get(gw.jobs_url(), headers=USER)).json()
        assert job_id not in [item["metadata"]["id"] for item in listing["items"]]
        assert not objects_of(gw, job_id), "a deleted job's object is on the cluster again"
        await asyncio.sleep(0.5)


async def test_recreating_patch_racing_a_delete(gateway: Gateway) -> None:
    gw = gateway
    outcomes: list[tuple[int, int]] = []
    for seed in range(SEEDS):
        rng = random.Random(seed)
        job_id = await finished_job(gw, f"race-{seed}")
        url = f"{gw.jobs_url()}/{job_id}"
        gw.sim.faults.latency(rng.choice((0.0, 0.002, 0.01, 0.03)))
        patch_delay, delete_delay = rng.uniform(0, 0.1), rng.uniform(0, 0.1)
        patch, delete = await asyncio.gather(
            later(gw, patch_delay, "PATCH", url, json={"cpu": "2"}),
            later(gw, delete_delay, "DELETE", url))
        gw.sim.faults.latency(0.0)
        outcomes.append((patch.status, delete.status))
        assert patch.status in (200, 404, 409), (seed, patch.status, await patch.text())
        assert delete.status == 200, (seed, delete.status, await delete.text())
        await assert_deleted_for_good(gw, job_id)
    print(f"(patch, delete) answers per seed: {outcomes}")
    # Both orders happened: the PATCH won (200, then deleted) and lost (404) at least once each.
    assert {p for p, _ in outcomes} >= {200, 404}, outcomes


async def test_in_place_patch_racing_a_delete(gateway: Gateway) -> None:
    gw = gateway
    gw.sim.controllers.set_default_scenario("hold")
    for seed in range(SEEDS // 2):
        rng = random.Random(100 + seed)
        created = await (await gw.client.post(gw.jobs_url(), json=minimal(f"inplace-{seed}"), headers=USER)).json()
        job_id = created["metadata"]["id"]
        url = f"{gw.jobs_url()}/{job_id}"
        patch, delete = await asyncio.gather(
            later(gw, rng.uniform(0, 0.02), "PATCH", url, json={"description": "x"}),
            later(gw, rng.uniform(0, 0.02), "DELETE", url))
        assert patch.status in (200, 404), (seed, patch.status, await patch.text())
        assert delete.status == 200, (seed, delete.status, await delete.text())
        await assert_deleted_for_good(gw, job_id)


async def test_queued_create_landing_while_deleted(gateway: Gateway) -> None:
    """The outbox's create and a DELETE, with the cluster coming back at a random moment around it."""
    gw = gateway
    gw.sim.controllers.set_default_scenario("hold")
    for seed in range(SEEDS // 2):
        rng = random.Random(200 + seed)
        gw.sim.faults.down()
        created = await (await gw.client.post(gw.jobs_url(), json=minimal(f"queued-{seed}"), headers=USER)).json()
        assert created["status"]["phase"] == "queued", created
        job_id = created["metadata"]["id"]
        url = f"{gw.jobs_url()}/{job_id}"

        async def cluster_back(delay: float) -> None:
            await asyncio.sleep(delay)
            gw.sim.faults.up()

        _, delete = await asyncio.gather(
            cluster_back(rng.uniform(0, 0.15)),
            later(gw, rng.uniform(0, 0.15), "DELETE", url))
        assert delete.status == 200, (seed, delete.status, await delete.text())
        await wait_until(lambda: _outbox_empty(gw), timeout=10)
        await assert_deleted_for_good(gw, job_id)


async def _outbox_empty(gw: Gateway) -> bool:
    return await gw.outbox_depth() == 0
