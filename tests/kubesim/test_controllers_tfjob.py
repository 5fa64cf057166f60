"""The simulated TFJob operator (training-operator v1.9 and the older tf-operator) over a real Store.

Time runs at time_scale 0.01 (1 simulated second = 10 ms); every wait is a bounded poll, nothing
asserts on elapsed time.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kubesim.controllers import Controllers, ScenarioError
from kubesim.store import EVENTS, PODS, SERVICES, TFJOBS, Store
from kubesim.testing import KubeSim
from tests.kubesim.polling import wait_for

SHARED = Path(__file__).parents[2].parent / "shared"
NS = "default"


Sim = KubeSim


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[KubeSim]:
    operator = getattr(request, "param", "training-operator")
    async with KubeSim(namespaces=(NS, "kube-test", "kubeflow"), tfjob_operator=operator, volcano=False,
                       time_scale=0.01, tls=False) as running:
        yield running


both_dialects = pytest.mark.parametrize("sim", ["training-operator", "tf-operator"], indirect=True)



def shared_file(relative: str) -> Path:
    path = SHARED / relative
    if not path.is_file():
        raise AssertionError(f"{path} is missing: the tests need /work/shared next to the repository")
    return path


def seed_000_request() -> dict[str, Any]:
    """The request JSON of seed 000 (create TFJob, tf-operator dialect)."""
    text = shared_file("seeds/000_2f6f5c919d1a6914.txt").read_text()
    blocks = re.findall(r"```\s*\n(.*?)```", text, flags=re.DOTALL)
    request: dict[str, Any] = json.loads(blocks[0])
    return request


def tfjob(name: str, *, replicas: dict[str, int] | None = None, restart: str | None = None,
          run_policy: dict[str, Any] | None = None, dialect: str = "training-operator",
          scenario: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    replica_specs: dict[str, Any] = {}
    for rtype, count in (replicas or {"Worker": 1}).items():
        template: dict[str, Any] = {"spec": {"containers": [{"name": "tensorflow", "image": "tf:2"}]}}
        if labels:
            template["metadata"] = {"labels": dict(labels)}
        replica_specs[rtype] = {"replicas": count, "template": template}
        if restart:
            replica_specs[rtype]["restartPolicy"] = restart
    spec: dict[str, Any] = {"tfReplicaSpecs": replica_specs}
    if run_policy:
        if dialect == "tf-operator":
            spec.update(run_policy)
        else:
            spec["runPolicy"] = run_policy
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if scenario:
        meta["annotations"] = {"kubesim.clever.dev/scenario": scenario}
    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": meta, "spec": spec}


def dialect_of(sim: Sim) -> str:
    assert sim.controllers.tfjobs is not None
    return str(sim.controllers.tfjobs.dialect)


def condition(sim: Sim, name: str, ctype: str, ns: str = NS) -> dict[str, Any] | None:
    job = sim.store.try_get(TFJOBS, ns, name) or {}
    return next((c for c in (job.get("status") or {}).get("conditions") or []
                 if c["type"] == ctype and c["status"] == "True"), None)


def pods(sim: Sim, ns: str = NS) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in sim.store.list(PODS, ns)[0]}


def events(sim: Sim, name: str, ns: str = NS) -> list[dict[str, Any]]:
    return [e for e in sim.store.list(EVENTS, ns)[0] if e["involvedObject"]["name"] == name]


def tf_config_of(pod: dict[str, Any]) -> dict[str, Any] | None:
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "tensorflow")
    value = next((e["value"] for e in container.get("env") or [] if e["name"] == "TF_CONFIG"), None)
    return json.loads(value) if value is not None else None


def container_status(pod: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = pod["status"]["containerStatuses"][0]
    return first


# -- seeds and upstream examples ---------------------------------------------------------------------

@pytest.mark.parametrize("sim", ["tf-operator"], indirect=True)
async def test_seed_000_tf_operator_create_to_succeeded(sim: Sim) -> None:
    body = seed_000_request()
    body["metadata"]["namespace"] = "kube-test"
    submitted_spec = copy.deepcopy(body["spec"])
    sim.store.create(TFJOBS, body)

    created = await wait_for(lambda: condition(sim, "tfjob-test", "Created", "kube-test"), "Created")
    assert (created["reason"], created["message"]) == ("TFJobCreated", "TFJob tfjob-test is created.")
    running = await wait_for(lambda: condition(sim, "tfjob-test", "Running", "kube-test"), "Running")
    assert (running["reason"], running["message"]) == ("TFJobRunning", "TFJob tfjob-test is running.")

    found = pods(sim, "kube-test")
    assert set(found) == {"tfjob-test-ps-0", "tfjob-test-worker-0"}
    job = sim.store.get(TFJOBS, "kube-test", "tfjob-test")
    assert job["spec"] == submitted_spec  # defaults are never persisted
    worker, ps = found["tfjob-test-worker-0"], found["tfjob-test-ps-0"]
    assert worker["metadata"]["labels"] == {"group-name": "kubeflow.org", "job-name": "tfjob-test",
                                            "tf-job-name": "tfjob-test", "replica-type": "worker",
                                            "replica-index": "0", "job-role": "master"}
    assert "job-role" not in ps["metadata"]["labels"] and ps["metadata"]["labels"]["replica-type"] == "ps"
    assert worker["metadata"]["ownerReferences"] == [{
        "apiVersion": "kubeflow.org/v1", "kind": "TFJob", "name": "tfjob-test", "uid": job["metadata"]["uid"],
        "controller": True, "blockOwnerDeletion": True}]
    assert tf_config_of(worker) == {
        "cluster": {"ps": ["tfjob-test-ps-0.kube-test.svc:2222"], "worker": ["tfjob-test-worker-0.kube-test.svc:2222"]},
        "task": {"type": "worker", "index": 0}, "environment": "cloud"}
    assert tf_config_of(ps)["task"] == {"type": "ps", "index": 0}  # type: ignore[index]
    # the replica's default restartPolicy (Never) overrides the template's OnFailure
    assert worker["spec"]["restartPolicy"] == "Never"
    services = {s["metadata"]["name"]: s for s in sim.store.list(SERVICES, "kube-test")[0]}
    assert set(services) == {"tfjob-test-ps-0", "tfjob-test-worker-0"}
    assert services["tfjob-test-ps-0"]["spec"]["clusterIP"] == "None"
    assert services["tfjob-test-ps-0"]["spec"]["ports"][0]["port"] == 2222

    succeeded = await wait_for(lambda: condition(sim, "tfjob-test", "Succeeded", "kube-test"), "Succeeded")
    assert (succeeded["reason"], succeeded["message"]) == ("TFJobSucceeded", "TFJob tfjob-test successfully completed.")
    job = sim.store.get(TFJOBS, "kube-test", "tfjob-test")
    assert [c["type"] for c in job["status"]["conditions"]] == ["Created", "Running", "Succeeded"]
    assert job["status"]["conditions"][1]["status"] == "False"
    assert job["status"]["startTime"] and job["status"]["completionTime"] and job["status"]["lastReconcileTime"]
    # tf-operator cleans Running pods by default: the parameter server goes, the worker stays
    await wait_for(lambda: set(pods(sim, "kube-test")) == {"tfjob-test-worker-0"}, "PS pod cleanup")
    assert pods(sim, "kube-test")["tfjob-test-worker-0"]["status"]["phase"] == "Succeeded"
    job_events = events(sim, "tfjob-test", "kube-test")
    assert {"SuccessfulCreatePod", "SuccessfulCreateService", "TFJobSucceeded"} <= {e["reason"] for e in job_events}
    assert {e["source"]["component"] for e in job_events} == {"tf-operator"}
    log_text = "".join(line.text for line in sim.store.logs("kube-test", "tfjob-test-worker-0", "tensorflow"))
    assert "TF_CONFIG" in log_text and "Training finished." in log_text


async def test_dist_mnist_example_is_chief_driven(sim: Sim) -> None:
    body = yaml.safe_load(shared_file("examples/kubeflow-tfjob-dist-mnist.yaml").read_text())
    body["metadata"]["namespace"] = NS
    # 30 simulated seconds (0.3 s here) of Running: long enough for the poll to see it on a loaded machine.
    body["metadata"]["annotations"] = {"kubesim.clever.dev/scenario": "succeed:after=30"}
    name = body["metadata"]["name"]
    sim.store.create(TFJOBS, body)
    running = await wait_for(lambda: condition(sim, name, "Running"), "Running")
    assert running["message"] == f"TFJob {NS}/{name} is running."
    found = pods(sim)
    assert set(found) == {f"{name}-chief-0", f"{name}-ps-0", f"{name}-worker-0", f"{name}-worker-1"}
    chief = found[f"{name}-chief-0"]
    assert chief["metadata"]["labels"] == {
        "training.kubeflow.org/operator-name": "tfjob-controller", "training.kubeflow.org/job-name": name,
        "training.kubeflow.org/replica-type": "chief", "training.kubeflow.org/replica-index": "0",
        "training.kubeflow.org/job-role": "master"}
    assert "training.kubeflow.org/job-role" not in found[f"{name}-worker-0"]["metadata"]["labels"]
    config = tf_config_of(found[f"{name}-worker-1"])
    assert config == {"cluster": {"chief": [f"{name}-chief-0.{NS}.svc:2222"], "ps": [f"{name}-ps-0.{NS}.svc:2222"],
                                  "worker": [f"{name}-worker-0.{NS}.svc:2222", f"{name}-worker-1.{NS}.svc:2222"]},
                      "task": {"type": "worker", "index": 1}, "environment": "cloud"}
    done = await wait_for(lambda: condition(sim, name, "Succeeded"), "Succeeded")
    assert (done["reason"], done["message"]) == ("TFJobSucceeded", f"TFJob {NS}/{name} successfully completed.")
    status = sim.store.get(TFJOBS, NS, name)["status"]
    # on success the operator moves remaining active replicas into succeeded
    assert status["replicaStatuses"]["Chief"] == {"succeeded": 1}
    assert status["replicaStatuses"]["PS"] == {"succeeded": 1}
    # training-operator's default cleanPodPolicy is None: the parameter server keeps running
    assert pods(sim)[f"{name}-ps-0"]["status"]["phase"] == "Running"


async def test_simple_example_worker0_success_and_template_labels_kept(sim: Sim) -> None:
    body = yaml.safe_load(shared_file("examples/kubeflow-tfjob-simple.yaml").read_text())
    body["spec"]["tfReplicaSpecs"]["Worker"]["template"]["metadata"] = {"labels": {"clever.dev/job-id": "j-1"}}
    sim.store.create(TFJOBS, body)
    await wait_for(lambda: condition(sim, "tfjob-simple", "Succeeded", "kubeflow"), "Succeeded")
    found = pods(sim, "kubeflow")
    assert set(found) == {"tfjob-simple-worker-0", "tfjob-simple-worker-1"}
    for pod in found.values():
        assert pod["metadata"]["labels"]["clever.dev/job-id"] == "j-1"
        assert pod["spec"]["restartPolicy"] == "OnFailure"
        assert pod["spec"]["containers"][0]["ports"] == [{"name": "tfjob-port", "containerPort": 2222}]


@both_dialects
async def test_single_worker_has_no_tf_config(sim: Sim) -> None:
    sim.store.create(TFJOBS, tfjob("solo", dialect=dialect_of(sim)))
    found = await wait_for(lambda: pods(sim).get("solo-worker-0"), "pod")
    assert tf_config_of(found) is None
    await wait_for(lambda: condition(sim, "solo", "Succeeded"), "Succeeded")


# -- scenarios ------------------------------------------------------------------------------------

def _ref(sim: Sim, name: str) -> str:
    return name if dialect_of(sim) == "tf-operator" else f"{NS}/{name}"


@both_dialects
async def test_fail_with_never_fails_the_job(sim: Sim) -> None:
    sim.store.create(TFJOBS, tfjob("f", dialect=dialect_of(sim), scenario="fail:exit=3,after=1"))
    failed = await wait_for(lambda: condition(sim, "f", "Failed"), "Failed")
    assert failed["reason"] == "TFJobFailed"
    assert failed["message"] == f"TFJob {_ref(sim, 'f')} has failed because 1 Worker replica(s) failed."
    pod = pods(sim)["f-worker-0"]
    assert pod["status"]["phase"] == "Failed"
    terminated = container_status(pod)["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("Error", 3)
    status = sim.store.get(TFJOBS, NS, "f")["status"]
    assert status["replicaStatuses"]["Worker"] == {"failed": 1} and status["completionTime"]
    assert "TFJobFailed" in {e["reason"] for e in events(sim, "f")}


@both_dialects
async def test_fail_with_onfailure_restarts_in_place_until_backoff_limit(sim: Sim) -> None:
    sim.store.create(TFJOBS, tfjob("b", dialect=dialect_of(sim), restart="OnFailure",
                                   run_policy={"backoffLimit": 2, "cleanPodPolicy": "None"},
                                   scenario="fail:after=1"))
    failed = await wait_for(lambda: condition(sim, "b", "Failed"), "Failed")
    assert failed["message"] == "Job b has failed because it has reached the specified backoff limit"
    await wait_for(lambda: container_status(pods(sim)["b-worker-0"])["restartCount"] >= 2, "restarts")
    pod = pods(sim)["b-worker-0"]
    assert pod["status"]["phase"] == "Running"  # the kubelet restarts the container; the pod never fails
    assert container_status(pod)["lastState"]["terminated"]["reason"] == "Error"
    assert "BackOff" in {e["reason"] for e in events(sim, "b-worker-0")}


async def test_exit_code_policy_retries_only_retryable_codes(sim: Sim) -> None:
    sim.store.create(TFJOBS, tfjob("r", restart="ExitCode", run_policy={"backoffLimit": 1},
                                   scenario="fail:exit=137,after=1"))
    first = await wait_for(lambda: pods(sim).get("r-worker-0"), "first pod")
    assert first["spec"]["restartPolicy"] == "Never"  # ExitCode is the operator's business, not the kubelet's
    restarting = await wait_for(lambda: condition(sim, "r", "Restarting"), "Restarting")
    assert restarting["reason"] == "TFJobRestarting"
    assert restarting["message"] == "TFJob r is restarting because 1 Worker replica(s) failed."
    await wait_for(lambda: (pods(sim).get("r-worker-0") or first)["metadata"]["uid"] != first["metadata"]["uid"],
                   "the failed pod replaced by a new one")
    failed = await wait_for(lambda: condition(sim, "r", "Failed"), "Failed after retries")
    assert "backoff limit" in failed["message"]

    sim.store.create(TFJOBS, tfjob("p", restart="ExitCode", scenario="fail:exit=2,after=1"))
    failed = await wait_for(lambda: condition(sim, "p", "Failed"), "permanent failure")
    assert failed["message"] == f"TFJob {NS}/p has failed because 1 Worker replica(s) failed."
    assert not any(c["type"] == "Restarting" for c in sim.store.get(TFJOBS, NS, "p")["status"]["conditions"])


@both_dialects
async def test_active_deadline_fails_a_running_job(sim: Sim) -> None:
    sim.store.create(TFJOBS, tfjob("d", dialect=dialect_of(sim), run_policy={"activeDeadlineSeconds": 3},
                                   scenario="hold"))
    failed = await wait_for(lambda: condition(sim, "d", "Failed"), "deadline")
    assert failed["message"] == "Job d has failed because it was active longer than specified deadline"


@pytest.mark.parametrize(("policy", "remaining"), [
    ("None", {"c-ps-0": "Running", "c-worker-0": "Succeeded"}),
    ("Running", {"c-worker-0": "Succeeded"}),
    ("All", {}),
])
async def test_clean_pod_policy_on_finish(sim: Sim, policy: str, remaining: dict[str, str]) -> None:
    sim.store.create(TFJOBS, tfjob("c", replicas={"PS": 1, "Worker": 1}, run_policy={"cleanPodPolicy": policy},
                                   scenario="succeed:after=1"))
    await wait_for(lambda: condition(sim, "c", "Succeeded"), "Succeeded")
    await wait_for(lambda: {n: p["status"]["phase"] for n, p in pods(sim).items()} == remaining,
                   f"pods left by cleanPodPolicy {policy}")
    services = {s["metadata"]["name"] for s in sim.store.list(SERVICES, NS)[0]}
    assert services == set(remaining)


@both_dialects
async def test_ttl_after_finished_deletes_the_job(sim: Sim) -> None:
    sim.store.create(TFJOBS, tfjob("t", dialect=dialect_of(sim), run_policy={"ttlSecondsAfterFinished": 2},
                                   scenario="succeed:after=1"))
    await wait_for(lambda: condition(sim, "t", "Succeeded"), "Succeeded")
    await wait_for(lambda: sim.store.try_get(TFJOBS, NS, "t") is None, "TTL deletion")


async def test_suspend_deletes_pods_and_resume_starts_again(sim: Sim) -> None:
    sim.store.create(TFJOBS, tfjob("s", replicas={"Worker": 2}, scenario="hold"))
    await wait_for(lambda: condition(sim, "s", "Running"), "Running")
    first_start = sim.store.get(TFJOBS, NS, "s")["status"]["startTime"]
    job = sim.store.get(TFJOBS, NS, "s")
    job["spec"]["runPolicy"] = {"suspend": True}
    sim.store.update(TFJOBS, job)
    suspended = await wait_for(lambda: condition(sim, "s", "Suspended"), "Suspended")
    assert (suspended["reason"], suspended["message"]) == ("TFJobSuspended", "TFJob s is suspended.")
    await wait_for(lambda: not pods(sim), "pods deleted")
    running = next(c for c in sim.store.get(TFJOBS, NS, "s")["status"]["conditions"] if c["type"] == "Running")
    assert running["status"] == "False" and running["reason"] == "TFJobSuspended"

    job = sim.store.get(TFJOBS, NS, "s")
    job["spec"]["runPolicy"] = {"suspend": False}
    sim.store.update(TFJOBS, job)
    sim.controllers.set_job_scenario(NS, "s", "succeed:after=1")
    await wait_for(lambda: condition(sim, "s", "Succeeded"), "Succeeded after resume")
    status = sim.store.get(TFJOBS, NS, "s")["status"]
    resumed = next(c for c in status["conditions"] if c["type"] == "Suspended")
    assert (resumed["status"], resumed["reason"], resumed["message"]) == ("False", "TFJobResumed", "TFJob s is resumed.")
    assert status["startTime"] >= first_start
    assert {"TFJobSuspended", "TFJobResumed"} <= {e["reason"] for e in events(sim, "s")}


@pytest.mark.parametrize("sim", ["tf-operator"], indirect=True)
async def test_tf_operator_ignores_run_policy_object(sim: Sim) -> None:
    body = tfjob("old", scenario="hold")
    body["spec"]["runPolicy"] = {"suspend": True, "activeDeadlineSeconds": 1}
    sim.store.create(TFJOBS, body)
    await wait_for(lambda: condition(sim, "old", "Running"), "Running")
    sim.controllers.set_job_scenario(NS, "old", "succeed:after=1")
    await wait_for(lambda: condition(sim, "old", "Succeeded"), "Succeeded")
    assert not condition(sim, "old", "Suspended") and not condition(sim, "old", "Failed")


async def test_deleting_the_job_collects_pods_and_services(sim: Sim) -> None:
    sim.store.create(TFJOBS, tfjob("g", replicas={"Worker": 2}, scenario="hold"))
    await wait_for(lambda: len(pods(sim)) == 2 and condition(sim, "g", "Running"), "Running")
    sim.store.delete(TFJOBS, NS, "g")
    await wait_for(lambda: not pods(sim) and not sim.store.list(SERVICES, NS)[0], "garbage collection")
    await asyncio.sleep(0.05)
    assert not pods(sim)  # nothing recreates them


async def test_scaling_workers_creates_and_removes_pods(sim: Sim) -> None:
    sim.store.create(TFJOBS, tfjob("sc", replicas={"Worker": 2}, scenario="hold"))
    await wait_for(lambda: set(pods(sim)) == {"sc-worker-0", "sc-worker-1"}, "two workers")
    job = sim.store.get(TFJOBS, NS, "sc")
    job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = 3
    sim.store.update(TFJOBS, job)
    await wait_for(lambda: set(pods(sim)) == {"sc-worker-0", "sc-worker-1", "sc-worker-2"}, "three workers")
    config = tf_config_of(pods(sim)["sc-worker-2"]) or {}
    assert len(config["cluster"]["worker"]) == 3
    job = sim.store.get(TFJOBS, NS, "sc")
    job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = 1
    sim.store.update(TFJOBS, job)
    await wait_for(lambda: set(pods(sim)) == {"sc-worker-0"}, "one worker left")
    await wait_for(lambda: {s["metadata"]["name"] for s in sim.store.list(SERVICES, NS)[0]} == {"sc-worker-0"},
                   "one service left")


async def test_job_runs_to_success_through_the_https_api() -> None:
    async with KubeSim(namespaces=(NS,), time_scale=0.01) as running:  # TLS on, like the gateway sees it
        headers = {"Authorization": f"Bearer {running.token}"}
        context = ssl.create_default_context(cafile=running.ca_file)
        base = f"{running.url}/apis/kubeflow.org/v1/namespaces/{NS}/tfjobs"
        async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(ssl=context)) as http:
            async with http.post(base, json=tfjob("web", replicas={"Worker": 2}, scenario="succeed:after=1")) as r:
                assert r.status == 201
            for _ in range(400):
                async with http.get(f"{base}/web") as r:
                    body = await r.json()
                true = {c["type"] for c in body.get("status", {}).get("conditions", []) if c["status"] == "True"}
                if "Succeeded" in true:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the TFJob never succeeded")
            log_url = f"{running.url}/api/v1/namespaces/{NS}/pods/web-worker-0/log?container=tensorflow"
            async with http.get(log_url) as r:
                assert r.status == 200
                text = await r.text()
    assert '"task": {"index": 0, "type": "worker"}' in text and "Training finished." in text


async def test_evicted_pod_with_onfailure_is_recreated_by_the_operator(sim: Sim) -> None:
    sim.store.create(TFJOBS, tfjob("ev", restart="OnFailure", scenario="evicted:after=1"))
    first = await wait_for(lambda: pods(sim).get("ev-worker-0"), "first pod")
    restarting = await wait_for(lambda: condition(sim, "ev", "Restarting"), "Restarting")
    assert restarting["message"] == "TFJob ev is restarting because 1 Worker replica(s) failed."
    await wait_for(lambda: (pods(sim).get("ev-worker-0") or first)["metadata"]["uid"] != first["metadata"]["uid"],
                   "replacement pod")
    sim.controllers.set_job_scenario(NS, "ev", "succeed:after=1")
    await wait_for(lambda: condition(sim, "ev", "Succeeded"), "Succeeded after the eviction")


async def test_stop_halts_reconciling_and_is_idempotent() -> None:
    store = Store(namespaces=(NS,))
    controllers = Controllers(store, time_scale=0.01)
    await controllers.start()
    await controllers.stop()
    await controllers.stop()
    store.create(TFJOBS, tfjob("stopped"))
    await asyncio.sleep(0.05)
    assert not store.list(PODS, NS)[0] and not store.get(TFJOBS, NS, "stopped").get("status")


async def test_malformed_scenarios() -> None:
    store = Store(namespaces=(NS,))
    controllers = Controllers(store, time_scale=0.01, default_scenario="succeed:after=1")
    with pytest.raises(ScenarioError):
        controllers.set_job_scenario(NS, "x", "explode")
    with pytest.raises(ScenarioError):
        controllers.set_default_scenario("fail:exit=x")
    with pytest.raises(ValueError, match="tfjob_operator"):
        Controllers(store, tfjob_operator="mpi-operator")  # type: ignore[arg-type]
    await controllers.start()
    try:
        # a bad annotation is ignored in favour of the cluster default
        store.create(TFJOBS, tfjob("bad", scenario="explode"))
        for _ in range(400):
            job = store.get(TFJOBS, NS, "bad")
            if any(c["type"] == "Succeeded" for c in (job.get("status") or {}).get("conditions") or []):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the job with a malformed scenario annotation never succeeded")
    finally:
        await controllers.stop()
