"""The outbox is bounded: a queued operation older than `sync.outboxMaxAgeSeconds` is given up (the job says
so), a cluster that refuses the gateway's credentials ends it after `sync.outboxAuthAttempts` tries (counted
in a metric, not retried forever), and a queued operation reaches the cluster under the request id of the
client request that queued it."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from tests.conftest import PARTITION, Gateway, wait_until
from tests.service.seed_bodies import minimal
from translators.naming import object_name

USER = {"X-User": "alice"}


async def _job(gw: Gateway, job_id: str) -> dict[str, Any]:
    return dict(await (await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=USER)).json())


async def _phase(gw: Gateway, job_id: str, phase: str, reason: str | None = None) -> dict[str, Any] | None:
    job = await _job(gw, job_id)
    status = job["status"]
    return job if status["phase"] == phase and (reason is None or status.get("reason") == reason) else None


async def test_a_queued_create_expires_and_the_job_says_so(make_gateway: Any) -> None:
    from kubesim.store import TFJOBS

    gw: Gateway = await make_gateway(sync={"outboxMaxAgeSeconds": 1})
    gw.sim.faults.down()
    try:
        created = await (await gw.client.post(gw.jobs_url(), json=minimal("tooold"), headers=USER)).json()
        assert created["status"]["phase"] == "queued"
        job_id = created["metadata"]["id"]
        text = await (await gw.client.get("/metrics")).text()
        assert "clever_gateway_outbox_oldest_age_seconds" in text
        job = await wait_until(lambda: _phase(gw, job_id, "failed", "QueueExpired"), timeout=15)
    finally:
        gw.sim.faults.up()
    assert job["status"]["message"] == ("cluster c1 did not accept the create within 1 s "
                                        "(sync.outboxMaxAgeSeconds); it was given up")
    assert await gw.outbox_depth() == 0
    await asyncio.sleep(0.3)  # the cluster is back: nothing of the given-up create reaches it
    assert gw.sim.store.try_get(TFJOBS, PARTITION, object_name("tooold", job_id)) is None
    # The name is free again once the failed job is deleted, like any failed job.
    assert (await gw.client.delete(f"{gw.jobs_url()}/{job_id}", headers=USER)).status == 200


async def test_a_queued_delete_expires_and_the_job_asks_to_be_deleted_again(make_gateway: Any) -> None:
    from kubesim.store import TFJOBS

    gw: Gateway = await make_gateway(sync={"outboxMaxAgeSeconds": 1})
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("stays"), headers=USER)).json()
    job_id = created["metadata"]["id"]
    gw.sim.faults.down()
    try:
        deleted = await gw.client.delete(f"{gw.jobs_url()}/{job_id}", headers=USER)
        assert (await deleted.json())["status"]["reason"] == "DeletePending"
        job = await wait_until(lambda: _phase(gw, job_id, "terminating", "QueueExpired"), timeout=15)
    finally:
        gw.sim.faults.up()
    assert job["status"]["message"].endswith("the job may still exist on the cluster: delete it again")
    assert gw.sim.store.try_get(TFJOBS, PARTITION, object_name("stays", job_id)) is not None
    # The user deletes again, and this time the cluster is there.
    assert (await gw.client.delete(f"{gw.jobs_url()}/{job_id}", headers=USER)).status == 200

    async def gone() -> bool:
        return gw.sim.store.try_get(TFJOBS, PARTITION, object_name("stays", job_id)) is None

    await wait_until(gone)


async def test_a_cluster_refusing_the_gateways_credentials_ends_the_entry_after_the_bound(
        make_gateway: Any) -> None:
    gw: Gateway = await make_gateway(sync={"outboxAuthAttempts": 3})
    posts: list[str] = []

    def observe(request: web.Request) -> None:
        if request.method == "POST" and request.path.endswith("/tfjobs"):
            posts.append(request.path)

    gw.sim.server.on_request = observe
    gw.sim.faults.down()
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("badcreds"), headers=USER)).json()
    assert created["status"]["phase"] == "queued"
    job_id = created["metadata"]["id"]
    # The cluster comes back but no longer accepts the gateway's token.
    gw.sim.faults.fail_next(100, 401, method="POST", path="/tfjobs", reason="Unauthorized",
                            message="Unauthorized")
    gw.sim.faults.up()
    job = await wait_until(lambda: _phase(gw, job_id, "failed", "ClusterUnauthorized"), timeout=15)
    assert job["status"]["message"] == ("cluster c1 refused the gateway's credentials (401 Unauthorized) 3 times; "
                                        "the create was given up")
    assert len(posts) == 3  # the bound, not forever
    assert await gw.outbox_depth() == 0
    await asyncio.sleep(0.3)
    assert len(posts) == 3
    text = await (await gw.client.get("/metrics")).text()
    assert 'clever_gateway_cluster_auth_failures_total{cluster="c1",kind="unauthorized"} 3.0' in text


async def test_a_direct_create_refused_for_credentials_is_not_queued(gateway: Gateway) -> None:
    gw = gateway
    before = await gw.keys()
    gw.sim.faults.fail_next(1, 401, method="POST", path="/tfjobs", reason="Unauthorized")
    response = await gw.client.post(gw.jobs_url(), json=minimal("direct401"), headers=USER)
    body = await response.json()
    assert (response.status, body["reason"]) == (502, "BadGateway")
    assert body["message"] == "cluster c1: the cluster refused the gateway's credentials"
    assert await gw.keys() == before  # nothing kept, nothing queued


async def test_a_queued_create_carries_its_request_id_to_the_cluster(gateway: Gateway) -> None:
    gw = gateway
    seen: list[str | None] = []

    def observe(request: web.Request) -> None:
        if request.method == "POST" and request.path.endswith("/tfjobs"):
            seen.append(request.headers.get("X-Request-ID"))

    gw.sim.server.on_request = observe
    gw.sim.faults.down()
    try:
        response = await gw.client.post(gw.jobs_url(), json=minimal("later"),
                                        headers={**USER, "X-Request-Id": "queued-by-rid-7"})
        created = await response.json()
        assert created["status"]["phase"] == "queued"
    finally:
        gw.sim.faults.up()

    async def landed() -> bool:
        return (await _job(gw, created["metadata"]["id"]))["status"]["phase"] != "queued"

    await wait_until(landed)
    assert seen and set(seen) == {"queued-by-rid-7"}
