"""The simulated JobSet controller (jobset v0.12.0), Job controller and kubelet together: JobSets created
over HTTP (so through the webhooks) run to Completed or Failed the way a Trainer v2 cluster runs them.

Time runs at time_scale 0.01 (1 simulated second = 10 ms); every wait is a bounded poll.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from kubesim import podenv, schema
from kubesim.store import BATCH_JOBS, EVENTS, JOBSETS, PODS, SERVICES
from kubesim.testing import KubeSim
from tests.kubesim.conftest import Api
from tests.kubesim.jobsets import JOBSETS_PATH, clean, cluster_spec, condition, tf_jobset
from tests.kubesim.polling import wait_for

NS = "team-a"
SCENARIO = "kubesim.clever.dev/scenario"
LONG = 1500  # polls for flows that go through several pod lifetimes


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(namespaces=(NS, "default"), tfjob_operator=None, volcano=False, jobset=True,
                       time_scale=0.01, tls=False) as running:
        yield running


@pytest.fixture
async def api(sim: KubeSim) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"}) as session:
        yield Api(sim, session, None)


async def create(api: Api, body: dict[str, Any], ns: str = NS) -> dict[str, Any]:
    reply = await api.post(JOBSETS_PATH.format(ns=ns), body)
    assert reply.status == 201, reply.body
    created: dict[str, Any] = reply.body
    return created


def jobset_of(sim: KubeSim, name: str = "j1") -> dict[str, Any] | None:
    return sim.store.try_get(JOBSETS, NS, name)


def pods_of(sim: KubeSim, name: str = "j1") -> list[dict[str, Any]]:
    return sim.store.list(PODS, NS, label_selector=f"jobset.sigs.k8s.io/jobset-name={name}")[0]


def running_pods(sim: KubeSim, name: str, count: int) -> list[dict[str, Any]] | None:
    pods = [p for p in pods_of(sim, name) if p["status"].get("phase") == "Running"]
    return pods if len(pods) == count else None


def jobs_of(sim: KubeSim, name: str = "j1") -> dict[str, dict[str, Any]]:
    return {j["metadata"]["name"]: j for j in
            sim.store.list(BATCH_JOBS, NS, label_selector=f"jobset.sigs.k8s.io/jobset-name={name}")[0]}


def events_for(sim: KubeSim, name: str, kind: str = "JobSet") -> list[dict[str, Any]]:
    return [e for e in sim.store.list(EVENTS, NS)[0]
            if e["involvedObject"]["name"] == name and e["involvedObject"]["kind"] == kind]


def status_is_valid(js: dict[str, Any]) -> None:
    assert schema.check(JOBSETS, js).causes == [], schema.check(JOBSETS, js).causes


def index_of(pod: dict[str, Any]) -> int:
    return int(pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"])


def tensorflow(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = next(c for c in pod["spec"]["containers"] if c["name"] == "tensorflow")
    return container


def logged_tf_config(sim: KubeSim, pod: dict[str, Any]) -> dict[str, Any]:
    """The TF_CONFIG the simulated program printed at start, as a client reading its log would parse it."""
    lines = [line.text for line in sim.store.logs(NS, pod["metadata"]["name"], "tensorflow")]
    prefix = "INFO:tensorflow:TF_CONFIG environment variable: "
    logged: dict[str, Any] = json.loads(next(t for t in lines if t.startswith(prefix))[len(prefix):])
    return logged


def jobset_keys(js: dict[str, Any], rjob: str, replicas: dict[str, int]) -> dict[str, str]:
    """The labels (and annotations) upstream puts on the Job of index 0 of `rjob` and on its pods."""
    names = list(replicas)
    global_index = sum(replicas[n] for n in names[:names.index(rjob)])
    return {
        "jobset.sigs.k8s.io/jobset-name": js["metadata"]["name"],
        "jobset.sigs.k8s.io/jobset-uid": js["metadata"]["uid"],
        "jobset.sigs.k8s.io/replicatedjob-name": rjob,
        "jobset.sigs.k8s.io/replicatedjob-replicas": "1",
        "jobset.sigs.k8s.io/restart-attempt": "0",
        "jobset.sigs.k8s.io/global-replicas": str(sum(replicas.values())),
        "jobset.sigs.k8s.io/job-index": "0",
        "jobset.sigs.k8s.io/job-global-index": str(global_index),
        "jobset.sigs.k8s.io/job-key": hashlib.sha1(f"{NS}/{js['metadata']['name']}-{rjob}-0".encode()).hexdigest(),
        "jobset.sigs.k8s.io/group-name": "default",
        "jobset.sigs.k8s.io/group-replicas": str(sum(replicas.values())),
        "jobset.sigs.k8s.io/job-group-index": str(global_index),
    }


# -- children ------------------------------------------------------------------------------------------


async def test_a_tf_jobset_gets_jobs_pods_a_headless_service_and_labels(sim: KubeSim, api: Api) -> None:
    js = await create(api, tf_jobset("j1", annotations={SCENARIO: "hold"}))
    pods = await wait_for(lambda: running_pods(sim, "j1", 6), "6 running pods")
    replicas = {"chief": 1, "ps": 1, "worker": 1}  # one Job per replicated job
    jobs = jobs_of(sim)
    assert sorted(jobs) == ["j1-chief-0", "j1-ps-0", "j1-worker-0"]
    owner = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "name": "j1", "uid": js["metadata"]["uid"],
             "controller": True, "blockOwnerDeletion": True}
    for rjob, count in (("chief", 1), ("ps", 2), ("worker", 3)):
        job = jobs[f"j1-{rjob}-0"]
        keys = jobset_keys(js, rjob, replicas)
        assert job["metadata"]["labels"] == keys and job["metadata"]["annotations"] == keys
        assert job["metadata"]["ownerReferences"] == [owner]
        spec = job["spec"]
        assert (spec["completionMode"], spec["parallelism"], spec["completions"], spec["suspend"]) == \
            ("Indexed", count, count, False)
        assert spec["backoffLimit"] == 6 and spec["template"]["spec"]["subdomain"] == "j1"
        assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}}
        mine = [p for p in pods if p["metadata"]["labels"]["jobset.sigs.k8s.io/replicatedjob-name"] == rjob]
        assert sorted(index_of(p) for p in mine) == list(range(count))
        for pod in mine:
            i = index_of(pod)
            meta = pod["metadata"]
            assert re.fullmatch(rf"j1-{rjob}-0-{i}-[bcdfghjklmnpqrstvwxz2456789]{{5}}", meta["name"]), meta["name"]
            assert meta["generateName"] == f"j1-{rjob}-0-{i}-"
            assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == (f"j1-{rjob}-0-{i}", "j1")
            assert meta["labels"] == {"clever.dev/job": "j1", "clever.dev/replica-type": rjob, **keys,
                                      "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
                                      "controller-uid": job["metadata"]["uid"],
                                      "batch.kubernetes.io/job-name": f"j1-{rjob}-0", "job-name": f"j1-{rjob}-0",
                                      "batch.kubernetes.io/job-completion-index": str(i)}
            assert meta["annotations"] == {**keys, "batch.kubernetes.io/job-completion-index": str(i)}
            assert meta["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": f"j1-{rjob}-0",
                                                "uid": job["metadata"]["uid"], "controller": True,
                                                "blockOwnerDeletion": True}]
            assert pod["spec"]["restartPolicy"] == "OnFailure"
            assert tensorflow(pod)["env"][-1] == {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.labels['batch.kubernetes.io/job-completion-index']"}}}
    service = sim.store.get(SERVICES, NS, "j1")
    assert service["metadata"]["ownerReferences"] == [owner]
    assert service["spec"]["clusterIP"] == "None" and "ports" not in service["spec"]
    assert service["spec"]["selector"] == {"jobset.sigs.k8s.io/jobset-name": "j1"}
    assert service["spec"]["publishNotReadyAddresses"] is True

    def settled() -> dict[str, Any] | None:
        current = jobset_of(sim) or {}
        statuses = (current.get("status") or {}).get("replicatedJobsStatus") or []
        return current if statuses and all(s["ready"] == 1 for s in statuses) else None

    current = await wait_for(settled, "every replicated job ready")
    assert current["status"] == {"restarts": 0, "replicatedJobsStatus": [
        {"name": name, "ready": 1, "succeeded": 0, "failed": 0, "active": 1, "suspended": 0}
        for name in ("chief", "ps", "worker")]}
    status_is_valid(current)
    worker = sim.store.get(BATCH_JOBS, NS, "j1-worker-0")["status"]
    assert {k: worker[k] for k in ("active", "ready", "terminating", "uncountedTerminatedPods")} == \
        {"active": 3, "ready": 3, "terminating": 0, "uncountedTerminatedPods": {}}
    assert "startTime" in worker and "succeeded" not in worker and "failed" not in worker


async def test_each_pod_sees_its_own_tf_config(sim: KubeSim, api: Api) -> None:
    await create(api, tf_jobset("j1", annotations={SCENARIO: "hold"}))
    pods = await wait_for(lambda: running_pods(sim, "j1", 6), "6 running pods")
    cluster = cluster_spec("j1", {"chief": 1, "ps": 2, "worker": 3})
    assert cluster["ps"] == ["j1-ps-0-0.j1:2222", "j1-ps-0-1.j1:2222"]  # KUBERNETES-FACTS §5.3
    for pod in pods:
        rjob, index = pod["metadata"]["labels"]["jobset.sigs.k8s.io/replicatedjob-name"], index_of(pod)
        # the spec keeps the reference; the kubelet resolves it per pod
        assert "$(TF_TASK_INDEX)" in next(e["value"] for e in tensorflow(pod)["env"] if e["name"] == "TF_CONFIG")
        env = podenv.container_env(pod, tensorflow(pod))
        assert env["TF_TASK_INDEX"] == env["JOB_COMPLETION_INDEX"] == str(index)
        expected = {"cluster": cluster, "task": {"type": rjob, "index": index}, "environment": "cloud"}
        assert json.loads(env["TF_CONFIG"]) == expected
        assert await wait_for(lambda pod=pod: sim.store.logs(NS, pod["metadata"]["name"], "tensorflow"), "logs")
        assert logged_tf_config(sim, pod) == expected
        log_text = await api.get(f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}/log")
        assert f"INFO:tensorflow:Starting {rjob} task {index}" in log_text.body


# -- success -------------------------------------------------------------------------------------------


async def test_success_policy_on_the_chief_while_parameter_servers_serve(sim: KubeSim, api: Api) -> None:
    # every task is told to finish after 2 s except the workers; parameter servers never exit anyway
    history = sim.store.subscribe(bounded=False, resources=(BATCH_JOBS, PODS))
    await create(api, tf_jobset("j1", success_targets=["chief"], annotations={SCENARIO: "succeed:after=2"},
                                pod_annotations={"worker": {SCENARIO: "hold"}}))
    done = await wait_for(lambda: condition(jobset_of(sim), "Completed") and jobset_of(sim), "JobSet Completed",
                          attempts=LONG)
    assert condition(done, "Completed") | {"lastTransitionTime": ""} == {
        "type": "Completed", "status": "True", "reason": "AllJobsCompleted",
        "message": "jobset completed successfully", "lastTransitionTime": ""}
    assert done["status"]["terminalState"] == "Completed" and done["status"]["restarts"] == 0
    status_is_valid(done)
    # the Jobs still active when the JobSet finishes (ps, workers) are deleted with their pods
    await wait_for(lambda: sorted(jobs_of(sim)) == ["j1-chief-0"], "the active Jobs deleted")
    await wait_for(lambda: [p["metadata"]["labels"]["jobset.sigs.k8s.io/replicatedjob-name"]
                            for p in pods_of(sim)] == ["chief"], "only the chief pod left")
    # the parameter servers served until then: from the store's event history, not a poll (the chief's Job
    # completing and the ps Jobs' deletion are a few simulated milliseconds apart)
    sim.store.unsubscribe(history)
    events = [history.get_nowait() for _ in range(history.qsize())]
    chief_complete = next(i for i, e in enumerate(events) if e.resource is BATCH_JOBS
                          and e.object["metadata"]["name"] == "j1-chief-0" and condition(e.object, "Complete"))
    ps_gone = [(i, (e.object.get("status") or {}).get("phase")) for i, e in enumerate(events)
               if e.resource is PODS and e.type == "DELETED"
               and e.object["metadata"]["labels"]["jobset.sigs.k8s.io/replicatedjob-name"] == "ps"]
    assert len(ps_gone) == 2 and all(i > chief_complete and phase == "Running" for i, phase in ps_gone), ps_gone
    chief = sim.store.get(BATCH_JOBS, NS, "j1-chief-0")["status"]
    assert [(c["type"], c["reason"], c["message"]) for c in chief["conditions"]] == [
        ("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
        ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")]
    assert (chief["succeeded"], chief["completedIndexes"], "completionTime" in chief) == (1, "0", True)
    assert [e["reason"] for e in events_for(sim, "j1")] == ["AllJobsCompleted"]
    assert events_for(sim, "j1")[0]["source"] == {"component": "jobset"}


async def test_worker_zero_finishing_ends_a_chiefless_job(sim: KubeSim, api: Api) -> None:
    body = tf_jobset("j1", {"ps": 2, "worker": 3}, success_targets=["worker"], annotations={SCENARIO: "hold"},
                     job_success_policy={"worker": {"rules": [{"succeededIndexes": "0"}]}})
    await create(api, body)
    pods = await wait_for(lambda: running_pods(sim, "j1", 5), "5 running pods")
    worker0 = next(p for p in pods if p["metadata"]["name"].startswith("j1-worker-0-0-"))
    # only worker 0 finishes; the others would run on (a pod's own annotation beats the JobSet's)
    patched = await api.patch(f"/api/v1/namespaces/{NS}/pods/{worker0['metadata']['name']}",
                              {"metadata": {"annotations": {SCENARIO: "succeed:after=1"}}})
    assert patched.status == 200, patched.body
    done = await wait_for(lambda: condition(jobset_of(sim), "Completed") and jobset_of(sim), "JobSet Completed",
                          attempts=LONG)
    assert done["status"]["terminalState"] == "Completed"
    worker = sim.store.get(BATCH_JOBS, NS, "j1-worker-0")["status"]
    assert [(c["type"], c["reason"], c["message"]) for c in worker["conditions"]] == [
        ("SuccessCriteriaMet", "SuccessPolicy", "Matched rules at index 0"),
        ("Complete", "SuccessPolicy", "Matched rules at index 0")]
    assert (worker["succeeded"], worker["completedIndexes"], worker.get("failed")) == (1, "0", None)
    deleted = {e["message"] for e in events_for(sim, "j1-worker-0", "Job") if e["reason"] == "SuccessfulDelete"}
    assert len(deleted) == 2 and all(m.startswith(("Deleted pod: j1-worker-0-1-", "Deleted pod: j1-worker-0-2-"))
                                     for m in deleted)
    await wait_for(lambda: sorted(jobs_of(sim)) == ["j1-worker-0"], "the ps Job deleted")


# -- failure -------------------------------------------------------------------------------------------


async def test_failures_restart_the_jobset_until_max_restarts(sim: KubeSim, api: Api) -> None:
    body = tf_jobset("j1", {"worker": 2}, backoff_limit=0, failure_policy={"maxRestarts": 2},
                     annotations={SCENARIO: "fail:exit=3,after=1"})
    await create(api, body)
    done = await wait_for(lambda: condition(jobset_of(sim), "Failed") and jobset_of(sim), "JobSet Failed",
                          attempts=LONG)
    status = done["status"]
    assert (status["restarts"], status["restartsCountTowardsMax"], status["terminalState"]) == (2, 2, "Failed")
    # three attempts, each a new Job of the same name
    job_uids = {e["involvedObject"]["uid"] for e in events_for(sim, "j1-worker-0", "Job")}
    assert len(job_uids) == 3
    # restartPolicy OnFailure: each failing container was restarted in place before its Job gave up
    assert [e for e in sim.store.list(EVENTS, NS)[0] if e["reason"] == "BackOff" and e["type"] == "Warning"]
    failed_condition = condition(done, "Failed")
    assert failed_condition is not None and failed_condition["reason"] == "ReachedMaxRestarts"
    assert failed_condition["message"] == ("jobset failed due to reaching max number of restarts "
                                           "(first failed job: j1-worker-0)")
    restarting = next(c for c in status["conditions"] if c["type"] == "RestartingJobSet")
    assert (restarting["status"], restarting["reason"], restarting["message"]) == ("False", "JobSetFailed",
                                                                                  "jobset failed")
    status_is_valid(done)
    job = sim.store.get(BATCH_JOBS, NS, "j1-worker-0")
    assert job["metadata"]["labels"]["jobset.sigs.k8s.io/restart-attempt"] == "2"
    assert [(c["type"], c["reason"]) for c in job["status"]["conditions"]] == [
        ("FailureTarget", "BackoffLimitExceeded"), ("Failed", "BackoffLimitExceeded")]
    assert job["status"]["conditions"][1]["message"] == "Job has reached the specified backoff limit"
    assert job["status"]["failed"] >= 1 and "active" not in job["status"]
    reasons = [(e["type"], e["reason"]) for e in events_for(sim, "j1")]
    assert reasons.count(("Warning", "RestartJobSetFailurePolicyAction")) == 2
    assert ("Warning", "ReachedMaxRestarts") in reasons


async def test_without_a_failure_policy_the_first_failed_job_fails_the_jobset(sim: KubeSim, api: Api) -> None:
    await create(api, tf_jobset("j1", {"worker": 1}, backoff_limit=0, annotations={SCENARIO: "oomkilled:after=1"}))
    done = await wait_for(lambda: condition(jobset_of(sim), "Failed") and jobset_of(sim), "JobSet Failed",
                          attempts=LONG)
    assert condition(done, "Failed") | {"lastTransitionTime": ""} == {
        "type": "Failed", "status": "True", "reason": "FailedJobs", "lastTransitionTime": "",
        "message": "jobset failed due to one or more job failures (first failed job: j1-worker-0)"}
    assert done["status"]["restarts"] == 0 and "restartsCountTowardsMax" not in done["status"]


async def test_failure_policy_rules(sim: KubeSim, api: Api) -> None:
    fail_fast = tf_jobset("fast", {"worker": 1}, backoff_limit=0, annotations={SCENARIO: "fail:after=1"},
                          failure_policy={"maxRestarts": 5, "rules": [
                              {"name": "notThisOne", "action": "RestartJobSet", "targetReplicatedJobs": ["worker"],
                               "onJobFailureReasons": ["DeadlineExceeded"]},
                              {"name": "giveUp", "action": "FailJobSet", "onJobFailureReasons": ["BackoffLimitExceeded"],
                               "onJobFailureMessagePatterns": ["backoff limit"]}]})
    endless = tf_jobset("endless", {"worker": 1}, backoff_limit=0, annotations={SCENARIO: "fail:after=1"},
                        failure_policy={"maxRestarts": 0, "rules": [
                            {"name": "alwaysRestart", "action": "RestartJobSetAndIgnoreMaxRestarts"}]})
    await create(api, fail_fast)
    await create(api, endless)
    fast = await wait_for(lambda: condition(jobset_of(sim, "fast"), "Failed") and jobset_of(sim, "fast"),
                          "fast Failed", attempts=LONG)
    assert condition(fast, "Failed") | {"lastTransitionTime": ""} == {
        "type": "Failed", "status": "True", "reason": "FailJobSetFailurePolicyAction", "lastTransitionTime": "",
        "message": "applying FailJobSet failure policy action (first failed job: fast-worker-0)"}
    assert fast["status"]["restarts"] == 0
    again = await wait_for(lambda: int(((jobset_of(sim, "endless") or {}).get("status") or {}).get("restarts", 0)) >= 2
                           and jobset_of(sim, "endless"), "endless restarted twice", attempts=LONG)
    assert condition(again, "Failed") is None and "restartsCountTowardsMax" not in again["status"]
    restarting = next(c for c in again["status"]["conditions"] if c["type"] == "RestartingJobSet")
    assert restarting["reason"] == "FailurePolicy_alwaysRestart"
    assert restarting["message"] == ("applying RestartJobSetAndIgnoreMaxRestarts failure policy action "
                                     "(first failed job: endless-worker-0)")
    assert (await api.delete(JOBSETS_PATH.format(ns=NS) + "/endless")).status == 200


# -- lifecycle -----------------------------------------------------------------------------------------


async def test_deleting_the_jobset_collects_jobs_pods_and_service(sim: KubeSim, api: Api) -> None:
    await create(api, tf_jobset("j1", annotations={SCENARIO: "hold"}))
    await wait_for(lambda: running_pods(sim, "j1", 6), "6 running pods")
    assert (await api.delete(JOBSETS_PATH.format(ns=NS) + "/j1")).status == 200
    await wait_for(lambda: not pods_of(sim) and not jobs_of(sim) and sim.store.try_get(SERVICES, NS, "j1") is None,
                   "jobs, pods and service collected")
    assert jobset_of(sim) is None


async def test_ttl_after_finished_deletes_the_jobset(sim: KubeSim, api: Api) -> None:
    await create(api, tf_jobset("j1", {"worker": 1}, ttl=2, annotations={SCENARIO: "succeed:after=1"}))
    await wait_for(lambda: condition(jobset_of(sim), "Completed"), "JobSet Completed", attempts=LONG)
    await wait_for(lambda: jobset_of(sim) is None and not jobs_of(sim) and not pods_of(sim), "JobSet expired",
                   attempts=LONG)


async def test_suspend_and_resume(sim: KubeSim, api: Api) -> None:
    await create(api, tf_jobset("j1", {"worker": 2}, suspend=True, annotations={SCENARIO: "hold"}))

    def suspended() -> dict[str, Any] | None:
        current = jobset_of(sim)
        job = sim.store.try_get(BATCH_JOBS, NS, "j1-worker-0")
        counted = [s["suspended"] for s in ((current or {}).get("status") or {}).get("replicatedJobsStatus") or []]
        return current if condition(current, "Suspended") and condition(job, "Suspended") and counted == [1] else None

    held = await wait_for(suspended, "JobSet and Job suspended")
    assert condition(held, "Suspended") | {"lastTransitionTime": ""} == {
        "type": "Suspended", "status": "True", "reason": "SuspendedJobs", "message": "jobset is suspended",
        "lastTransitionTime": ""}
    assert held["status"]["replicatedJobsStatus"] == [
        {"name": "worker", "ready": 0, "succeeded": 0, "failed": 0, "active": 0, "suspended": 1}]
    job = sim.store.get(BATCH_JOBS, NS, "j1-worker-0")
    assert job["spec"]["suspend"] is True and "startTime" not in job["status"] and not pods_of(sim)
    assert (await api.patch(JOBSETS_PATH.format(ns=NS) + "/j1", {"spec": {"suspend": False}})).status == 200
    await wait_for(lambda: running_pods(sim, "j1", 2), "2 running pods")
    resumed = jobset_of(sim) or {}
    flag = next(c for c in resumed["status"]["conditions"] if c["type"] == "Suspended")
    assert (flag["status"], flag["reason"], flag["message"]) == ("False", "ResumeJobs", "jobset is resumed")
    job = sim.store.get(BATCH_JOBS, NS, "j1-worker-0")
    job_flag = next(c for c in job["status"]["conditions"] if c["type"] == "Suspended")
    assert (job_flag["status"], job_flag["reason"]) == ("False", "JobResumed") and job["status"]["startTime"]


# -- scenarios -----------------------------------------------------------------------------------------


def first_container(sim: KubeSim) -> dict[str, Any] | None:
    pods = pods_of(sim)
    statuses = (pods[0]["status"].get("containerStatuses") or [{}]) if pods else [{}]
    return statuses[0]


@pytest.mark.parametrize(("scenario", "reached"), [
    ("unschedulable", lambda pod, cs: any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
                                          for c in pod["status"].get("conditions") or [])),
    ("image-pull-backoff", lambda pod, cs: (cs.get("state", {}).get("waiting") or {}).get("reason")
     == "ImagePullBackOff"),
    ("oomkilled:after=1", lambda pod, cs: cs.get("restartCount", 0) >= 1
     and cs["lastState"]["terminated"]["reason"] == "OOMKilled" and cs["lastState"]["terminated"]["exitCode"] == 137),
    ("fail:exit=42,after=1", lambda pod, cs: cs.get("restartCount", 0) >= 1
     and cs["lastState"]["terminated"]["exitCode"] == 42 and cs["lastState"]["terminated"]["reason"] == "Error"),
    ("crashloop:restarts=2,after=1", lambda pod, cs: cs.get("restartCount", 0) >= 1
     and cs["lastState"]["terminated"]["exitCode"] == 1),
])
async def test_scenarios_reach_jobset_pods(sim: KubeSim, api: Api, scenario: str, reached: Any) -> None:
    # a backoff limit the restarts never reach keeps the pod around for the look
    await create(api, tf_jobset("j1", {"worker": 1}, backoff_limit=100, annotations={SCENARIO: scenario}))

    def seen() -> bool:
        pods = pods_of(sim)
        return bool(pods) and reached(pods[0], first_container(sim) or {})

    await wait_for(seen, f"{scenario} on the worker pod", attempts=LONG)


async def test_a_crashloop_recovers_within_the_backoff_limit(sim: KubeSim, api: Api) -> None:
    await create(api, tf_jobset("j1", {"worker": 1}, annotations={SCENARIO: "crashloop:restarts=2,after=1"}))
    done = await wait_for(lambda: condition(jobset_of(sim), "Completed") and jobset_of(sim), "JobSet Completed",
                          attempts=LONG)
    assert done["status"]["restarts"] == 0
    pod = pods_of(sim)[0]
    assert pod["status"]["phase"] == "Succeeded" and pod["status"]["containerStatuses"][0]["restartCount"] == 2


async def test_in_order_startup_waits_for_each_replicated_job(sim: KubeSim, api: Api) -> None:
    # the parameter server takes 60 s to get ready, long enough to look at the first step
    body = tf_jobset("j1", {"ps": 1, "worker": 2}, annotations={SCENARIO: "slow-start:delay=60,after=5"})
    body["spec"]["startupPolicy"] = {"startupPolicyOrder": "InOrder"}
    await create(api, clean(body))
    first = await wait_for(lambda: condition(jobset_of(sim), "StartupPolicyInProgress") and jobs_of(sim),
                           "startup in progress")
    assert sorted(first) == ["j1-ps-0"]  # the workers wait for the parameter server to be ready
    done = await wait_for(lambda: condition(jobset_of(sim), "StartupPolicyCompleted") and jobset_of(sim),
                          "startup completed", attempts=LONG)
    flags = {c["type"]: (c["status"], c["reason"], c["message"]) for c in done["status"]["conditions"]}
    assert flags == {"StartupPolicyInProgress": ("False", "InOrderStartupPolicyInProgress",
                                                 "in order startup policy is in progress"),
                     "StartupPolicyCompleted": ("True", "InOrderStartupPolicyCompleted",
                                                "in order startup policy has completed")}
    assert sorted(jobs_of(sim)) == ["j1-ps-0", "j1-worker-0"]


async def test_depends_on_creates_a_replicated_job_once_its_dependency_is_ready(sim: KubeSim, api: Api) -> None:
    body = tf_jobset("j1", {"ps": 1, "worker": 2}, annotations={SCENARIO: "slow-start:delay=60,after=5"})
    body["spec"]["replicatedJobs"][1]["dependsOn"] = [{"name": "ps", "status": "Ready"}]
    await create(api, clean(body))
    await wait_for(lambda: "j1-ps-0" in jobs_of(sim), "the ps Job")
    assert "j1-worker-0" not in jobs_of(sim)  # the ps pod is still creating its container
    ready = await wait_for(lambda: "j1-worker-0" in jobs_of(sim) and sim.store.get(BATCH_JOBS, NS, "j1-ps-0"),
                           "the worker Job", attempts=LONG)
    assert ready["status"]["ready"] == 1
