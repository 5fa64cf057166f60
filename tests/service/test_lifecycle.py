"""A job's life through the API against KubeSim: list/get, pending → running → succeeded, PATCH in place,
PATCH shape refused while running and recreated after success, delete, and the path aliases."""

from __future__ import annotations

from typing import Any

from tests.conftest import PARTITION, Gateway, wait_until
from tests.service.seed_bodies import assert_legacy_object, minimal
from translators.naming import object_name

ALICE = {"X-User": "alice"}


async def _get(gw: Gateway, job_id: str, **url: Any) -> dict[str, Any]:
    response = await gw.client.get(f"{gw.jobs_url(**url)}/{job_id}", headers=ALICE)
    assert response.status == 200, await response.text()
    return await response.json()


async def _phase_becomes(gw: Gateway, job_id: str, phase: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        job = await _get(gw, job_id)
        return job if job["status"]["phase"] == phase else None

    return await wait_until(check)


async def test_lifecycle(gateway: Gateway) -> None:
    from kubesim.store import TFJOBS

    gw = gateway
    gw.sim.controllers.set_default_scenario("hold")
    response = await gw.client.post(gw.jobs_url(), json=minimal("life", count="2"), headers=ALICE)
    assert response.status == 200
    created = await response.json()
    job_id = created["metadata"]["id"]
    assert created["status"]["phase"] == "pending"
    name = object_name("life", job_id)

    listing = await (await gw.client.get(gw.jobs_url(), headers=ALICE)).json()
    assert listing["metadata"]["total"] == 1
    assert [i["metadata"]["id"] for i in listing["items"]] == [job_id]
    assert_legacy_object(listing["items"][0])

    running = await _phase_becomes(gw, job_id, "running")
    assert len(running["status"]["replicas"]) == 2
    assert all(r["status"] == "Running" for r in running["status"]["replicas"])

    # Description only: a merge patch that reaches the TFJob's annotations.
    patched = await gw.client.patch(f"{gw.jobs_url()}/{job_id}", json={"description": "new words"}, headers=ALICE)
    assert patched.status == 200, await patched.text()
    assert (await patched.json())["spec"]["description"] == "new words"
    tfjob = gw.sim.store.get(TFJOBS, PARTITION, name)
    assert tfjob["metadata"]["annotations"]["clever.dev/description"] == "new words"
    uid_before = tfjob["metadata"]["uid"]

    # Same body again: unchanged, same object.
    same = await gw.client.patch(f"{gw.jobs_url()}/{job_id}", json={"description": "new words"}, headers=ALICE)
    assert same.status == 200
    assert gw.sim.store.get(TFJOBS, PARTITION, name)["metadata"]["uid"] == uid_before

    # Shape change while running: refused, nothing changed.
    refused = await gw.client.patch(f"{gw.jobs_url()}/{job_id}", json={"count": "3"}, headers=ALICE)
    assert refused.status == 409
    assert "running" in (await refused.json())["message"]
    assert gw.sim.store.get(TFJOBS, PARTITION, name)["metadata"]["uid"] == uid_before

    gw.sim.controllers.set_job_scenario(PARTITION, name, "succeed:after=1")
    await _phase_becomes(gw, job_id, "succeeded")

    # Shape change after success: recreated under the same id with the new shape.
    recreated = await gw.client.patch(f"{gw.jobs_url()}/{job_id}", json={"count": "3", "args": "--epochs 2"},
                                      headers=ALICE)
    assert recreated.status == 200, await recreated.text()
    body = await recreated.json()
    assert body["metadata"]["id"] == job_id
    assert body["spec"]["args"] == ["--epochs", "2"]
    assert body["status"]["phase"] in ("pending", "running")
    tfjob = gw.sim.store.get(TFJOBS, PARTITION, name)
    assert tfjob["metadata"]["uid"] != uid_before
    assert tfjob["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 3

    # Aliases: v1alpha2 and the singular path serve the same job.
    assert (await _get(gw, job_id, version="v1alpha2", kind="tfjob"))["metadata"]["id"] == job_id
    alias_list = await (await gw.client.get(gw.jobs_url(version="v1alpha2", kind="tfjob"), headers=ALICE)).json()
    assert alias_list["metadata"]["total"] == 1

    deleted = await gw.client.delete(f"{gw.jobs_url(version='v1alpha2', kind='tfjob')}/{job_id}", headers=ALICE)
    assert deleted.status == 200
    assert gw.sim.store.try_get(TFJOBS, PARTITION, name) is None
    gone = await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=ALICE)
    assert gone.status == 404
    assert (await (await gw.client.get(gw.jobs_url(), headers=ALICE)).json())["metadata"]["total"] == 0
    # The name is free again.
    again = await gw.client.post(gw.jobs_url(), json=minimal("life"), headers=ALICE)
    assert again.status == 200


async def test_failed_job_reports_failed(gateway: Gateway) -> None:
    gw = gateway
    gw.sim.controllers.set_default_scenario("fail:exit=3,after=1")
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("boom"), headers=ALICE)).json()
    failed = await _phase_becomes(gw, created["metadata"]["id"], "failed")
    assert failed["status"]["replicas"]


