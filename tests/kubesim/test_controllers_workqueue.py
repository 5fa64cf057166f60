"""The controllers reconcile what an event touches, and only that.

A cluster of many held jobs (TFJobs, or JobSets over batch/v1 Jobs) is left to settle; then one change (one
job's scenario, one pod deleted, one status written by someone else, an unrelated object) is made and
`Controllers.trace` records which keys each controller reconciled: only the job and pods concerned, a
bounded number of times. The work queue's timers stand in for simulated deadlines, TTLs and retries. A last
test runs every kind of scenario and checks that nothing ever changed a stored object (or an event already
sent) in place, which the shared views rely on.
time_scale 0.01; bounded polls, no timing assertions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Hashable
from typing import Any

import pytest

from kubesim import admission, schema
from kubesim.controllers import Controllers
from kubesim.controllers.workqueue import WorkQueue
from kubesim.store import (
    BATCH_JOBS,
    CONFIGMAPS,
    EVENTS,
    JOBSETS,
    PODGROUPS,
    PODS,
    TFJOBS,
    VCJOBS,
    Store,
    WatchEvent,
    new_uid,
)
from tests.kubesim.polling import wait_for

NS = "default"
JOBS = 40


def tfjob(name: str, *, workers: int = 1, scenario: str | None = None, **run_policy: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if scenario:
        meta["annotations"] = {"kubesim.clever.dev/scenario": scenario}
    spec: dict[str, Any] = {"tfReplicaSpecs": {"Worker": {"replicas": workers, "restartPolicy": "Never", "template": {
        "spec": {"containers": [{"name": "tensorflow", "image": "tf:2"}]}}}}}
    if run_policy:
        spec["runPolicy"] = run_policy
    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": meta, "spec": spec}


def jobset(name: str, *, workers: int = 2, scenario: str | None = None, **spec: Any) -> dict[str, Any]:
    """A JobSet of one replicated job running `workers` pods, as the webhooks admit it."""
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if scenario:
        meta["annotations"] = {"kubesim.clever.dev/scenario": scenario}
    job_spec = {"parallelism": workers, "completions": workers, "backoffLimit": 0, "template": {"spec": {
        "containers": [{"name": "tensorflow", "image": "tf:2"}], "restartPolicy": "Never"}}}
    body = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": meta,
            "spec": {"replicatedJobs": [{"name": "worker", "replicas": 1, "template": {"spec": job_spec}}], **spec}}
    checked = schema.check(JOBSETS, admission.mutate(JOBSETS, schema.check(JOBSETS, body).object))
    assert checked.causes == [] and checked.pruned == [], (checked.causes, checked.pruned)
    admission.validate(JOBSETS, checked.object)
    return checked.object


def create_batch_job(store: Store, name: str, *, scenario: str | None = None, pods: int = 1,
                     **spec: Any) -> None:
    """A plain batch/v1 Job, through the Job registry's defaults as the API server stores it."""
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": new_uid()}
    if scenario:
        meta["annotations"] = {"kubesim.clever.dev/scenario": scenario}
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"parallelism": pods, "completions": pods, "backoffLimit": 0, **spec, "template": {"spec": {
                "containers": [{"name": "main", "image": "busybox"}], "restartPolicy": "Never"}}}}
    store.create(BATCH_JOBS, admission.admit(BATCH_JOBS, body), uid=meta["uid"])


def jobset_condition(store: Store, name: str, kind: str) -> bool:
    js = store.peek(JOBSETS, NS, name) or {}
    return any(c["type"] == kind and c["status"] == "True" for c in (js.get("status") or {}).get("conditions") or [])


def job_condition(store: Store, name: str, kind: str) -> bool:
    job = store.peek(BATCH_JOBS, NS, name) or {}
    return any(c["type"] == kind and c["status"] == "True" for c in (job.get("status") or {}).get("conditions") or [])


