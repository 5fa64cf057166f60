"""Cluster failures injected with KubeSim faults: mapped legacy errors, nothing kept for 4xx,
queued in the outbox (phase `queued`) for 5xx/unreachable and landed when the cluster is back."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import PARTITION, Gateway, redis_is_complete, wait_until
from tests.service.seed_bodies import minimal
from translators.naming import object_name

USER = {"X-User": "alice"}


@pytest.mark.parametrize(("status", "reason", "expected_status", "expected_reason"), [
    (422, "Invalid", 400, "Invalid"),
    (403, "Forbidden", 403, "Forbidden"),
    (409, "AlreadyExists", 409, "Conflict"),
    (400, "BadRequest", 400, "BadRequest"),
])
async def test_cluster_4xx_is_mapped_and_nothing_is_kept(gateway: Gateway, status: int, reason: str,
                                                         expected_status: int, expected_reason: str) -> None:
    gw = gateway
    before = await gw.keys()
    gw.sim.faults.fail_next(1, status, method="POST", path="/tfjobs", reason=reason)
    response = await gw.client.post(gw.jobs_url(), json=minimal("refused"), headers=USER)
    assert response.status == expected_status, await response.text()
    error = await response.json()
    assert error["reason"] == expected_reason
    assert error["message"].startswith("cluster c1: ")
    assert error["details"]["requestId"]
    assert error["details"]["clusterStatus"]["code"] == status
    if status == 422:
        assert error["details"]["fields"]
    assert await gw.keys() == before
    # The name claim was released: the same name can be created now.
    again = await gw.client.post(gw.jobs_url(), json=minimal("refused"), headers=USER)
    assert again.status == 200


async def test_transient_500_is_retried_transparently(gateway: Gateway) -> None:
    gateway.sim.faults.fail_next(1, 500, method="POST", path="/tfjobs")
    response = await gateway.client.post(gateway.jobs_url(), json=minimal("retried"), headers=USER)
    assert response.status == 200
    assert (await response.json())["status"]["phase"] != "queued"


async def _lands(gw: Gateway, job_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        job = await (await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=USER)).json()
        return job if job["status"]["phase"] not in ("queued",) else None

    return await wait_until(check)


async def test_persistent_5xx_queues_the_create_until_it_lands(gateway: Gateway) -> None:
    from kubesim.store import TFJOBS

    gw = gateway
    gw.sim.faults.fail_next(4, 500, method="POST", path="/tfjobs")
    response = await gw.client.post(gw.jobs_url(), json=minimal("queued5xx"), headers=USER)
    assert response.status == 200
    created = await response.json()
    assert created["status"]["phase"] == "queued"
    await _lands(gw, created["metadata"]["id"])
    assert gw.sim.store.get(TFJOBS, PARTITION, object_name("queued5xx", created["metadata"]["id"]))


async def test_cluster_down_queues_create_and_delete(gateway: Gateway) -> None:
    from kubesim.store import TFJOBS

    gw = gateway
    await wait_until(lambda: redis_is_complete(gw))  # else a LIST while the cluster is down is a 503
    gw.sim.faults.down()
    try:
        response = await gw.client.post(gw.jobs_url(), json=minimal("whiledown"), headers=USER)
        assert response.status == 200
        created = await response.json()
        job_id = created["metadata"]["id"]
        assert created["status"]["phase"] == "queued"
        assert any(k.startswith("outbox-entry:") for k in await gw.keys())
        listed = await (await gw.client.get(gw.jobs_url(), headers=USER)).json()
        assert [i["status"]["phase"] for i in listed["items"]] == ["queued"]
        # Changing a job that has not reached the cluster is refused, clearly.
        patch = await gw.client.patch(f"{gw.jobs_url()}/{job_id}", json={"description": "x"}, headers=USER)
        assert patch.status == 409
    finally:
        gw.sim.faults.up()
    await _lands(gw, job_id)
    name = object_name("whiledown", job_id)
    assert gw.sim.store.get(TFJOBS, PARTITION, name)

    gw.sim.faults.down()
    try:
        deleted = await gw.client.delete(f"{gw.jobs_url()}/{job_id}", headers=USER)
        assert deleted.status == 200
        assert (await deleted.json())["status"]["phase"] == "terminating"
    finally:
        gw.sim.faults.up()

    async def gone() -> bool:
        return (await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=USER)).status == 404

    await wait_until(gone)
    assert gw.sim.store.try_get(TFJOBS, PARTITION, name) is None


async def test_delete_of_a_job_already_gone_from_the_cluster(gateway: Gateway) -> None:
    from kubesim.store import TFJOBS

    gw = gateway
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("vanished"), headers=USER)).json()
    gw.sim.store.delete(TFJOBS, PARTITION, object_name("vanished", created["metadata"]["id"]))
    response = await gw.client.delete(f"{gw.jobs_url()}/{created['metadata']['id']}", headers=USER)
    assert response.status == 200
    assert (await gw.client.get(f"{gw.jobs_url()}/{created['metadata']['id']}", headers=USER)).status == 404


async def test_a_cluster_that_stays_down_does_not_hold_up_another(make_gateway: Any, kubesim: Any) -> None:
    from tests.conftest import RUNTIMES

    gw = await make_gateway(clusters=[
        {"id": "c1", "server": kubesim.url, "token": kubesim.token, "caFile": kubesim.ca_file, "runtimes": RUNTIMES},
        {"id": "dead", "server": "https://127.0.0.1:1", "token": "t", "runtimes": RUNTIMES,
         "requestTimeoutSeconds": 1},
    ])
    stuck = await gw.client.post(gw.jobs_url(cluster="dead"), json=minimal("never"), headers=USER)
    assert stuck.status == 200 and (await stuck.json())["status"]["phase"] == "queued"
    gw.sim.faults.down()
    try:
        created = await (await gw.client.post(gw.jobs_url(), json=minimal("later"), headers=USER)).json()
        assert created["status"]["phase"] == "queued"
    finally:
        gw.sim.faults.up()
    await _lands(gw, created["metadata"]["id"])


async def test_a_job_deleted_while_its_queued_create_lands_never_runs(gateway: Gateway) -> None:
    from kubesim.store import TFJOBS

    gw = gateway
    gw.sim.faults.down()
    try:
        created = await (await gw.client.post(gw.jobs_url(), json=minimal("late"), headers=USER)).json()
        assert created["status"]["phase"] == "queued"
    finally:
        gw.sim.faults.latency(0.6)  # the outbox's create will be on its way for a while
        gw.sim.faults.up()
    job_id = created["metadata"]["id"]
    name = object_name("late", job_id)
    before = gw.sim.server.requests
    await wait_until(lambda: _true(gw.sim.server.requests > before))  # the create is in flight
    deleted = await gw.client.delete(f"{gw.jobs_url()}/{job_id}", headers=USER)
    assert deleted.status == 200

    async def landed_and_taken_back() -> bool:
        text = await (await gw.client.get("/metrics")).text()
        return ('verb="create"' in text and 'code="201"' in text
                and gw.sim.store.try_get(TFJOBS, PARTITION, name) is None and 'verb="delete"' in text)

    await wait_until(landed_and_taken_back)
    gw.sim.faults.clear()
    assert (await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=USER)).status == 404
    assert (await (await gw.client.get(gw.jobs_url(), headers=USER)).json())["metadata"]["total"] == 0


async def _true(value: bool) -> bool:
    return value
