"""A gang-scheduled job over real HTTP: the gateway on a cluster configured for Volcano, KubeSim running
training-operator with `--gang-scheduler-name=volcano`; the TFJob's schedulingPolicy becomes the PodGroup."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubesim.store import PODGROUPS, PODS, TFJOBS
from kubesim.testing import KubeSim
from tests.conftest import PARTITION, Gateway, wait_until
from tests.service.seed_bodies import minimal
from translators.naming import object_name

ALICE = {"X-User": "alice"}
QUEUE = "research"


@pytest.fixture
async def kubesim() -> AsyncIterator[KubeSim]:
    """The shared fixture's KubeSim, with training-operator gang-scheduling through Volcano."""
    async with KubeSim(namespaces=("default", PARTITION), time_scale=0.01, gang_scheduler="volcano") as sim:
        yield sim


async def test_gang_job_gets_a_podgroup_and_succeeds(make_gateway: Any) -> None:
    gw: Gateway = await make_gateway(cluster={"schedulerName": "volcano", "queue": QUEUE})
    body = {key: value for key, value in minimal("gang").items() if key not in ("type", "count")}
    body["replicas"] = [{"type": "worker", "count": "2"}, {"type": "ps", "count": "1"}]
    # hold the workload so the running gang can be inspected before it finishes
    gw.sim.controllers.set_default_scenario("hold")
    response = await gw.client.post(gw.jobs_url(), json=body, headers=ALICE)
    assert response.status == 200, await response.text()
    job_id = (await response.json())["metadata"]["id"]
    name = object_name("gang", job_id)

    tfjob = gw.sim.store.get(TFJOBS, PARTITION, name)
    assert tfjob["spec"]["runPolicy"]["schedulingPolicy"] == {"minAvailable": 3, "queue": QUEUE}

    async def gang_running() -> bool:
        group = gw.sim.store.try_get(PODGROUPS, PARTITION, name) or {}
        members = [p for p in gw.sim.store.list(PODS, PARTITION)[0]
                   if p["metadata"].get("annotations", {}).get("scheduling.k8s.io/group-name") == name]
        return (group.get("status") or {}).get("phase") == "Running" and len(members) == 3 and all(
            p["spec"]["schedulerName"] == "volcano" and p["status"].get("phase") == "Running" for p in members)

    await wait_until(gang_running)
    group = gw.sim.store.get(PODGROUPS, PARTITION, name)
    assert (group["spec"]["minMember"], group["spec"]["queue"]) == (3, QUEUE)
    assert group["metadata"]["ownerReferences"][0]["uid"] == tfjob["metadata"]["uid"]

    gw.sim.controllers.set_job_scenario(PARTITION, name, "succeed:after=1")

    async def succeeded() -> bool:
        got = await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=ALICE)
        assert got.status == 200, await got.text()
        return bool((await got.json())["status"]["phase"] == "succeeded")

    await wait_until(succeeded)