def jobset_pods(store: Store, name: str) -> set[tuple[str, str]]:
    return {(NS, p["metadata"]["name"]) for p in store.select(PODS, NS, label_selector=f"{JOBSET_LABEL}={name}")}


JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"


def running_pods(store: Store) -> int:
    return len(store.select(PODS, NS, field_selector="status.phase=Running"))


def condition(store: Store, name: str, kind: str) -> bool:
    job = store.peek(TFJOBS, NS, name) or {}
    return any(c["type"] == kind and c["status"] == "True" for c in (job.get("status") or {}).get("conditions") or [])


async def settled(controllers: Controllers) -> None:
    """Wait until a few passes in a row reconcile nothing."""
    quiet = 0
    for _ in range(400):
        before = sum(controllers.reconciles.values())
        await asyncio.sleep(0.02)
        quiet = quiet + 1 if sum(controllers.reconciles.values()) == before else 0
        if quiet >= 5:
            return
    raise AssertionError("the controllers never settled")


@pytest.fixture
async def held() -> AsyncIterator[tuple[Store, Controllers]]:
    """JOBS TFJobs with two workers each, all running and holding, and the controllers idle."""
    store = Store(namespaces=(NS,))
    controllers = Controllers(store, time_scale=0.01, default_scenario="hold")
    await controllers.start()
    try:
        for index in range(JOBS):
            store.create(TFJOBS, tfjob(f"job-{index}", workers=2))
        await wait_for(lambda: running_pods(store) == 2 * JOBS and all(
            condition(store, f"job-{i}", "Running") for i in range(JOBS)), "every job running")
        await settled(controllers)
        controllers.trace = []
        yield store, controllers
    finally:
        await controllers.stop()


def reconciled(controllers: Controllers, name: str) -> set[Hashable]:
    assert controllers.trace is not None
    return {key for controller, key in controllers.trace if controller == name}


async def test_one_jobs_scenario_change_reconciles_that_job_and_its_pods_only(
        held: tuple[Store, Controllers]) -> None:
    store, controllers = held
    controllers.set_job_scenario(NS, "job-7", "succeed:after=1")
    await wait_for(lambda: condition(store, "job-7", "Succeeded"), "job-7 succeeded")
    await settled(controllers)
    assert reconciled(controllers, "tfjob") == {(NS, "job-7")}
    assert reconciled(controllers, "kubelet") == {(NS, "job-7-worker-0"), (NS, "job-7-worker-1")}
    assert controllers.trace is not None and len(controllers.trace) <= 20, controllers.trace
    assert all(not condition(store, f"job-{i}", "Succeeded") for i in range(JOBS) if i != 7)


async def test_a_deleted_pod_costs_its_job_and_the_new_pod(held: tuple[Store, Controllers]) -> None:
    store, controllers = held
    old_uid = store.get(PODS, NS, "job-3-worker-1")["metadata"]["uid"]
    store.delete(PODS, NS, "job-3-worker-1")
    await wait_for(lambda: (store.peek(PODS, NS, "job-3-worker-1") or {"metadata": {"uid": old_uid}})[
        "metadata"]["uid"] != old_uid and running_pods(store) == 2 * JOBS, "the pod recreated and running")
    await settled(controllers)
    assert reconciled(controllers, "tfjob") == {(NS, "job-3")}
    assert reconciled(controllers, "kubelet") == {(NS, "job-3-worker-1")}


async def test_a_foreign_status_write_reconciles_that_job_once(held: tuple[Store, Controllers]) -> None:
    store, controllers = held
    job = store.get(TFJOBS, NS, "job-11")
    status = dict(job["status"], conditions=[c for c in job["status"]["conditions"] if c["type"] != "Running"])
    store.update_status(TFJOBS, NS, "job-11", status)  # someone else rewrites it: the operator puts it back
    await wait_for(lambda: condition(store, "job-11", "Running"), "Running again")
    await settled(controllers)
    assert reconciled(controllers, "tfjob") == {(NS, "job-11")}
    assert reconciled(controllers, "kubelet") == set()
    # its own write of the repaired status does not bring the job back
    assert controllers.trace is not None and len(controllers.trace) <= 2, controllers.trace


