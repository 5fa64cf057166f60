"""The simulated batch/v1 Job controller with the kubelet: pod replacement and backoffLimit,
activeDeadlineSeconds, podFailurePolicy, Indexed Jobs within their parallelism. Jobs are created over HTTP
(through the registry's defaults), their pods take the Job's scenario annotation.

Time runs at time_scale 0.01 (1 simulated second = 10 ms); every wait is a bounded poll.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from kubesim.store import BATCH_JOBS, EVENTS, PODS
from kubesim.testing import KubeSim
from tests.kubesim.conftest import Api
from tests.kubesim.jobsets import JOBS_PATH, condition
from tests.kubesim.polling import wait_for

NS = "team-a"
SCENARIO = "kubesim.clever.dev/scenario"
LONG = 1500  # polls for flows that go through several pod lifetimes


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(namespaces=(NS,), tfjob_operator=None, volcano=False, jobset=True, time_scale=0.01,
                       tls=False) as running:
        yield running


@pytest.fixture
async def api(sim: KubeSim) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"}) as session:
        yield Api(sim, session, None)


def job_events(sim: KubeSim, name: str) -> list[dict[str, Any]]:
    return [e for e in sim.store.list(EVENTS, NS)[0]
            if e["involvedObject"]["name"] == name and e["involvedObject"]["kind"] == "Job"]


def plain_job(name: str, scenario: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "annotations": {SCENARIO: scenario}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "pi", "image": "perl:5.34"}]}}, **spec}}


def job_condition(sim: KubeSim, name: str, ctype: str) -> dict[str, Any] | None:
    return condition(sim.store.try_get(BATCH_JOBS, NS, name), ctype)


async def test_a_job_replaces_failed_pods_until_its_backoff_limit(sim: KubeSim, api: Api) -> None:
    reply = await api.post(JOBS_PATH.format(ns=NS), plain_job("pi", "fail:exit=2,after=1", backoffLimit=1))
    assert reply.status == 201, reply.body
    failed = await wait_for(lambda: job_condition(sim, "pi", "Failed"), "Job Failed", attempts=LONG)
    assert (failed["reason"], failed["message"]) == ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    job = sim.store.get(BATCH_JOBS, NS, "pi")
    assert job["status"]["failed"] == 2 and "active" not in job["status"]
    pods = sim.store.list(PODS, NS, label_selector="batch.kubernetes.io/job-name=pi")[0]
    assert len(pods) == 2 and {p["status"]["phase"] for p in pods} == {"Failed"}
    assert all(re.fullmatch(r"pi-[bcdfghjklmnpqrstvwxz2456789]{5}", p["metadata"]["name"]) for p in pods)
    warnings = [e for e in job_events(sim, "pi") if e["type"] == "Warning"]
    assert [(e["reason"], e["source"]["component"]) for e in warnings] == [("BackoffLimitExceeded", "job-controller")]


async def test_a_job_past_its_active_deadline_fails(sim: KubeSim, api: Api) -> None:
    await api.post(JOBS_PATH.format(ns=NS), plain_job("slow", "hold", activeDeadlineSeconds=3))
    failed = await wait_for(lambda: job_condition(sim, "slow", "Failed"), "Job Failed", attempts=LONG)
    assert (failed["reason"], failed["message"]) == ("DeadlineExceeded", "Job was active longer than specified deadline")
    assert sim.store.get(BATCH_JOBS, NS, "slow")["status"]["failed"] == 1
    assert not sim.store.list(PODS, NS, label_selector="batch.kubernetes.io/job-name=slow")[0]


async def test_a_pod_failure_policy_fails_the_job_at_once(sim: KubeSim, api: Api) -> None:
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    await api.post(JOBS_PATH.format(ns=NS), plain_job("exit42", "fail:exit=42,after=1", podFailurePolicy=policy))
    failed = await wait_for(lambda: job_condition(sim, "exit42", "Failed"), "Job Failed", attempts=LONG)
    pod = sim.store.list(PODS, NS, label_selector="batch.kubernetes.io/job-name=exit42")[0][0]
    assert failed["reason"] == "PodFailurePolicy"
    assert failed["message"] == (f"Container pi for pod {NS}/{pod['metadata']['name']} failed with exit code 42 "
                                 "matching FailJob rule at index 0")


async def test_an_indexed_job_runs_its_indexes_within_its_parallelism(sim: KubeSim, api: Api) -> None:
    body = plain_job("idx", "succeed:after=2", completionMode="Indexed", completions=3, parallelism=2)
    await api.post(JOBS_PATH.format(ns=NS), body)
    peak = 0

    def complete() -> dict[str, Any] | None:
        nonlocal peak
        active = [p for p in sim.store.list(PODS, NS, label_selector="batch.kubernetes.io/job-name=idx")[0]
                  if p["status"].get("phase") not in ("Succeeded", "Failed")]
        peak = max(peak, len(active))
        return job_condition(sim, "idx", "Complete")

    done = await wait_for(complete, "Job Complete", attempts=LONG)
    assert done["reason"] == "CompletionsReached" and peak <= 2
    status = sim.store.get(BATCH_JOBS, NS, "idx")["status"]
    assert (status["succeeded"], status["completedIndexes"]) == (3, "0-2")
    hostnames = sorted(p["spec"]["hostname"] for p in
                       sim.store.list(PODS, NS, label_selector="batch.kubernetes.io/job-name=idx")[0])
    assert hostnames == ["idx-0", "idx-1", "idx-2"]
