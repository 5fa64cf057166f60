"""The same legacy lifecycle on all four backends behind one gateway: a client cannot tell them apart.

One gateway, four KubeSim clusters (`to` training-operator, `tfo` tf-operator, `vc` Volcano, `js` JobSet), real
Redis under a unique prefix, real HTTP on loopback. For each cluster: create (seed 003 body) -> list
-> get -> pending -> running -> succeeded; PATCH description in place; PATCH shape while running ->
409; PATCH shape after success -> recreated under the same id; delete -> 404. The key sets of every
legacy response are the same on every backend.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from kubesim.store import JOBSETS, TFJOBS, VCJOBS
from tests.service.backends_harness import BACKENDS, PARTITION, MultiCluster, seed_body
from tests.service.seed_bodies import assert_legacy_object


def key_shape(value: Any) -> Any:
    """The nested key structure of a JSON value (lists by their first element), without the values."""
    if isinstance(value, dict):
        return {k: key_shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [key_shape(value[0])] if value else []
    return None


def same_shape(a: Any, b: Any) -> bool:
    """Key shapes match; an empty list matches any list (pods may or may not exist yet at that moment)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_shape(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return not a or not b or same_shape(a[0], b[0])
    return a == b


def cluster_object(mc: MultiCluster, cid: str, name: str) -> dict[str, Any] | None:
    """The job's object on its cluster (TFJob or Volcano Job), or None."""
    resource = {"volcano": VCJOBS, "jobset": JOBSETS}.get(BACKENDS[cid][0], TFJOBS)
    obj: dict[str, Any] | None = mc.sims[cid].store.try_get(resource, PARTITION, name)
    return obj


async def lifecycle(mc: MultiCluster, cid: str) -> dict[str, Any]:
    """Run the legacy lifecycle on `cid`; the key shapes of the responses seen, by step."""
    shapes: dict[str, Any] = {}
    controllers = mc.sims[cid].controllers
    controllers.set_default_scenario("hold")
    created = await mc.create(cid, seed_body("life"))
    job_id = created["metadata"]["id"]
    name = mc.k8s_name(created)
    assert created["status"]["phase"] in ("pending", "running")
    assert created["spec"]["description"] == "create a tfjobs"
    assert_legacy_object(created)
    shapes["create"] = key_shape(created)

    _, listing = await mc.call("GET", mc.jobs_url(cid))
    assert listing["metadata"]["total"] == 1
    assert [item["metadata"]["id"] for item in listing["items"]] == [job_id]
    shapes["list"] = key_shape(listing)

    got = await mc.get(cid, job_id)
    assert got["metadata"]["name"] == "life" and got["metadata"]["uid"] == "alice"
    assert_legacy_object(got)

    running = await mc.wait_phase(cid, job_id, "running",
                                  until=lambda j: bool(j["status"]["replicas"])
                                  and all(r["status"] == "Running" for r in j["status"]["replicas"]))
    (worker,) = running["status"]["replicas"]  # the seed's ps group has count 0
    assert (worker["type"], worker["index"], worker["restartCount"]) == ("worker", 0, 0)
    assert worker["node"] and worker["startTime"]
    shapes["running"] = key_shape(running)

    # Description only: in place, same cluster object.
    uid_before = cluster_object(mc, cid, name)["metadata"]["uid"]  # type: ignore[index]
    _, patched = await mc.call("PATCH", f"{mc.jobs_url(cid)}/{job_id}", json={"description": "new words"})
    assert patched["spec"]["description"] == "new words"
    obj = cluster_object(mc, cid, name)
    assert obj is not None and obj["metadata"]["uid"] == uid_before
    assert obj["metadata"]["annotations"]["clever.dev/description"] == "new words"

    # Shape change while running: 409, nothing changed.
    _, refused = await mc.call("PATCH", f"{mc.jobs_url(cid)}/{job_id}", json={"args": "--epochs 2"}, expect=409)
    assert "running" in refused["message"] and "changing args" in refused["message"]
    assert refused["details"]["fields"] == ["args"]
    shapes["error"] = key_shape(refused)
    assert cluster_object(mc, cid, name)["metadata"]["uid"] == uid_before  # type: ignore[index]

    controllers.set_job_scenario(PARTITION, name, "succeed:after=1")
    succeeded = await mc.wait_phase(cid, job_id, "succeeded")
    assert succeeded["status"]["completionTime"]
    assert all(r["status"] == "Succeeded" for r in succeeded["status"]["replicas"])
    shapes["succeeded"] = key_shape(succeeded)

    # Shape change after success: recreated under the same id.
    _, recreated = await mc.call("PATCH", f"{mc.jobs_url(cid)}/{job_id}", json={"args": "--epochs 2"})
    assert recreated["metadata"]["id"] == job_id
    assert recreated["spec"]["args"] == ["--epochs", "2"]
    assert recreated["spec"]["description"] == "new words"
    assert recreated["status"]["phase"] in ("pending", "running")
    obj = cluster_object(mc, cid, name)
    assert obj is not None and obj["metadata"]["uid"] != uid_before
    assert (await mc.get(cid, job_id))["spec"]["args"] == ["--epochs", "2"]

    _, deleted = await mc.call("DELETE", f"{mc.jobs_url(cid)}/{job_id}")
    shapes["delete"] = key_shape(deleted)
    assert cluster_object(mc, cid, name) is None
    _, gone = await mc.call("GET", f"{mc.jobs_url(cid)}/{job_id}", expect=404)
    shapes["not-found"] = key_shape(gone)
    _, listing = await mc.call("GET", mc.jobs_url(cid))
    assert listing["metadata"]["total"] == 0
    return shapes


async def test_one_lifecycle_on_every_backend() -> None:
    async with MultiCluster(f"test:{uuid.uuid4().hex}:") as mc:
        results = await asyncio.gather(*(lifecycle(mc, cid) for cid in BACKENDS))
    by_cluster = dict(zip(BACKENDS, results, strict=True))
    reference = by_cluster["to"]
    assert set(reference) == {"create", "list", "running", "error", "succeeded", "delete", "not-found"}
    for cid, shapes in by_cluster.items():
        for step, shape in shapes.items():
            assert same_shape(shape, reference[step]), f"{cid} {step} differs from training-operator: " \
                f"{shape} != {reference[step]}"
