"""History against KubeSim and the real Redis: a finished job whose cluster object is gone stays listed,
marked `"archived": true`, until the retention sweep removes it; a DELETE through the API still removes
it at once; a job whose object went while no gateway watched is archived at the next relist. And the LIST
filters `?phase=` and `?since=` (invalid values: the legacy 400)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from tests.conftest import PARTITION, Gateway, wait_until
from tests.service.seed_bodies import assert_legacy_object, minimal
from translators.naming import object_name

ALICE = {"X-User": "alice"}
RETENTION_SECONDS = 3.0


async def _create(gw: Gateway, name: str) -> str:
    response = await gw.client.post(gw.jobs_url(), json=minimal(name), headers=ALICE)
    assert response.status == 200, await response.text()
    return str((await response.json())["metadata"]["id"])


async def _get(gw: Gateway, job_id: str) -> dict[str, Any] | None:
    response = await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=ALICE)
    return await response.json() if response.status == 200 else None


async def _list(gw: Gateway, query: str = "") -> dict[str, Any]:
    response = await gw.client.get(gw.jobs_url() + query, headers=ALICE)
    assert response.status == 200, await response.text()
    listed: dict[str, Any] = await response.json()
    return listed


def _phase_is(gw: Gateway, job_id: str, phase: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        job = await _get(gw, job_id)
        return job is not None and job["status"]["phase"] == phase
    return check


def _archived(gw: Gateway, job_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        job = await _get(gw, job_id)
        return job is not None and job.get("archived") is True
    return check


def _delete_on_cluster(gw: Gateway, name: str, job_id: str) -> None:
    from kubesim.store import TFJOBS

    gw.sim.store.delete(TFJOBS, PARTITION, object_name(name, job_id))  # the pods go with it (GC)


async def test_finished_job_stays_listed_archived_then_is_swept(make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    gw = await make_gateway(retention={"finishedJobsDays": RETENTION_SECONDS / 86400, "sweepIntervalSeconds": 0.2})
    gw.sim.controllers.set_default_scenario("hold")
    done = await _create(gw, "done")
    running = await _create(gw, "running")
    gw.sim.controllers.set_job_scenario(PARTITION, object_name("done", done), "succeed:after=0.3")
    await wait_until(_phase_is(gw, done, "succeeded"))
    await wait_until(_phase_is(gw, running, "running"))
    plain_before = await _get(gw, done)
    assert plain_before is not None and "archived" not in plain_before

    _delete_on_cluster(gw, "done", done)
    _delete_on_cluster(gw, "running", running)  # gone while running: not finished, not archived
    await wait_until(_archived(gw, done))
    archived_at = time.monotonic()
    listed = await _list(gw)
    by_id = {item["metadata"]["id"]: item for item in listed["items"]}
    assert set(by_id) == {done, running}
    assert by_id[done]["archived"] is True and by_id[done]["status"]["phase"] == "succeeded"
    assert_legacy_object(by_id[done])  # every legacy field still there: the mark is additive
    assert {k: v for k, v in by_id[done].items() if k != "archived"} == plain_before
    assert "archived" not in by_id[running]

    async def swept() -> bool:
        return await _get(gw, done) is None

    await wait_until(swept, timeout=RETENTION_SECONDS + 10)
    kept_for = time.monotonic() - archived_at
    print(f"archived job kept for {kept_for:.2f}s (retention {RETENTION_SECONDS}s)")
    assert kept_for >= RETENTION_SECONDS - 0.5
    assert [item["metadata"]["id"] for item in (await _list(gw))["items"]] == [running]
    assert not await gw.redis.exists(gw.job_key(done))
    assert await gw.redis.zscore(gw.key_names.archived("c1", PARTITION), done) is None
    # Its name is free again.
    assert await _create(gw, "done")


async def test_delete_through_the_api_still_removes_an_archived_job(gateway: Gateway) -> None:
    gw = gateway
    gw.sim.controllers.set_default_scenario("fail:exit=2,after=0.3")
    job_id = await _create(gw, "failed-one")
    await wait_until(_phase_is(gw, job_id, "failed"))
    _delete_on_cluster(gw, "failed-one", job_id)
    await wait_until(_archived(gw, job_id))

    deleted = await gw.client.delete(f"{gw.jobs_url()}/{job_id}", headers=ALICE)
    assert deleted.status == 200, await deleted.text()
    assert await _get(gw, job_id) is None
    assert (await _list(gw))["metadata"]["total"] == 0
    assert await gw.redis.zscore(gw.key_names.archived("c1", PARTITION), job_id) is None


async def test_object_gone_while_unwatched_is_archived_at_the_relist(
        make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    first = await make_gateway()
    first.sim.controllers.set_default_scenario("succeed:after=0.3")
    job_id = await _create(first, "offline")
    await wait_until(_phase_is(first, job_id, "succeeded"))
    await first.client.close()  # the gateway stops (its watch lease released)
    _delete_on_cluster(first, "offline", job_id)

    second = await make_gateway()
    await wait_until(_archived(second, job_id))


async def test_list_filters_phase_and_since(gateway: Gateway) -> None:
    gw = gateway
    gw.sim.controllers.set_default_scenario("hold")
    ok = await _create(gw, "ok")
    bad = await _create(gw, "bad")
    late = await _create(gw, "late")
    gw.sim.controllers.set_job_scenario(PARTITION, object_name("ok", ok), "succeed:after=0.2")
    gw.sim.controllers.set_job_scenario(PARTITION, object_name("bad", bad), "fail:exit=1,after=0.2")
    await wait_until(_phase_is(gw, ok, "succeeded"))
    await wait_until(_phase_is(gw, bad, "failed"))
    await wait_until(_phase_is(gw, late, "running"))
    await asyncio.sleep(1.1)  # completion times have whole seconds: the next ones are later
    middle = time.time()
    await asyncio.sleep(1.1)
    fresh = await _create(gw, "fresh")
    gw.sim.controllers.set_job_scenario(PARTITION, object_name("late", late), "succeed:after=0.2")
    await wait_until(_phase_is(gw, late, "succeeded"))

    async def ids(query: str) -> list[str]:
        listed = await _list(gw, query)
        assert listed["metadata"]["total"] == len(listed["items"])
        return [item["metadata"]["id"] for item in listed["items"]]

    assert await ids("?phase=succeeded") == [ok, late]
    assert await ids("?phase=succeeded,FAILED") == [ok, bad, late]
    assert await ids("?phase=failed&phase=succeeded") == [ok, bad, late]  # the parameter repeated
    rfc3339 = datetime.fromtimestamp(middle, UTC).isoformat().replace("+00:00", "Z")
    # Created at or after (fresh), or finished at or after (late): not ok and bad, finished before.
    assert await ids(f"?since={rfc3339}") == [late, fresh]
    assert await ids(f"?since={int(middle)}") == [late, fresh]
    assert await ids("?since=0") == [ok, bad, late, fresh]
    assert await ids(f"?since={int(time.time()) + 3600}") == []
    assert await ids(f"?phase=succeeded&since={rfc3339}") == [late]

    # Without filters: the answer as before; with filters every job passes: the same bytes.
    plain = await (await gw.client.get(gw.jobs_url(), headers=ALICE)).read()
    every = "queued,pending,running,restarting,succeeded,failed,suspended,terminating"
    assert await (await gw.client.get(f"{gw.jobs_url()}?phase={every}", headers=ALICE)).read() == plain
    assert await (await gw.client.get(f"{gw.jobs_url()}?since=0", headers=ALICE)).read() == plain
    assert [item["metadata"]["id"] for item in orjson.loads(plain)["items"]] == [ok, bad, late, fresh]


async def test_invalid_list_filters_are_legacy_400s(gateway: Gateway) -> None:
    gw = gateway
    await _create(gw, "any")
    for query in ("?phase=", "?phase=done", "?phase=succeeded,,", "?since=", "?since=yesterday",
                  "?since=2024-05-01T12:00:00", "?since=2024-05-01", "?since=1e309", "?since=-5", "?since=nan",
                  "?phase=" + "x" * 5000, "?since=" + "9" * 400):
        response = await gw.client.get(gw.jobs_url() + query, headers=ALICE)
        body = await response.json()
        assert response.status == 400, (query, body)
        assert set(body) == {"code", "reason", "message", "details"} and body["code"] == 400, body
        assert body["details"]["parameter"] in ("phase", "since"), body