async def test_unrelated_writes_cost_no_reconcile(held: tuple[Store, Controllers]) -> None:
    store, controllers = held
    for index in range(50):
        store.create(CONFIGMAPS, {"metadata": {"name": f"cm-{index}", "namespace": NS}})
        store.record_event(store.get(TFJOBS, NS, "job-1"), reason="Test", message="nothing to do")
    await settled(controllers)
    assert controllers.trace == []


async def test_a_pods_scheduling_steps_do_not_wake_its_job() -> None:
    """Binding and ContainerCreating change nothing the operator reads of a pod (its update predicate), and
    the ADDED events of what a reconcile created itself are already accounted for."""
    store = Store(namespaces=(NS,))
    controllers = Controllers(store, time_scale=0.01, default_scenario="hold")
    controllers.trace = []
    await controllers.start()
    try:
        store.create(TFJOBS, tfjob("solo"))
        await wait_for(lambda: condition(store, "solo", "Running"), "Running")
        await settled(controllers)
    finally:
        await controllers.stop()
    kubelet_passes = [key for name, key in controllers.trace if name == "kubelet"]
    tfjob_passes = [key for name, key in controllers.trace if name == "tfjob"]
    # the kubelet: created, then its two timers (bind, start); the operator: the new job, then its pod
    # running. Neither is woken by its own writes, nor the operator by the pod and service it created.
    assert kubelet_passes == [(NS, "solo-worker-0")] * 3
    assert tfjob_passes == [(NS, "solo")] * 2


async def test_deadlines_come_from_timers_not_rescans() -> None:
    store = Store(namespaces=(NS,))
    controllers = Controllers(store, time_scale=0.01, default_scenario="hold")
    await controllers.start()
    try:
        store.create(TFJOBS, tfjob("deadline", activeDeadlineSeconds=30))
        store.create(TFJOBS, tfjob("forever"))
        await wait_for(lambda: condition(store, "forever", "Running") and condition(store, "deadline", "Running"),
                       "Running")
        await settled(controllers)
        controllers.trace = []
        # nothing else happens until the deadline: only its timer can wake the operator, for that job alone
        await wait_for(lambda: condition(store, "deadline", "Failed"), "past its active deadline")
        await settled(controllers)
        assert reconciled(controllers, "tfjob") == {(NS, "deadline")}
        assert not condition(store, "forever", "Failed")
    finally:
        await controllers.stop()


async def test_a_gang_waits_for_its_podgroup_without_polling() -> None:
    """Gang pods wait for their PodGroup with no timer; the PodGroup's admission queues exactly them."""
    store = Store(namespaces=(NS,))
    controllers = Controllers(store, time_scale=0.01, default_scenario="hold", gang_scheduler="volcano")
    await controllers.start()
    try:
        store.create(TFJOBS, tfjob("gang", workers=3))
        await wait_for(lambda: len(store.select(PODS, NS, field_selector="status.phase=Running")) == 3, "bound")
        assert (store.peek(PODGROUPS, NS, "gang") or {}).get("status", {}).get("phase") == "Running"
        await settled(controllers)
        assert controllers.kubelet.queue.next_due() is None  # nothing polls
    finally:
        await controllers.stop()


@pytest.fixture
async def held_jobsets() -> AsyncIterator[tuple[Store, Controllers]]:
    """JOBS JobSets with two pods each, all running and holding, and the controllers idle."""
    store = Store(namespaces=(NS,))
    controllers = Controllers(store, tfjob_operator=None, volcano=False, time_scale=0.01,
                              default_scenario="hold")
    await controllers.start()
    try:
        for index in range(JOBS):
            store.create(JOBSETS, jobset(f"js-{index}"))

        def all_ready() -> bool:
            return running_pods(store) == 2 * JOBS and all(
                ((store.peek(JOBSETS, NS, f"js-{i}") or {}).get("status") or {}).get("replicatedJobsStatus")
                == [{"name": "worker", "ready": 1, "succeeded": 0, "failed": 0, "active": 1, "suspended": 0}]
                for i in range(JOBS))

        await wait_for(all_ready, "every JobSet's Job ready")
        await settled(controllers)
        controllers.trace = []
        yield store, controllers
    finally:
        await controllers.stop()


