"""The watch survives cut streams and 410 Gone (relist); impersonation headers reach the cluster;
the demo command serves the legacy API end to end."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest

from gateway import appkeys
from kubesim.store import PODS
from tests.conftest import PARTITION, Gateway, wait_until
from tests.service.seed_bodies import minimal
from translators.naming import object_name

USER = {"X-User": "alice"}


async def _phase(gw: Gateway, job_id: str) -> str:
    job = await (await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=USER)).json()
    return str(job["status"]["phase"])


async def test_watch_relists_after_410_and_cut_streams(gateway: Gateway) -> None:
    gw = gateway
    sync = gw.app[appkeys.SYNCS]["c1"]
    await wait_until(lambda: _true(sync.leading))
    gw.sim.controllers.set_default_scenario("hold")
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("relist"), headers=USER)).json()
    job_id = created["metadata"]["id"]
    await wait_until(lambda: _equals(_phase(gw, job_id), "running"))
    # Old resourceVersions fall out of history, then every stream is cut: resuming gets 410 → relist.
    gw.sim.faults.shrink_history(1)
    gw.sim.faults.cut_watches()
    gw.sim.controllers.set_job_scenario(PARTITION, object_name("relist", job_id), "succeed:after=1")
    await wait_until(lambda: _equals(_phase(gw, job_id), "succeeded"))


async def test_a_burst_of_events_for_one_job_costs_a_few_status_writes(gateway: Gateway) -> None:
    """A slow Redis does not hold the watch up: 300 changes of one job while writes are slow cost a few writes."""
    gw = gateway
    gw.sim.controllers.set_default_scenario("hold")
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("burst"), headers=USER)).json()
    job_id = created["metadata"]["id"]
    await wait_until(lambda: _equals(_phase(gw, job_id), "running"))
    statuses = gw.app[appkeys.STATUSES]
    writes: list[str] = []
    real_publish = statuses.publish

    async def counted(updates: Any) -> list[int]:
        batch = list(updates)
        writes.extend(u.job_id for u in batch)
        await asyncio.sleep(0.02)  # a slow Redis: 300 writes one after another would take 6 s
        return await real_publish(batch)

    statuses.publish = counted  # type: ignore[method-assign]
    pod_name = f"{object_name('burst', job_id)}-worker-0"
    pod = gw.sim.store.get(PODS, PARTITION, pod_name)
    for restarts in range(1, 301):  # one synchronous burst: 300 MODIFIED events queued at once
        status = {**pod["status"], "containerStatuses": [
            {**pod["status"]["containerStatuses"][0], "restartCount": restarts}]}
        gw.sim.store.update_status(PODS, PARTITION, pod_name, status)

    async def restarts_seen() -> bool:
        job = await (await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=USER)).json()
        return bool(job["status"]["replicas"] and job["status"]["replicas"][0]["restartCount"] == 300)

    await wait_until(restarts_seen)
    assert 1 <= len(writes) < 60, len(writes)  # one write per event would be 300


async def _true(value: Any) -> Any:
    return value


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_impersonation_headers_reach_the_cluster(make_gateway: Any) -> None:
    gw = await make_gateway(cluster={"impersonate": True})
    gw.sim.policy.enforce_impersonation = True
    gw.sim.policy.allow("alice", "*", "*", PARTITION)
    allowed = await gw.client.post(gw.jobs_url(), json=minimal("asuser"), headers=USER)
    assert allowed.status == 200, await allowed.text()
    assert any(i["user"] == "alice" and i["method"] == "POST" for i in gw.sim.impersonations)

    before = await gw.keys()
    denied = await gw.client.post(gw.jobs_url(), json=minimal("asbob"), headers={"X-User": "bob"})
    assert denied.status == 403, await denied.text()
    assert (await denied.json())["reason"] == "Forbidden"
    assert await gw.keys() == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_demo_serves_the_legacy_api(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.demo import DEMO_ADMIN, run_demo

    port = _free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    demo = asyncio.create_task(run_demo(port=port, ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), timeout=30)
        base = f"http://127.0.0.1:{port}"
        # It says at start who the admin is, and that user is one.
        assert f"admin user: {DEMO_ADMIN} " in capsys.readouterr().out
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/version") as response:
                assert response.status == 200
            url = f"{base}/api/v1alpha1/clusters/c1/partitions/clever/tfjobs"
            body = {"name": "demo", "runtime": "Python_2.7+Tensorflow_1.2.1", "bootfile": "/clever/admin/file.py",
                    "cpu": "1", "memory": "1Gi", "gpu": "0", "type": "worker", "count": "1"}
            async with http.post(url, json=body, headers={"X-User": "admin"}) as response:
                assert response.status == 200, await response.text()
                created = await response.json()
            async with http.get(f"{url}/{created['metadata']['id']}", headers={"X-User": "admin"}) as response:
                assert response.status == 200
            # The same job on the JobSet cluster; admin sees every user's jobs there.
            jobset_url = url.replace("/clusters/c1/", "/clusters/c2/")
            async with http.post(jobset_url, json={**body, "count": "2"}, headers={"X-User": "bob"}) as response:
                assert response.status == 200, await response.text()
            async with http.get(f"{jobset_url}?user=*", headers={"X-User": "admin"}) as response:
                listing = await response.json()
                assert [item["metadata"]["uid"] for item in listing["items"]] == ["bob"]
            async with http.get(f"{base}/api/ping") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok"}  # the detail is for admins only
            async with http.get(f"{base}/api/ping", headers={"X-User": DEMO_ADMIN}) as response:
                assert set((await response.json())["clusters"]) == {"c1", "c2"}
            # The dashboard, behind its user-name prompt (auth none); the job's log and events on the API.
            async with http.get(f"{base}/ui", allow_redirects=False) as response:
                assert response.status == 303 and response.headers["Location"] == "/ui/login?next=/ui"
            async with http.get(f"{base}/ui/login") as response:
                assert response.status == 200 and 'name="user"' in await response.text()
            async with http.get(f"{url}/{created['metadata']['id']}/events", headers={"X-User": "admin"}) as response:
                assert response.status == 200
    finally:
        stop.set()
        await asyncio.wait_for(demo, timeout=15)
