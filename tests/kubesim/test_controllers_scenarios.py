"""Every scenario, for both TFJob dialects and for Volcano: the pod situation a real cluster shows,
the job's status, and the events. time_scale 0.01; bounded polls, no timing assertions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from kubesim.controllers import Controllers
from kubesim.store import EVENTS, PODGROUPS, PODS, TFJOBS, VCJOBS, Store
from kubesim.testing import KubeSim
from tests.kubesim.polling import wait_for

NS = "default"
KINDS = ("training-operator", "tf-operator", "volcano")


@dataclass
class Sim:
    store: Store
    controllers: Controllers
    kind: str

    @property
    def pod_name(self) -> str:
        return "job-worker-0"

    def job(self) -> dict[str, Any] | None:
        return self.store.try_get(VCJOBS if self.kind == "volcano" else TFJOBS, NS, "job")

    def pod(self) -> dict[str, Any] | None:
        return self.store.try_get(PODS, NS, self.pod_name)

    def container(self) -> dict[str, Any]:
        pod = self.pod() or {}
        first: dict[str, Any] = ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]
        return first

    def job_state(self) -> str:
        """Succeeded / Failed / Running / Pending, whichever backend."""
        status = (self.job() or {}).get("status") or {}
        if self.kind == "volcano":
            phase = (status.get("state") or {}).get("phase", "")
            return str({"Completed": "Succeeded"}.get(phase, phase))
        true = [c["type"] for c in status.get("conditions") or [] if c["status"] == "True"]
        for ctype in ("Succeeded", "Failed", "Running"):
            if ctype in true:
                return ctype
        return "Pending"

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.store.list(EVENTS, NS)[0] if e["involvedObject"]["name"] == name]


@pytest.fixture(params=KINDS)
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Sim]:
    kind = request.param
    async with KubeSim(namespaces=(NS,), tfjob_operator=None if kind == "volcano" else kind,
                       volcano=kind == "volcano", time_scale=0.01, tls=False) as running:
        assert running.controllers is not None
        yield Sim(running.store, running.controllers, kind)



def create_job(sim: Sim, scenario: str, *, restart: str = "Never", gpus: bool = False,
               pod_deadline: int | None = None) -> None:
    container: dict[str, Any] = {"name": "tensorflow", "image": "registry.example/tf:2.15"}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": "8"}}
    annotations = {"kubesim.clever.dev/scenario": scenario}
    pod_spec: dict[str, Any] = {"containers": [container]}
    if pod_deadline is not None:
        pod_spec["activeDeadlineSeconds"] = pod_deadline
    if sim.kind == "volcano":
        template = {"spec": {**pod_spec, "restartPolicy": restart}}
        sim.store.create(VCJOBS, {
            "apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
            "metadata": {"name": "job", "namespace": NS, "annotations": annotations},
            "spec": {"minAvailable": 1, "schedulerName": "volcano", "queue": "default",
                     "tasks": [{"name": "worker", "replicas": 1, "template": template}]}})
    else:
        sim.store.create(TFJOBS, {
            "apiVersion": "kubeflow.org/v1", "kind": "TFJob",
            "metadata": {"name": "job", "namespace": NS, "annotations": annotations},
            "spec": {"tfReplicaSpecs": {"Worker": {"replicas": 1, "restartPolicy": restart,
                                                   "template": {"spec": pod_spec}}}}})


def pod_condition(pod: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    return next((c for c in ((pod or {}).get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


async def test_succeed(sim: Sim) -> None:
    create_job(sim, "succeed:after=3")
    await wait_for(lambda: (sim.pod() or {}).get("status", {}).get("phase") == "Running", "pod Running")
    running = sim.container()
    assert running["ready"] is True and "running" in running["state"]
    pod = sim.pod() or {}
    assert pod["spec"]["nodeName"].startswith("kubesim-node-") and pod["status"]["hostIP"].startswith("10.0.0.")
    assert pod["status"]["startTime"] and pod_condition(pod, "Ready")["status"] == "True"  # type: ignore[index]
    await wait_for(lambda: sim.job_state() == "Succeeded", "job succeeded")
    pod = sim.pod() or {}
    assert pod["status"]["phase"] == "Succeeded"
    terminated = sim.container()["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("Completed", 0)
    reasons = [e["reason"] for e in sim.events(sim.pod_name)]
    assert {"Scheduled", "Pulled", "Created", "Started"} <= set(reasons)
    scheduled = next(e for e in sim.events(sim.pod_name) if e["reason"] == "Scheduled")
    assert scheduled["source"]["component"] == ("volcano" if sim.kind == "volcano" else "default-scheduler")
    assert any("Training finished." in line.text for line in sim.store.logs(NS, sim.pod_name, "tensorflow"))


async def test_fail(sim: Sim) -> None:
    create_job(sim, "fail:exit=2,after=1")
    await wait_for(lambda: sim.job_state() == "Failed", "job failed")
    pod = sim.pod()
    assert pod is not None  # no cleanup policy removes a Failed pod
    assert pod["status"]["phase"] == "Failed"
    terminated = sim.container()["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("Error", 2)
    assert any("exit code 2" in line.text for line in sim.store.logs(NS, sim.pod_name, "tensorflow"))


async def test_hold_runs_until_the_scenario_changes(sim: Sim) -> None:
    create_job(sim, "hold")
    await wait_for(lambda: sim.job_state() == "Running", "job running")
    for _ in range(10):  # 10 simulated seconds: nothing moves
        await asyncio.sleep(0.01)
        assert sim.job_state() == "Running" and (sim.pod() or {})["status"]["phase"] == "Running"
    sim.controllers.set_job_scenario(NS, "job", "succeed:after=1")
    await wait_for(lambda: sim.job_state() == "Succeeded", "job succeeded after the scenario change")


async def test_unschedulable(sim: Sim) -> None:
    create_job(sim, "unschedulable", gpus=True)
    scheduled = await wait_for(lambda: pod_condition(sim.pod(), "PodScheduled"), "PodScheduled condition")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    wording = "unavailable" if sim.kind == "volcano" else "available"
    assert scheduled["message"].startswith(f"0/3 nodes are {wording}: 3 Insufficient nvidia.com/gpu.")
    pod = sim.pod() or {}
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    event = await wait_for(lambda: next((e for e in sim.events(sim.pod_name) if e["reason"] == "FailedScheduling"),
                                        None), "FailedScheduling event")
    assert event["type"] == "Warning"
    assert event["source"]["component"] == ("volcano" if sim.kind == "volcano" else "default-scheduler")
    await asyncio.sleep(0.05)
    assert sim.job_state() == "Pending"
    if sim.kind == "volcano":
        group = sim.store.list(PODGROUPS, NS)[0][0]
        assert group["status"]["phase"] == "Pending"
        assert group["status"]["conditions"][0]["type"] == "Unschedulable"
    else:
        conditions = [c["type"] for c in (sim.job() or {})["status"]["conditions"]]
        assert conditions == ["Created"]
    sim.controllers.set_job_scenario(NS, "job", "succeed:after=1")
    await wait_for(lambda: sim.job_state() == "Succeeded", "job succeeded once schedulable")


async def test_image_pull_backoff(sim: Sim) -> None:
    create_job(sim, "image-pull-backoff")
    # ErrImagePull lasts one simulated second (10 ms here): polling may miss it, its events stay.
    backoff = await wait_for(lambda: sim.container().get("state", {}).get("waiting", {}).get("reason")
                             == "ImagePullBackOff" and sim.container(), "ImagePullBackOff")
    pulled = [e["message"] for e in sim.events(sim.pod_name) if e["reason"] == "Failed"]
    assert any(m.startswith('Failed to pull image "registry.example/tf:2.15"') for m in pulled), pulled
    assert "Error: ErrImagePull" in pulled
    assert backoff["state"]["waiting"]["message"] == 'Back-off pulling image "registry.example/tf:2.15"'
    assert (sim.pod() or {})["status"]["phase"] == "Pending"
    events = sim.events(sim.pod_name)
    failed = [e for e in events if e["reason"] == "Failed"]
    assert failed and all(e["type"] == "Warning" for e in failed)
    assert failed[0]["involvedObject"]["fieldPath"] == "spec.containers{tensorflow}"
    assert any(e["reason"] == "BackOff" for e in events)
    assert sim.job_state() == "Pending"


async def test_oomkilled(sim: Sim) -> None:
    create_job(sim, "oomkilled:after=1")
    await wait_for(lambda: sim.job_state() == "Failed", "job failed")
    pod = sim.pod()
    assert pod is not None
    terminated = sim.container()["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    assert pod["status"]["phase"] == "Failed"


async def test_crashloop_restarts_in_place_then_recovers(sim: Sim) -> None:
    create_job(sim, "crashloop:restarts=2,after=1", restart="OnFailure")
    waiting = await wait_for(lambda: sim.container().get("state", {}).get("waiting", {}).get("reason")
                             == "CrashLoopBackOff" and sim.container(), "CrashLoopBackOff")
    assert waiting["restartCount"] >= 1 and waiting["lastState"]["terminated"]["reason"] == "Error"
    assert "back-off" in waiting["state"]["waiting"]["message"]
    await wait_for(lambda: sim.job_state() == "Succeeded", "job succeeded after the crashes")
    assert sim.container()["restartCount"] == 2
    assert any(e["reason"] == "BackOff" and e["type"] == "Warning" for e in sim.events(sim.pod_name))


async def test_crashloop_with_restart_policy_never_fails_on_the_first_crash(sim: Sim) -> None:
    create_job(sim, "crashloop:restarts=2,after=1", restart="Never")
    await wait_for(lambda: sim.job_state() == "Failed", "job failed")
    assert sim.container()["restartCount"] == 0
    assert sim.container()["state"]["terminated"]["reason"] == "Error"


async def test_slow_start(sim: Sim) -> None:
    create_job(sim, "slow-start:delay=20,after=1")
    creating = await wait_for(lambda: sim.container().get("state", {}).get("waiting", {}).get("reason")
                              == "ContainerCreating" and sim.pod(), "ContainerCreating")
    assert creating["status"]["phase"] == "Pending"
    assert pod_condition(creating, "PodScheduled")["status"] == "True"  # type: ignore[index]
    await wait_for(lambda: sim.job_state() == "Succeeded", "job succeeded")


async def test_default_scenario_applies_to_jobs_without_their_own(sim: Sim) -> None:
    sim.controllers.set_default_scenario("fail:after=1")
    container: dict[str, Any] = {"name": "tensorflow", "image": "tf"}
    if sim.kind == "volcano":
        sim.store.create(VCJOBS, {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
                                  "metadata": {"name": "job", "namespace": NS},
                                  "spec": {"tasks": [{"name": "worker", "replicas": 1,
                                                      "template": {"spec": {"containers": [container],
                                                                            "restartPolicy": "Never"}}}]}})
    else:
        sim.store.create(TFJOBS, {"apiVersion": "kubeflow.org/v1", "kind": "TFJob",
                                  "metadata": {"name": "job", "namespace": NS},
                                  "spec": {"tfReplicaSpecs": {"Worker": {
                                      "template": {"spec": {"containers": [container]}}}}}})
    await wait_for(lambda: sim.job_state() == "Failed", "job failed by the cluster default")


async def test_set_job_scenario_beats_the_annotation(sim: Sim) -> None:
    sim.controllers.set_job_scenario(NS, "job", "succeed:after=1")  # before the job exists
    create_job(sim, "fail:after=1")
    await wait_for(lambda: sim.job_state() == "Succeeded", "job succeeded")


async def test_a_pod_past_its_active_deadline_is_failed_by_the_kubelet(sim: Sim) -> None:
    create_job(sim, "hold", restart="OnFailure", pod_deadline=3)

    def killed() -> dict[str, Any] | None:  # one read: a TFJob operator replaces the failed pod soon after
        pod = sim.pod()
        return pod if pod and pod.get("status", {}).get("reason") == "DeadlineExceeded" else None

    pod = await wait_for(killed, "deadline kill")
    assert pod["status"]["phase"] == "Failed"  # OnFailure does not bring it back: the pod itself failed
    assert pod["status"]["message"] == "Pod was active on the node longer than the specified deadline"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
    # (a TFJob operator may already have replaced the pod under the same name, to be killed again)
    kills = [e["type"] for e in sim.events(sim.pod_name) if e["reason"] == "DeadlineExceeded"]
    assert kills and set(kills) == {"Warning"}


async def test_no_deadline_no_kill(sim: Sim) -> None:
    create_job(sim, "succeed:after=5", pod_deadline=60)
    await wait_for(lambda: sim.job_state() == "Succeeded", "job succeeded")
    assert (sim.pod() or {})["status"]["phase"] == "Succeeded"


async def test_evicted_is_a_pod_level_failure(sim: Sim) -> None:
    create_job(sim, "evicted:after=1", restart="OnFailure" if sim.kind == "volcano" else "Never")
    await wait_for(lambda: (sim.pod() or {}).get("status", {}).get("reason") == "Evicted", "pod evicted")
    pod = sim.pod() or {}
    assert pod["status"]["phase"] == "Failed"  # even with restartPolicy OnFailure the kubelet does not restart
    assert pod["status"]["message"].startswith("The node was low on resource: memory.")
    assert pod_condition(pod, "DisruptionTarget")["reason"] == "TerminationByKubelet"  # type: ignore[index]
    assert sim.container()["state"]["terminated"]["exitCode"] == 137
    evicted = [e for e in sim.events(sim.pod_name) if e["reason"] == "Evicted"]
    assert evicted and evicted[0]["type"] == "Warning"
    await wait_for(lambda: sim.job_state() == "Failed", "job failed")
