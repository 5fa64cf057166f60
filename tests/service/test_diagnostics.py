"""A job's diagnostics through the API (DESIGN §7): `…/tfjobs/{id}/logs` and `…/tfjobs/{id}/events` against
KubeSim: text logs on every alias and backend, tail, follow (streamed, bounded, ended by the pod), the
answers when there is no log (unknown replica 404, no pod yet 409, pod gone 410 with its last state), GET's
rights (another user's job is 404), and the events of the job and its pods, oldest first."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from gateway import appkeys
from gateway.web import schemas
from kubesim.store import PODS, TFJOBS
from tests.conftest import PARTITION, Gateway, wait_until
from tests.service.backends_harness import BACKENDS, MultiCluster, small_body
from tests.service.seed_bodies import minimal
from translators.naming import object_name

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}


async def _running(gw: Gateway, body: dict[str, Any], *, phase: str = "running", pods: bool = True) -> dict[str, Any]:
    created = await gw.client.post(gw.jobs_url(), json=body, headers=ALICE)
    assert created.status == 200, await created.text()
    job_id = (await created.json())["metadata"]["id"]

    async def check() -> dict[str, Any] | None:
        job = await (await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=ALICE)).json()
        return job if job["status"]["phase"] == phase and (job["status"]["replicas"] or not pods) else None

    return await wait_until(check)


def _pod(job: dict[str, Any], replica: str) -> str:
    kind, index = replica.rsplit("-", 1)
    return next(r["id"] for r in job["status"]["replicas"] if r["type"] == kind and r["index"] == int(index))


async def test_a_replicas_log_as_text_on_every_alias(gateway: Gateway) -> None:
    gw = gateway
    gw.sim.controllers.set_default_scenario("hold")
    job = await _running(gw, minimal("logs", count="2"))
    job_id = job["metadata"]["id"]
    pod = _pod(job, "worker-1")
    gw.sim.store.append_log(PARTITION, pod, "tensorflow", "step 1 loss 0.9\nstep 2 loss 0.4\n")
    for version in ("v1alpha1", "v1alpha2"):
        for kind in ("tfjobs", "tfjob"):
            url = f"{gw.jobs_url(version=version, kind=kind)}/{job_id}/logs"
            answer = await gw.client.get(url, params={"replica": "worker-1"}, headers=ALICE)
            assert answer.status == 200, await answer.text()
            assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert answer.headers["X-Pod"] == pod and answer.headers["X-Replica"] == "worker-1"
            assert (await answer.text()).endswith("step 1 loss 0.9\nstep 2 loss 0.4\n")
    tail = await gw.client.get(f"{gw.jobs_url()}/{job_id}/logs", params={"replica": "worker-1", "tail": "1"},
                               headers=ALICE)
    assert await tail.text() == "step 2 loss 0.4\n"
    # No replica named: the leading one (worker-0 without a chief), whose startup lines the kubelet wrote.
    default = await gw.client.get(f"{gw.jobs_url()}/{job_id}/logs", headers=ALICE)
    assert default.status == 200 and default.headers["X-Replica"] == "worker-0"
    assert "step 1" not in await default.text()
    head = await gw.client.head(f"{gw.jobs_url()}/{job_id}/logs?follow=true", headers=ALICE)
    assert head.status == 200  # HEAD never follows


async def test_no_log_answers_say_why(gateway: Gateway) -> None:
    gw = gateway
    gw.sim.controllers.set_default_scenario("hold")
    job = await _running(gw, minimal("why"))
    url = f"{gw.jobs_url()}/{job['metadata']['id']}/logs"

    unknown = await gw.client.get(url, params={"replica": "ps-3"}, headers=ALICE)
    body = await unknown.json()
    assert unknown.status == 404 and body["reason"] == "NotFound"
    assert body["details"]["replicas"] == ["worker-0"] and "worker-0" in body["message"]
    schemas.ErrorBody.model_validate(body)

    bad = await gw.client.get(url, params={"tail": "-1", "follow": "maybe"}, headers=ALICE)
    body = await bad.json()
    assert bad.status == 400 and body["reason"] == "Invalid"
    assert [f["path"] for f in body["details"]["fields"]] == ["tail", "follow"]

    # Another user: the job does not exist for them, its logs and events neither.
    for path in ("logs", "events"):
        hidden = await gw.client.get(f"{gw.jobs_url()}/{job['metadata']['id']}/{path}", headers=BOB)
        assert hidden.status == 404 and (await hidden.json())["message"].startswith("job ")


async def test_a_pending_pod_has_no_log_yet(gateway: Gateway) -> None:
    gw = gateway
    gw.sim.controllers.set_default_scenario("unschedulable")
    job = await _running(gw, minimal("waits"), phase="pending")
    answer = await gw.client.get(f"{gw.jobs_url()}/{job['metadata']['id']}/logs", headers=ALICE)
    body = await answer.json()
    assert answer.status == 409 and "no log yet" in body["message"], body
    assert body["details"]["clusterStatus"]["code"] == 400


async def test_a_finished_jobs_removed_pods_are_gone(gateway: Gateway) -> None:
    gw = gateway
    gw.sim.controllers.set_default_scenario("succeed")
    job = await _running(gw, minimal("cleaned", cleanPodPolicy="All"), phase="succeeded", pods=False)
    job_id = job["metadata"]["id"]

    async def no_pods() -> bool:
        current = await (await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=ALICE)).json()
        return not current["status"]["replicas"]

    await wait_until(no_pods)
    answer = await gw.client.get(f"{gw.jobs_url()}/{job_id}/logs", params={"replica": "worker-0"}, headers=ALICE)
    body = await answer.json()
    assert answer.status == 410 and body["reason"] == "Gone", body
    assert "no pod any more" in body["message"] and "succeeded" in body["message"]


async def test_a_pod_the_status_names_but_the_cluster_lost_is_gone_with_its_last_state(make_gateway: Any) -> None:
    # No watch and a long staleness bound: the stored status keeps naming the pod after it went.
    gw = await make_gateway(sync={"watch": False}, limits={"statusStalenessSeconds": 3600})
    gw.sim.controllers.set_default_scenario("hold")
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("lost"), headers=ALICE)).json()
    job_id = created["metadata"]["id"]
    name = object_name("lost", job_id)

    # Refresh by hand: reads refresh only stale statuses, and this one stays fresh for an hour.
    app = gw.app
    record = await app[appkeys.STATE].jobs.get("c1", PARTITION, job_id)
    assert record is not None

    async def stored_running() -> dict[str, Any] | None:
        await app[appkeys.STATUSES].refresh_job(app[appkeys.CLUSTERS].get("c1"), record)
        job = await (await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=ALICE)).json()
        return job if job["status"]["replicas"] and job["status"]["replicas"][0]["status"] == "Running" else None

    job = await wait_until(stored_running)
    pod = _pod(job, "worker-0")
    gw.sim.store.delete(TFJOBS, PARTITION, name)  # the garbage collector takes the pods with it

    async def pod_gone() -> bool:
        return gw.sim.store.try_get(PODS, PARTITION, pod) is None

    await wait_until(pod_gone)
    answer = await gw.client.get(f"{gw.jobs_url()}/{job_id}/logs", headers=ALICE)
    body = await answer.json()
    assert answer.status == 410, body
    assert body["message"].startswith(f"the pod {pod} of replica worker-0 no longer exists")
    assert "its last state: Running" in body["message"]
    assert body["details"]["lastState"]["id"] == pod


async def test_follow_streams_until_the_pod_ends(gateway: Gateway) -> None:
    gw = gateway
    gw.sim.controllers.set_default_scenario("hold")
    job = await _running(gw, minimal("follow"))
    job_id = job["metadata"]["id"]
    pod = _pod(job, "worker-0")
    gw.sim.store.append_log(PARTITION, pod, "tensorflow", "before\n")
    response = await gw.client.get(f"{gw.jobs_url()}/{job_id}/logs",
                                   params={"replica": "worker-0", "follow": "true", "tail": "1"}, headers=ALICE)
    assert response.status == 200 and response.headers.get("Transfer-Encoding") == "chunked"
    received = b""

    async def read_until(text: bytes) -> None:
        nonlocal received
        while text not in received:
            chunk = await asyncio.wait_for(response.content.readany(), timeout=10)
            assert chunk, received
            received += chunk

    await read_until(b"before\n")
    gw.sim.store.append_log(PARTITION, pod, "tensorflow", "epoch 1\n")
    await read_until(b"epoch 1\n")
    gw.sim.store.append_log(PARTITION, pod, "tensorflow", "epoch 2\n")
    await read_until(b"epoch 2\n")
    # The job goes: its pod ends, and so does the answer.
    deleted = await gw.client.delete(f"{gw.jobs_url()}/{job_id}", headers=ALICE)
    assert deleted.status == 200
    rest = await asyncio.wait_for(response.content.read(), timeout=10)
    assert (received + rest).startswith(b"before\nepoch 1\nepoch 2\n")


async def test_follow_is_bounded_in_bytes_and_time(make_gateway: Any) -> None:
    gw = await make_gateway(limits={"logFollowMaxBytes": 1024, "logFollowMaxSeconds": 1.5,
                                    "requestTimeoutSeconds": 1.0, "bodyReadTimeoutSeconds": 0.5})
    gw.sim.controllers.set_default_scenario("hold")
    job = await _running(gw, minimal("bounded"))
    url = f"{gw.jobs_url()}/{job['metadata']['id']}/logs"
    pod = _pod(job, "worker-0")
    gw.sim.store.append_log(PARTITION, pod, "tensorflow", "x" * 3000 + "\n")
    capped = await gw.client.get(url, params={"follow": "true", "tail": "1"}, headers=ALICE)
    assert len(await asyncio.wait_for(capped.read(), timeout=10)) == 1024
    # A silent container: the answer ends after logFollowMaxSeconds, though that is past the request timeout.
    timed = await gw.client.get(url, params={"follow": "true", "tail": "0"}, headers=ALICE)
    assert timed.status == 200
    assert await asyncio.wait_for(timed.read(), timeout=10) == b""


async def test_events_of_the_job_and_its_pods_oldest_first(gateway: Gateway) -> None:
    gw = gateway
    gw.sim.controllers.set_default_scenario("hold")
    job = await _running(gw, minimal("events", count="2"))
    url = f"{gw.jobs_url()}/{job['metadata']['id']}/events"

    async def enough() -> dict[str, Any] | None:
        answer = await gw.client.get(url, headers=ALICE)
        assert answer.status == 200
        events = await answer.json()
        reasons = {e["reason"] for e in events["items"]}
        return events if {"Scheduled", "Started"} <= reasons and any(
            e["object"]["kind"] == "TFJob" for e in events["items"]) else None

    events = await wait_until(enough)
    parsed = schemas.EventList.model_validate(events)
    assert parsed.metadata.total == len(parsed.items)
    assert [e.firstTime for e in parsed.items] == sorted(e.firstTime or "" for e in parsed.items)
    pods = {r["id"] for r in job["status"]["replicas"]}
    named = {e.object.name for e in parsed.items}
    assert pods <= named <= pods | {object_name("events", job["metadata"]["id"])}
    started = next(e for e in parsed.items if e.reason == "Started")
    assert started.source == "kubelet" and started.object.fieldPath == "spec.containers{tensorflow}"


async def test_logs_on_every_backend() -> None:
    # Each backend names its pods its own way (JobSet: a random suffix); the stored status finds them.
    async with MultiCluster(f"test:{uuid.uuid4().hex}:") as mc:
        for cid in BACKENDS:
            mc.sims[cid].controllers.set_default_scenario("hold")
        created = {cid: await mc.create(cid, small_body(f"logs-{cid}", type="worker", count="2")) for cid in BACKENDS}
        for cid, job in created.items():
            job_id = job["metadata"]["id"]
            running = await mc.wait_phase(cid, job_id, "running", until=lambda j: len(j["status"]["replicas"]) == 2)
            pod = _pod(running, "worker-1")
            mc.sims[cid].store.append_log(PARTITION, pod, "tensorflow", f"hello from {cid}\n")
            answer = await mc.http.get(f"{mc.jobs_url(cid)}/{job_id}/logs", params={"replica": "worker-1"},
                                       headers={"X-User": "alice"})
            assert answer.status == 200, (cid, await answer.text())
            assert answer.headers["X-Pod"] == pod
            assert (await answer.text()).endswith(f"hello from {cid}\n"), cid
            events = await mc.http.get(f"{mc.jobs_url(cid)}/{job_id}/events", headers={"X-User": "alice"})
            assert events.status == 200
            assert any(e["object"]["name"] == pod for e in (await events.json())["items"]), cid