async def test_one_jobsets_scenario_change_reconciles_that_jobset_its_job_and_pods_only(
        held_jobsets: tuple[Store, Controllers]) -> None:
    store, controllers = held_jobsets
    pods = jobset_pods(store, "js-7")
    controllers.set_job_scenario(NS, "js-7", "succeed:after=1")
    await wait_for(lambda: jobset_condition(store, "js-7", "Completed"), "js-7 completed")
    await settled(controllers)
    assert reconciled(controllers, "jobset") == {(NS, "js-7")}
    assert reconciled(controllers, "job") == {(NS, "js-7-worker-0")}
    assert reconciled(controllers, "kubelet") == pods
    assert controllers.trace is not None and len(controllers.trace) <= 25, controllers.trace
    assert all(not jobset_condition(store, f"js-{i}", "Completed") for i in range(JOBS) if i != 7)


async def test_a_deleted_jobset_pod_costs_its_job_and_jobset_only(held_jobsets: tuple[Store, Controllers]) -> None:
    """The Job controller replaces a pod someone else deleted (a failure, within no backoff limit here: the
    Job fails), and its status change reaches the JobSet through the owner reference."""
    store, controllers = held_jobsets
    victim = min(jobset_pods(store, "js-3"))
    store.delete(PODS, *victim)
    await wait_for(lambda: jobset_condition(store, "js-3", "Failed"), "js-3 failed (backoffLimit 0)")
    await settled(controllers)
    assert reconciled(controllers, "jobset") == {(NS, "js-3")}
    assert reconciled(controllers, "job") == {(NS, "js-3-worker-0")}
    assert all(pod.startswith("js-3-worker-0-") for _, pod in reconciled(controllers, "kubelet"))
    assert all(not jobset_condition(store, f"js-{i}", "Failed") for i in range(JOBS) if i != 3)


async def test_a_jobsets_pods_scheduling_steps_wake_neither_it_nor_its_job() -> None:
    """Pods are not watched by the JobSet controller; the Job controller's update predicate ignores binding and
    ContainerCreating; neither is woken by its own writes or by the ADDED events of what it created."""
    store = Store(namespaces=(NS,))
    controllers = Controllers(store, tfjob_operator=None, volcano=False, time_scale=0.01, default_scenario="hold")
    controllers.trace = []
    await controllers.start()
    try:
        store.create(JOBSETS, jobset("solo", workers=2))
        await wait_for(lambda: running_pods(store) == 2 and jobset_condition(store, "solo", "StartupPolicyCompleted")
                       is False and ((store.peek(JOBSETS, NS, "solo") or {}).get("status") or {}).get(
                           "replicatedJobsStatus", [{}])[0].get("ready") == 1, "the JobSet's Job ready")
        await settled(controllers)
    finally:
        await controllers.stop()
    jobset_passes = [key for name, key in controllers.trace if name == "jobset"]
    job_passes = [key for name, key in controllers.trace if name == "job"]
    # the JobSet: created, its Job active, its Job ready (the two pods may get ready one pass apart); the Job:
    # created, then each pod running and ready
    assert set(jobset_passes) == {(NS, "solo")} and 3 <= len(jobset_passes) <= 4, jobset_passes
    assert set(job_passes) == {(NS, "solo-worker-0")} and 2 <= len(job_passes) <= 3, job_passes