async def test_other_users_job_is_404_and_list_is_per_user(gateway: Gateway) -> None:
    gw = gateway
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("mine"), headers=ALICE)).json()
    job_url = f"{gw.jobs_url()}/{created['metadata']['id']}"
    bob = {"X-User": "bob"}
    assert (await gw.client.get(job_url, headers=bob)).status == 404
    assert (await gw.client.patch(job_url, json={"description": "x"}, headers=bob)).status == 404
    assert (await gw.client.delete(job_url, headers=bob)).status == 404
    assert (await (await gw.client.get(gw.jobs_url(), headers=bob)).json())["metadata"]["total"] == 0
    assert (await gw.client.get(job_url, headers=ALICE)).status == 200


async def test_status_without_watch_comes_from_the_cluster(make_gateway: Any) -> None:
    gw = await make_gateway(sync={"watch": False})
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("nowatch"), headers=ALICE)).json()
    await _phase_becomes(gw, created["metadata"]["id"], "succeeded")


async def test_recreate_refused_by_the_cluster_keeps_the_old_job(gateway: Gateway) -> None:
    """A shape change the cluster would refuse must not cost the user the job it replaces."""
    from kubesim.store import TFJOBS

    gw = gateway
    gw.sim.controllers.set_default_scenario("succeed:after=0.5")
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("keep"), headers=ALICE)).json()
    job_id = created["metadata"]["id"]
    await _phase_becomes(gw, job_id, "succeeded")
    name = object_name("keep", job_id)
    uid_before = gw.sim.store.get(TFJOBS, PARTITION, name)["metadata"]["uid"]

    # The cluster refuses the new object (a quota or webhook would): the dry-run create is the POST refused.
    gw.sim.faults.fail_next(1, 403, method="POST", path="/tfjobs", reason="Forbidden",
                            message='admission webhook "quota.example" denied the request: over quota')
    refused = await gw.client.patch(f"{gw.jobs_url()}/{job_id}", json={"count": "3"}, headers=ALICE)
    assert refused.status == 403, await refused.text()
    assert "over quota" in (await refused.json())["message"]

    tfjob = gw.sim.store.get(TFJOBS, PARTITION, name)
    assert tfjob["metadata"]["uid"] == uid_before
    job = await _get(gw, job_id)
    assert job["spec"]["replicas"][0]["count"] == "1"
    assert job["status"]["phase"] == "succeeded"

    # Accepted afterwards: the dry run passes (AlreadyExists only) and the job is recreated.
    accepted = await gw.client.patch(f"{gw.jobs_url()}/{job_id}", json={"count": "3"}, headers=ALICE)
    assert accepted.status == 200, await accepted.text()
    assert gw.sim.store.get(TFJOBS, PARTITION, name)["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 3


async def test_delete_answers_the_last_known_state_as_terminating(gateway: Gateway) -> None:
    gw = gateway
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("finished"), headers=ALICE)).json()
    job_id = created["metadata"]["id"]
    done = await _phase_becomes(gw, job_id, "succeeded")
    deleted = await gw.client.delete(f"{gw.jobs_url()}/{job_id}", headers=ALICE)
    assert deleted.status == 200
    status = (await deleted.json())["status"]
    assert (status["phase"], status["reason"]) == ("terminating", "Deleted")
    # When it ran, how long, and its pods: what the user saw last, not wiped by the delete.
    for key in ("startTime", "completionTime", "duration", "replicas"):
        assert status[key] == done["status"][key] and status[key] not in (None, []), key
