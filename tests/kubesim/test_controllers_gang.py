"""Gang-scheduled TFJobs: training-operator's Volcano PodGroups (`gang_scheduler="volcano"`) and the
simulated Volcano scheduler admitting them. time_scale 0.01; bounded polls, no timing assertions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubesim.__main__ import parse_args
from kubesim.controllers import Controllers
from kubesim.store import EVENTS, PODGROUPS, PODS, TFJOBS, Store, WatchEvent
from kubesim.testing import KubeSim
from tests.kubesim.polling import wait_for

NS = "default"
GROUP_NAME = "scheduling.k8s.io/group-name"
TASK_SPEC = "volcano.sh/task-spec"


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[KubeSim]:
    operator, volcano = getattr(request, "param", ("training-operator", True))
    async with KubeSim(namespaces=(NS,), tfjob_operator=operator, volcano=volcano, gang_scheduler="volcano",
                       time_scale=0.01, tls=False) as running:
        yield running



def tfjob(name: str, replicas: dict[str, int], *, scheduling: dict[str, Any] | None = None,
          scenario: str | None = None, scheduler_name: str | None = None) -> dict[str, Any]:
    replica_specs: dict[str, Any] = {}
    for rtype, count in replicas.items():
        pod_spec: dict[str, Any] = {"containers": [{"name": "tensorflow", "image": "tf:2"}]}
        if scheduler_name:
            pod_spec["schedulerName"] = scheduler_name
        replica_specs[rtype] = {"replicas": count, "template": {"spec": pod_spec}}
    body: dict[str, Any] = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob",
                            "metadata": {"name": name, "namespace": NS}, "spec": {"tfReplicaSpecs": replica_specs}}
    if scheduling is not None:
        body["spec"]["runPolicy"] = {"schedulingPolicy": scheduling}
    if scenario:
        body["metadata"]["annotations"] = {"kubesim.clever.dev/scenario": scenario}
    return body


def condition(sim: KubeSim, name: str, ctype: str) -> dict[str, Any] | None:
    job = sim.store.try_get(TFJOBS, NS, name) or {}
    return next((c for c in (job.get("status") or {}).get("conditions") or []
                 if c["type"] == ctype and c["status"] == "True"), None)


def pods(sim: KubeSim) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in sim.store.list(PODS, NS)[0]}


def podgroup(sim: KubeSim, name: str) -> dict[str, Any] | None:
    return sim.store.try_get(PODGROUPS, NS, name)


def podgroup_phase(sim: KubeSim, name: str) -> str:
    return str(((podgroup(sim, name) or {}).get("status") or {}).get("phase", ""))


def events_about(sim: KubeSim, kind: str, name: str) -> list[dict[str, Any]]:
    return [e for e in sim.store.list(EVENTS, NS)[0]
            if e["involvedObject"]["kind"] == kind and e["involvedObject"]["name"] == name]


def drain(queue: asyncio.Queue[WatchEvent]) -> list[WatchEvent]:
    seen = []
    while not queue.empty():
        seen.append(queue.get_nowait())
    return seen


async def test_podgroup_and_pods_of_a_gang_job(sim: KubeSim) -> None:
    sim.store.create(TFJOBS, tfjob("gang", {"Worker": 2, "PS": 1}))
    group = await wait_for(lambda: podgroup(sim, "gang"), "PodGroup")
    job = sim.store.get(TFJOBS, NS, "gang")
    assert group["spec"] == {"minMember": 3, "queue": "default"}  # total replicas, Volcano's default queue
    assert group["metadata"]["ownerReferences"] == [{
        "apiVersion": "kubeflow.org/v1", "kind": "TFJob", "name": "gang", "uid": job["metadata"]["uid"],
        "controller": True, "blockOwnerDeletion": True}]

    await wait_for(lambda: condition(sim, "gang", "Succeeded"), "Succeeded")
    found = pods(sim)
    assert set(found) == {"gang-worker-0", "gang-worker-1", "gang-ps-0"}
    for name, pod in found.items():
        assert pod["spec"]["schedulerName"] == "volcano"
        assert pod["metadata"]["annotations"] == {GROUP_NAME: "gang", TASK_SPEC: name.split("-")[1]}
    # Finished: the operator gives the PodGroup back (the parameter server still runs, cleanPodPolicy None).
    await wait_for(lambda: podgroup(sim, "gang") is None, "PodGroup deleted")
    reasons = [e["reason"] for e in sim.store.list(EVENTS, NS)[0] if e["involvedObject"]["name"] == "gang"]
    assert "JobTerminated" in reasons and "SuccessfulDeletePodGroup" in reasons


async def test_scheduling_policy_shapes_the_podgroup(sim: KubeSim) -> None:
    scheduling = {"minAvailable": 2, "queue": "research", "priorityClass": "high"}
    sim.store.create(TFJOBS, tfjob("policy", {"Worker": 3}, scheduling=scheduling, scenario="hold"))
    group = await wait_for(lambda: podgroup(sim, "policy"), "PodGroup")
    assert group["spec"] == {"minMember": 2, "queue": "research", "priorityClassName": "high"}
    assert group["metadata"]["annotations"] == {"kubesim.clever.dev/scenario": "hold"}  # the job's, copied
    await wait_for(lambda: podgroup_phase(sim, "policy") == "Running", "PodGroup Running")
    await wait_for(lambda: condition(sim, "policy", "Running"), "job Running")


async def test_no_pod_exists_before_the_podgroup_leaves_pending(sim: KubeSim) -> None:
    queue = sim.store.subscribe()
    try:
        sim.store.create(TFJOBS, tfjob("order", {"Worker": 2}))
        await wait_for(lambda: condition(sim, "order", "Succeeded"), "Succeeded")
    finally:
        sim.store.unsubscribe(queue)
    admitted_at: int | None = None
    first_pod_at: int | None = None
    for position, event in enumerate(drain(queue)):
        if event.resource == PODGROUPS and admitted_at is None \
                and (event.object.get("status") or {}).get("phase") not in (None, "", "Pending"):
            admitted_at = position
        if event.resource == PODS and event.type == "ADDED" and first_pod_at is None:
            first_pod_at = position
    assert admitted_at is not None and first_pod_at is not None
    assert admitted_at < first_pod_at


@pytest.mark.parametrize("sim", [("training-operator", False)], indirect=True)
async def test_without_volcano_the_gang_job_gets_no_pods(sim: KubeSim) -> None:
    sim.store.create(TFJOBS, tfjob("waiting", {"Worker": 2}))
    await wait_for(lambda: podgroup(sim, "waiting"), "PodGroup")
    await asyncio.sleep(0.2)  # 20 simulated seconds: nobody admits the PodGroup
    assert podgroup_phase(sim, "waiting") == "" and not pods(sim)
    job = sim.store.get(TFJOBS, NS, "waiting")
    assert [c["type"] for c in job["status"]["conditions"]] == ["Created"]


async def test_unschedulable_gang_stays_pending_until_it_fits(sim: KubeSim) -> None:
    assert sim.controllers is not None
    sim.store.create(TFJOBS, tfjob("tight", {"Worker": 2}, scenario="unschedulable"))
    await wait_for(lambda: len(pods(sim)) == 2 and all(
        any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in p["status"].get("conditions", []))
        for p in pods(sim).values()), "both pods unschedulable")
    group = await wait_for(lambda: (podgroup(sim, "tight") or {}).get("status", {}).get("conditions")
                           and podgroup(sim, "tight"), "Unschedulable condition")
    assert group["status"]["phase"] == "Inqueue"
    unschedulable = group["status"]["conditions"][0]
    assert (unschedulable["type"], unschedulable["status"], unschedulable["reason"]) == (
        "Unschedulable", "True", "NotEnoughResources")
    assert unschedulable["message"] == ("2/2 tasks in gang unschedulable: pod group is not ready, 2 Pending, "
                                        "2 minAvailable; Pending: 2 Unschedulable")
    await asyncio.sleep(0.05)  # more passes add no second event
    warnings = [e for e in events_about(sim, "PodGroup", "tight") if e["reason"] == "Unschedulable"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"
    assert all(p["status"]["phase"] == "Pending" and not p["spec"].get("nodeName") for p in pods(sim).values())
    assert not condition(sim, "tight", "Running")

    sim.controllers.set_job_scenario(NS, "tight", "succeed:after=1")
    await wait_for(lambda: condition(sim, "tight", "Succeeded"), "Succeeded once the gang fits")
    await wait_for(lambda: podgroup(sim, "tight") is None, "PodGroup given back by the finished job")


async def test_a_template_scheduler_is_kept_with_a_warning(sim: KubeSim) -> None:
    sim.store.create(TFJOBS, tfjob("custom", {"Worker": 1}, scheduler_name="default-scheduler"))
    pod = await wait_for(lambda: pods(sim).get("custom-worker-0"), "pod")
    assert pod["spec"]["schedulerName"] == "default-scheduler"
    assert pod["metadata"]["annotations"] == {GROUP_NAME: "custom", TASK_SPEC: "worker"}
    warning = next(e for e in events_about(sim, "TFJob", "custom") if e["reason"] == "SettedPodTemplateSchedulerName")
    assert warning["type"] == "Warning"
    assert warning["message"] == ("Another scheduler is specified when gang-scheduling is enabled and it will not "
                                  "be overwritten")


async def test_deleting_the_tfjob_collects_its_podgroup(sim: KubeSim) -> None:
    sim.store.create(TFJOBS, tfjob("gone", {"Worker": 2}, scenario="hold"))
    await wait_for(lambda: podgroup_phase(sim, "gone") == "Running" and len(pods(sim)) == 2, "gang running")
    sim.store.delete(TFJOBS, NS, "gone")
    await wait_for(lambda: podgroup(sim, "gone") is None and not pods(sim), "PodGroup and pods collected")


@pytest.mark.parametrize("sim", [("tf-operator", True)], indirect=True)
async def test_tf_operator_ignores_the_gang_scheduler(sim: KubeSim) -> None:
    sim.store.create(TFJOBS, tfjob("old", {"Worker": 2}))
    await wait_for(lambda: condition(sim, "old", "Succeeded"), "Succeeded")
    assert not sim.store.list(PODGROUPS, NS)[0]
    for pod in pods(sim).values():
        assert "schedulerName" not in pod["spec"] and not pod["metadata"].get("annotations")


def test_only_volcano_is_a_gang_scheduler() -> None:
    with pytest.raises(ValueError, match="gang_scheduler"):
        Controllers(Store(), gang_scheduler="kube-batch")
    assert parse_args(["--gang-scheduler", "volcano"]).gang_scheduler == "volcano"
    assert parse_args([]).gang_scheduler is None