async def test_jobset_ttl_and_job_deadlines_come_from_timers_not_rescans() -> None:
    store = Store(namespaces=(NS,))
    controllers = Controllers(store, tfjob_operator=None, volcano=False, time_scale=0.01, default_scenario="hold")
    await controllers.start()
    try:
        store.create(JOBSETS, jobset("ttl", workers=1, scenario="succeed:after=1", ttlSecondsAfterFinished=30))
        store.create(JOBSETS, jobset("forever", workers=1))
        create_batch_job(store, "deadline", activeDeadlineSeconds=40)
        await wait_for(lambda: jobset_condition(store, "ttl", "Completed") and running_pods(store) == 2,
                       "ttl completed, the others running")
        await settled(controllers)
        controllers.trace = []
        # nothing happens until the TTL and the deadline: only their timers wake the controllers, for them alone
        await wait_for(lambda: store.peek(JOBSETS, NS, "ttl") is None, "the JobSet expired")
        await wait_for(lambda: job_condition(store, "deadline", "Failed"), "the Job past its deadline")
        await settled(controllers)
        assert reconciled(controllers, "jobset") == {(NS, "ttl")}
        # the expired JobSet's Job goes with it (its deletion event is the only other Job reconcile)
        assert reconciled(controllers, "job") == {(NS, "deadline"), (NS, "ttl-worker-0")}
        assert not jobset_condition(store, "forever", "Completed") and store.peek(BATCH_JOBS, NS, "forever-worker-0")
        assert controllers.jobs.queue.next_due() is None
        assert controllers.jobsets is not None and controllers.jobsets.queue.next_due() is None
    finally:
        await controllers.stop()


async def test_a_refused_job_create_is_retried_with_backoff_not_on_every_pass() -> None:
    """A Job name taken by a Job the JobSet does not own: JobCreationFailed, retried by a timer that backs off
    (the foreign Job's deletion is not an event the JobSet controller follows), until the name is free."""
    store = Store(namespaces=(NS,))
    controllers = Controllers(store, tfjob_operator=None, volcano=False, time_scale=0.01, default_scenario="hold")
    await controllers.start()
    try:
        create_batch_job(store, "blocked-worker-0")
        store.create(JOBSETS, jobset("blocked", workers=1))

        def failures() -> int:
            return sum(1 for e in store.select(EVENTS, NS) if e["reason"] == "JobCreationFailed")

        await wait_for(lambda: failures() >= 3, "Job creation failing")
        await asyncio.sleep(0.5)  # 50 simulated seconds: per-pass retries would be hundreds by now
        assert failures() <= 20
        store.delete(BATCH_JOBS, NS, "blocked-worker-0")
        await wait_for(lambda: (store.peek(BATCH_JOBS, NS, "blocked-worker-0") or {"metadata": {}})["metadata"].get(
            "labels", {}).get(JOBSET_LABEL) == "blocked", "the JobSet's own Job created", attempts=1500)
        await wait_for(lambda: running_pods(store) == 1, "its pod running")
    finally:
        await controllers.stop()


def test_work_queue_dedupes_orders_and_keeps_one_timer_per_key() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("b", "a", "b", "c", "a"):
        queue.add(key)
    assert len(queue) == 3 and queue.take() == ["b", "a", "c"] and queue.take() == []
    queue.schedule("x", 5.0)
    queue.schedule("y", 3.0)
    queue.schedule("x", 2.0)  # replaces 5.0
    queue.schedule("z", 4.0)
    queue.schedule("z", None)  # cancelled
    assert queue.next_due() == 2.0
    queue.fire(2.5)
    assert queue.take() == ["x"] and queue.next_due() == 3.0
    queue.fire(10.0)
    assert queue.take() == ["y"] and queue.next_due() is None  # the stale 5.0 for x and z's 4.0 are gone
    queue.schedule("w", 1.0)
    queue.schedule("w", 1.0)
    queue.fire(1.0)
    assert queue.take() == ["w"]


