"""The simulated Volcano controller over the real KubeSim: pods, plugins, PodGroup, phases, policies,
Commands, retries and TTL. time_scale 0.01; bounded polls, no timing assertions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim.store import COMMANDS, CONFIGMAPS, EVENTS, PODGROUPS, PODS, SERVICES, VCJOBS
from kubesim.testing import KubeSim
from tests.kubesim.polling import wait_for

SHARED = Path(__file__).parents[2].parent / "shared"
NS = "default"


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(namespaces=(NS,), tfjob_operator=None, volcano=True, time_scale=0.01, tls=False) as running:
        yield running



def example() -> dict[str, Any]:
    path = SHARED / "examples/volcano-tf-dist-mnist-example.yaml"
    if not path.is_file():
        raise AssertionError(f"{path} is missing: the tests need /work/shared next to the repository")
    body: dict[str, Any] = yaml.safe_load(path.read_text())
    body["metadata"]["namespace"] = NS
    return body


def vcjob(name: str, *, tasks: dict[str, int] | None = None, policies: list[dict[str, Any]] | None = None,
          task_policies: dict[str, list[dict[str, Any]]] | None = None, scenario: str | None = None,
          **spec: Any) -> dict[str, Any]:
    task_list = []
    for tname, replicas in (tasks or {"worker": 1}).items():
        task: dict[str, Any] = {"name": tname, "replicas": replicas, "template": {"spec": {
            "containers": [{"name": "tensorflow", "image": "tf:2"}], "restartPolicy": "Never"}}}
        if task_policies and tname in task_policies:
            task["policies"] = task_policies[tname]
        task_list.append(task)
    body: dict[str, Any] = {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
                            "metadata": {"name": name, "namespace": NS},
                            "spec": {"schedulerName": "volcano", "queue": "default", "tasks": task_list, **spec}}
    if policies:
        body["spec"]["policies"] = policies
    if scenario:
        body["metadata"]["annotations"] = {"kubesim.clever.dev/scenario": scenario}
    return body


def status(sim: KubeSim, name: str) -> dict[str, Any]:
    return (sim.store.try_get(VCJOBS, NS, name) or {}).get("status") or {}


def phase(sim: KubeSim, name: str) -> str:
    return str((status(sim, name).get("state") or {}).get("phase", ""))


def phases_seen(sim: KubeSim, name: str) -> list[str]:
    return [c["status"] for c in status(sim, name).get("conditions") or []]


def pods(sim: KubeSim) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in sim.store.list(PODS, NS)[0]}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env") or []}


def command(name: str, action: str, job: dict[str, Any]) -> dict[str, Any]:
    target = {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "name": job["metadata"]["name"],
              "uid": job["metadata"]["uid"], "controller": True}
    return {"apiVersion": "bus.volcano.sh/v1alpha1", "kind": "Command",
            "metadata": {"name": name, "namespace": NS, "ownerReferences": [target]},
            "action": action, "target": target}


async def test_upstream_example_pods_plugins_and_phases(sim: KubeSim) -> None:
    body = example()
    body["spec"]["plugins"]["tensorflow"] = ["--ps=ps", "--worker=worker", "--port=2222"]
    name = body["metadata"]["name"]
    sim.store.create(VCJOBS, body)
    await wait_for(lambda: phase(sim, name) == "Running", "Running")
    job = sim.store.get(VCJOBS, NS, name)
    uid = job["metadata"]["uid"]
    found = pods(sim)
    assert set(found) == {f"{name}-ps-0", f"{name}-worker-0", f"{name}-worker-1"}
    worker = found[f"{name}-worker-1"]
    assert worker["metadata"]["labels"] == {
        "volcano.sh/task-index": "1", "volcano.sh/job-name": name, "volcano.sh/task-spec": "worker",
        "volcano.sh/job-namespace": NS, "volcano.sh/queue-name": "default"}
    assert worker["metadata"]["annotations"] == {
        "volcano.sh/task-index": "1", "volcano.sh/task-spec": "worker", "scheduling.k8s.io/group-name": f"{name}-{uid}",
        "volcano.sh/job-name": name, "volcano.sh/queue-name": "default", "volcano.sh/job-version": "0",
        "volcano.sh/template-uid": f"{name}-worker", "volcano.sh/job-retry-count": "0"}
    assert worker["metadata"]["ownerReferences"] == [{
        "apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "name": name, "uid": uid, "controller": True,
        "blockOwnerDeletion": True}]
    assert worker["spec"]["schedulerName"] == "volcano"
    assert (worker["spec"]["hostname"], worker["spec"]["subdomain"]) == (f"{name}-worker-1", name)
    env = env_of(worker["spec"]["containers"][0])
    assert env["VK_TASK_INDEX"] == env["VC_TASK_INDEX"] == "1"
    assert env["VC_WORKER_HOSTS"] == f"{name}-worker-0.{name},{name}-worker-1.{name}"
    assert (env["VC_WORKER_NUM"], env["VC_PS_NUM"], env["VC_PS_HOSTS"]) == ("2", "1", f"{name}-ps-0.{name}")
    assert json.loads(env["TF_CONFIG"]) == {
        "cluster": {"ps": [f"{name}-ps-0.{name}:2222"],
                    "worker": [f"{name}-worker-0.{name}:2222", f"{name}-worker-1.{name}:2222"]},
        "task": {"type": "worker", "index": 1}}
    assert {"name": f"{name}-svc", "mountPath": "/etc/volcano"} in worker["spec"]["containers"][0]["volumeMounts"]
    service = sim.store.get(SERVICES, NS, name)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"volcano.sh/job-name": name, "volcano.sh/job-namespace": NS}
    config_map = sim.store.get(CONFIGMAPS, NS, f"{name}-svc")
    assert config_map["data"] == {"ps.host": f"{name}-ps-0.{name}",
                                  "worker.host": f"{name}-worker-0.{name}\n{name}-worker-1.{name}"}
    group = sim.store.get(PODGROUPS, NS, f"{name}-{uid}")
    assert group["spec"]["minMember"] == 3 and group["spec"]["queue"] == "default"
    assert group["status"]["phase"] == "Running"

    # the worker task's TaskCompleted → CompleteJob policy finishes the job
    await wait_for(lambda: phase(sim, name) == "Completed", "Completed")
    final = status(sim, name)
    assert phases_seen(sim, name) == ["Pending", "Running", "Completing", "Completed"]
    assert final["succeeded"] == 3 and final["minAvailable"] == 3 and final["failed"] == 0
    assert final["taskStatusCount"] == {"ps": {"phase": {"Succeeded": 1}}, "worker": {"phase": {"Succeeded": 2}}}
    assert final["controlledResources"] == {"plugin-env": "env", "plugin-svc": "svc",
                                            "plugin-tensorflow": "tensorflow"}
    assert final["runningDuration"].endswith("s") and final["version"] == 0 and final["retryCount"] == 0
    assert sim.store.get(PODGROUPS, NS, f"{name}-{uid}")["status"]["phase"] == "Completed"


async def test_single_task_single_replica_gets_no_tf_config(sim: KubeSim) -> None:
    sim.store.create(VCJOBS, vcjob("one", plugins={"tensorflow": [], "env": []}))
    pod = await wait_for(lambda: pods(sim).get("one-worker-0"), "pod")
    assert "TF_CONFIG" not in env_of(pod["spec"]["containers"][0])
    await wait_for(lambda: phase(sim, "one") == "Completed", "Completed")


async def test_gang_keeps_every_pod_pending_while_unschedulable(sim: KubeSim) -> None:
    sim.store.create(VCJOBS, vcjob("gang", tasks={"ps": 1, "worker": 2}, minAvailable=3, scenario="unschedulable"))
    await wait_for(lambda: len(pods(sim)) == 3 and all(
        any(c["type"] == "PodScheduled" and c["reason"] == "Unschedulable" for c in p["status"].get("conditions", []))
        for p in pods(sim).values()), "all pods unschedulable")
    assert all(p["status"]["phase"] == "Pending" for p in pods(sim).values())
    group = sim.store.list(PODGROUPS, NS)[0][0]
    assert group["status"]["phase"] == "Pending"
    assert group["status"]["conditions"][0]["reason"] == "NotEnoughResources"
    assert phase(sim, "gang") == "Pending"
    scheduler_events = [e for e in sim.store.list(EVENTS, NS)[0] if e["reason"] == "FailedScheduling"]
    assert len(scheduler_events) == 3 and {e["source"]["component"] for e in scheduler_events} == {"volcano"}


async def test_no_policy_failure_fails_the_job(sim: KubeSim) -> None:
    sim.store.create(VCJOBS, vcjob("nf", scenario="fail:exit=3,after=1"))
    await wait_for(lambda: phase(sim, "nf") == "Failed", "Failed")
    assert status(sim, "nf")["failed"] == 1 and status(sim, "nf")["retryCount"] == 0


async def test_pod_failed_restart_job_until_max_retry(sim: KubeSim) -> None:
    sim.store.create(VCJOBS, vcjob("rj", tasks={"worker": 2}, maxRetry=2, scenario="fail:after=1",
                                   policies=[{"event": "PodFailed", "action": "RestartJob"}]))
    await wait_for(lambda: phase(sim, "rj") == "Failed", "Failed after retries")
    final = status(sim, "rj")
    assert final["retryCount"] == 2
    seen = phases_seen(sim, "rj")
    assert seen.count("Restarting") == 2 and seen[-1] == "Failed"
    assert seen[:3] == ["Pending", "Running", "Restarting"]
    assert not pods(sim)  # RestartJob kills every pod, also on the last round


async def test_restart_recreates_pods_with_the_new_version(sim: KubeSim) -> None:
    assert sim.controllers is not None
    sim.store.create(VCJOBS, vcjob("rv", maxRetry=3, scenario="fail:after=20",
                                   policies=[{"event": "PodFailed", "action": "RestartJob"}]))
    await wait_for(lambda: status(sim, "rv").get("retryCount") == 1, "first restart")
    # the second round runs a passing workload (20 simulated seconds leave room to switch)
    sim.controllers.set_job_scenario(NS, "rv", "succeed:after=1")
    pod = await wait_for(lambda: (pods(sim).get("rv-worker-0") or {}).get("metadata", {}).get("annotations", {})
                         .get("volcano.sh/job-retry-count") == "1" and pods(sim)["rv-worker-0"], "new pod")
    assert pod["metadata"]["annotations"]["volcano.sh/job-version"] == "1"
    await wait_for(lambda: phase(sim, "rv") == "Completed", "Completed after one restart")
    assert status(sim, "rv")["retryCount"] == 1


async def test_task_policy_wins_over_job_policy(sim: KubeSim) -> None:
    sim.store.create(VCJOBS, vcjob("tp", scenario="fail:after=1",
                                   policies=[{"event": "PodFailed", "action": "RestartJob"}],
                                   task_policies={"worker": [{"event": "PodFailed", "action": "AbortJob"}]}))
    await wait_for(lambda: phase(sim, "tp") == "Aborted", "Aborted")
    assert status(sim, "tp")["retryCount"] == 0


async def test_exit_code_policy(sim: KubeSim) -> None:
    sim.store.create(VCJOBS, vcjob("ec", scenario="fail:exit=3,after=1",
                                   policies=[{"exitCode": 3, "action": "TerminateJob"}]))
    await wait_for(lambda: phase(sim, "ec") == "Terminated", "Terminated")
    assert phases_seen(sim, "ec")[-2:] == ["Terminating", "Terminated"]


async def test_abort_and_resume_by_command(sim: KubeSim) -> None:
    sim.store.create(VCJOBS, vcjob("ab", tasks={"worker": 2}, scenario="hold"))
    await wait_for(lambda: phase(sim, "ab") == "Running" and status(sim, "ab").get("running") == 2, "Running")
    job = sim.store.get(VCJOBS, NS, "ab")
    sim.store.create(COMMANDS, command("ab-abort", "AbortJob", job))
    await wait_for(lambda: phase(sim, "ab") == "Aborted", "Aborted")
    assert not pods(sim)
    assert sim.store.try_get(COMMANDS, NS, "ab-abort") is None  # the controller consumes commands
    assert phases_seen(sim, "ab")[-2:] == ["Aborting", "Aborted"]
    await asyncio.sleep(0.05)
    assert phase(sim, "ab") == "Aborted" and not pods(sim)  # stays aborted

    sim.store.create(COMMANDS, command("ab-resume", "ResumeJob", job))
    await wait_for(lambda: phase(sim, "ab") == "Running" and status(sim, "ab").get("running") == 2, "resumed")
    assert status(sim, "ab")["retryCount"] == 1
    assert phases_seen(sim, "ab")[-3:] == ["Restarting", "Pending", "Running"]
    reasons = [e["reason"] for e in sim.store.list(EVENTS, NS)[0] if e["involvedObject"]["name"] == "ab"]
    assert reasons.count("CommandIssued") == 2


async def test_ttl_after_finished_deletes_the_job(sim: KubeSim) -> None:
    sim.store.create(VCJOBS, vcjob("ttl", ttlSecondsAfterFinished=2, scenario="succeed:after=1"))
    await wait_for(lambda: phase(sim, "ttl") == "Completed", "Completed")
    await wait_for(lambda: sim.store.try_get(VCJOBS, NS, "ttl") is None, "TTL deletion")
    await wait_for(lambda: not pods(sim) and not sim.store.list(PODGROUPS, NS)[0], "dependents collected")



async def test_scaling_a_task_creates_and_removes_pods(sim: KubeSim) -> None:
    sim.store.create(VCJOBS, vcjob("sc", tasks={"worker": 2}, minAvailable=1, scenario="hold"))
    await wait_for(lambda: set(pods(sim)) == {"sc-worker-0", "sc-worker-1"}, "two pods")
    job = sim.store.get(VCJOBS, NS, "sc")
    job["spec"]["tasks"][0]["replicas"] = 1
    sim.store.update(VCJOBS, job)
    await wait_for(lambda: set(pods(sim)) == {"sc-worker-0"}, "one pod left")
    job = sim.store.get(VCJOBS, NS, "sc")
    job["spec"]["tasks"][0]["replicas"] = 3
    sim.store.update(VCJOBS, job)
    await wait_for(lambda: set(pods(sim)) == {"sc-worker-0", "sc-worker-1", "sc-worker-2"}, "three pods")


async def test_pod_evicted_restart_job_policy_of_the_upstream_example(sim: KubeSim) -> None:
    body = example()
    body["metadata"]["annotations"] = {"kubesim.clever.dev/scenario": "evicted:after=1"}
    body["spec"]["maxRetry"] = 2
    name = body["metadata"]["name"]
    sim.store.create(VCJOBS, body)
    await wait_for(lambda: phase(sim, name) == "Failed", "Failed after evictions")
    assert status(sim, name)["retryCount"] == 2
    assert phases_seen(sim, name).count("Restarting") == 2


async def test_pods_wait_for_the_gang_then_all_start(sim: KubeSim) -> None:
    # minAvailable above the replica count: the PodGroup cannot be admitted until the task grows
    sim.store.create(VCJOBS, vcjob("wait", tasks={"worker": 2}, minAvailable=3, scenario="hold"))
    await wait_for(lambda: len(pods(sim)) == 2, "pods created")
    for _ in range(20):  # 20 simulated seconds: nobody is bound while the gang is incomplete
        await asyncio.sleep(0.01)
        assert all(not p["spec"].get("nodeName") and p["status"]["phase"] == "Pending" for p in pods(sim).values())
    assert sim.store.list(PODGROUPS, NS)[0][0]["status"]["phase"] == "Inqueue"
    job = sim.store.get(VCJOBS, NS, "wait")
    job["spec"]["tasks"][0]["replicas"] = 3
    sim.store.update(VCJOBS, job)
    await wait_for(lambda: len(pods(sim)) == 3 and all(p["status"]["phase"] == "Running" for p in pods(sim).values()),
                   "the whole gang running")
    await wait_for(lambda: phase(sim, "wait") == "Running", "job Running")
