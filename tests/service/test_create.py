"""Create through the real HTTP API into KubeSim: every seed 003 example and every tolerated spelling."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import PARTITION, Gateway
from tests.service.seed_bodies import SEED_BODIES, TOLERATED_SPELLINGS, assert_legacy_object, minimal
from translators.naming import object_name

ADMIN = {"X-User": "admin"}


def tfjob_in_sim(gw: Gateway, created: dict[str, Any]) -> dict[str, Any]:
    """The TFJob KubeSim holds for a legacy object."""
    from kubesim.store import TFJOBS

    name = object_name(created["metadata"]["name"], created["metadata"]["id"])
    return gw.sim.store.get(TFJOBS, PARTITION, name)


@pytest.mark.parametrize("example", sorted(SEED_BODIES))
async def test_seed_examples_create_a_valid_tfjob(gateway: Gateway, example: str) -> None:
    from kubesim.schema import validate

    response = await gateway.client.post(gateway.jobs_url(), json=SEED_BODIES[example], headers=ADMIN)
    assert response.status == 200, await response.text()
    created = await response.json()
    assert_legacy_object(created)
    assert created["metadata"]["uid"] == "admin"
    assert created["spec"]["partition"] == PARTITION
    assert created["status"]["phase"] in ("pending", "running")
    tfjob = tfjob_in_sim(gateway, created)
    assert validate(tfjob) == []
    assert tfjob["metadata"]["labels"]["clever.dev/job-id"] == created["metadata"]["id"]
    assert "Worker" in tfjob["spec"]["tfReplicaSpecs"]


@pytest.mark.parametrize("spelling", sorted(TOLERATED_SPELLINGS))
async def test_tolerated_spellings_create(gateway: Gateway, spelling: str) -> None:
    response = await gateway.client.post(gateway.jobs_url(), json=TOLERATED_SPELLINGS[spelling], headers=ADMIN)
    assert response.status == 200, await response.text()
    created = await response.json()
    assert_legacy_object(created)
    tfjob_in_sim(gateway, created)  # raises NotFound if the TFJob is not there


async def test_seed_spellings_are_read_as_meant(gateway: Gateway) -> None:
    response = await gateway.client.post(gateway.jobs_url(), json=SEED_BODIES["response-shaped"], headers=ADMIN)
    created = await response.json()
    spec = created["spec"]
    assert created["metadata"]["name"] == "tfserving-0"
    assert created["metadata"]["id"] != "12345678"  # ids are the gateway's, never the client's
    assert spec["workdir"] == "/clever/admin/xinhe/logs"
    assert spec["args"] == ["-test=10", "-config=1"]
    assert spec["runtime"] == "Python_2.7+Tensorflow_1.2.1"
    assert {(r["type"], r["count"]) for r in spec["replicas"]} == {("worker", "1"), ("ps", "0")}


async def test_environment_reaches_the_container(gateway: Gateway) -> None:
    body = minimal("envjob", enviroment="A=1;B=two", workdir="/clever/w")
    created = await (await gateway.client.post(gateway.jobs_url(), json=body, headers=ADMIN)).json()
    container = tfjob_in_sim(gateway, created)["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env["A"] == "1" and env["B"] == "two"
    assert container["workingDir"] == "/clever/w"


async def test_duplicate_name_is_409_and_other_partition_is_fine(gateway: Gateway) -> None:
    first = await gateway.client.post(gateway.jobs_url(), json=minimal("dup"), headers=ADMIN)
    assert first.status == 200
    again = await gateway.client.post(gateway.jobs_url(), json=minimal("dup"), headers={"X-User": "bob"})
    assert again.status == 409
    body = await again.json()
    assert body["code"] == 409 and body["reason"] == "Conflict" and body["details"]["requestId"]
    elsewhere = await gateway.client.post(gateway.jobs_url("default"), json=minimal("dup"), headers=ADMIN)
    assert elsewhere.status == 200


async def test_missing_x_user_is_401_in_mode_none(gateway: Gateway) -> None:
    response = await gateway.client.post(gateway.jobs_url(), json=minimal("anon"))
    assert response.status == 401
    assert (await response.json())["reason"] == "Unauthorized"