async def test_nothing_changes_a_stored_object_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared views and events are safe only if every write builds new dicts: check every event's object
    still serializes as it did when it was sent, across every scenario and both operators."""
    sent: list[tuple[WatchEvent, str]] = []
    real_emit = Store._emit

    def recording_emit(self: Store, event: WatchEvent) -> None:
        sent.append((event, json.dumps(event.object, sort_keys=True)))
        real_emit(self, event)

    monkeypatch.setattr(Store, "_emit", recording_emit)
    store = Store(namespaces=(NS,))
    controllers = Controllers(store, time_scale=0.01, gang_scheduler="volcano")
    await controllers.start()
    try:
        scenarios = ["succeed:after=1", "fail:after=1", "crashloop:restarts=1,after=1", "evicted:after=1",
                     "oomkilled:after=1", "image-pull-backoff", "unschedulable", "slow-start:delay=1,after=1"]
        for index, scenario in enumerate(scenarios):
            body = tfjob(f"t{index}", workers=2, scenario=scenario, backoffLimit=2)
            body["spec"]["tfReplicaSpecs"]["Worker"]["restartPolicy"] = "OnFailure"
            store.create(TFJOBS, body)
            store.create(JOBSETS, jobset(f"js{index}", scenario=scenario, failurePolicy={"maxRestarts": 1},
                                         ttlSecondsAfterFinished=2))
            create_batch_job(store, f"b{index}", scenario=scenario, pods=2, completionMode="Indexed",
                             backoffLimit=1)
            store.create(VCJOBS, {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
                                  "metadata": {"name": f"v{index}", "namespace": NS,
                                               "annotations": {"kubesim.clever.dev/scenario": scenario}},
                                  "spec": {"minAvailable": 2, "schedulerName": "volcano", "plugins": {"svc": []},
                                           "policies": [{"event": "PodFailed", "action": "RestartJob"}],
                                           "tasks": [{"name": "worker", "replicas": 2, "template": {"spec": {
                                               "containers": [{"name": "tf", "image": "tf:2"}],
                                               "restartPolicy": "OnFailure"}}}]}})
        await wait_for(lambda: condition(store, "t0", "Succeeded") and condition(store, "t1", "Failed"),
                       "some jobs finished")
        # suspend a JobSet (its Jobs suspended, their pods deleted), then resume it
        held = store.get(JOBSETS, NS, "js5")
        store.update(JOBSETS, {**held, "spec": {**held["spec"], "suspend": True}})
        await wait_for(lambda: jobset_condition(store, "js5", "Suspended"), "js5 suspended")
        held = store.get(JOBSETS, NS, "js5")
        store.update(JOBSETS, {**held, "spec": {**held["spec"], "suspend": False}})
        controllers.set_default_scenario("succeed:after=1")
        controllers.set_job_scenario(NS, "t6", "succeed:after=1")
        controllers.set_job_scenario(NS, "js6", "succeed:after=1")
        await asyncio.sleep(0.3)
        store.delete(TFJOBS, NS, "t0")
        store.delete(VCJOBS, NS, "v0", propagation="Foreground")
        store.delete(JOBSETS, NS, "js5", propagation="Foreground")
        store.delete(BATCH_JOBS, NS, "b1")
        # pods that crash under OnFailure restart for ever (CrashLoopBackOff), so there is no settling here
        await asyncio.sleep(0.5)
    finally:
        await controllers.stop()
    assert len(sent) > 200
    # the JobSet and Job controllers went through restarts, pod replacements and TTL deletions too
    assert any(e.resource is JOBSETS and (e.object.get("status") or {}).get("restarts") for e, _ in sent)
    assert any(e.resource is BATCH_JOBS and (e.object.get("status") or {}).get("failed") for e, _ in sent)
    assert any(e.resource is JOBSETS and e.type == "DELETED" and e.object["metadata"]["name"] != "js5"
               for e, _ in sent)
    changed = [(e.type, e.resource.plural, e.object["metadata"]["name"]) for e, text in sent
               if json.dumps(e.object, sort_keys=True) != text]
    assert changed == []
