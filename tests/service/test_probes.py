"""Version, ping (200 / 503), liveness, metrics, and Redis loss: records rebuilt from the cluster."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway import appkeys
from tests.conftest import Gateway, wait_until
from tests.service.seed_bodies import minimal

USER = {"X-User": "alice"}


async def test_version(gateway: Gateway) -> None:
    response = await gateway.client.get("/api/version")
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"version", "gitCommit", "buildDate", "apiVersions"}  # nothing about the runtime
    assert body["apiVersions"] == ["v1alpha1", "v1alpha2"]
    assert response.headers["X-Request-Id"]
    assert response.headers["Server"] == "clever-gateway"


ADMIN = {"X-User": "ops"}
AS_ADMIN = {"auth": {"mode": "none", "adminUsers": ["ops"]}}


async def test_ping_tells_anyone_only_ok_and_admins_the_detail(make_gateway: Any) -> None:
    gw = await make_gateway(**AS_ADMIN)

    async def watch_reported() -> dict[str, Any] | None:
        body = await (await gw.client.get("/api/ping", headers=ADMIN)).json()
        return body if body["clusters"]["c1"]["heartbeatAgeSeconds"] is not None else None

    healthy = await wait_until(watch_reported)
    assert healthy["status"] == "ok"
    assert healthy["redis"]["reachable"] is True
    c1 = healthy["clusters"]["c1"]
    assert c1["reachable"] is True and c1["source"] == "watch" and c1["watchLive"] is True
    assert c1["backend"] == "training-operator" and healthy["authMode"] == "none"
    assert "authentication is disabled" in healthy["warning"]
    # Anyone else (a readiness probe, a curious user) learns nothing about clusters, backends or auth.
    for headers in ({}, USER):
        answer = await gw.client.get("/api/ping", headers=headers)
        assert answer.status == 200 and await answer.json() == {"status": "ok"}


async def test_ping_503_only_when_every_cluster_is_down(make_gateway: Any, kubesim: Any) -> None:
    from tests.conftest import RUNTIMES

    gw = await make_gateway(**AS_ADMIN, clusters=[
        {"id": "c1", "server": kubesim.url, "token": kubesim.token, "caFile": kubesim.ca_file, "runtimes": RUNTIMES},
        {"id": "dead", "server": "https://127.0.0.1:1", "token": "t", "runtimes": RUNTIMES,
         "requestTimeoutSeconds": 1},
    ])
    await wait_until(lambda: _status(gw, 200))  # one cluster down: still ready
    body = await (await gw.client.get("/api/ping", headers=ADMIN)).json()
    assert body["clusters"]["dead"]["reachable"] is False and body["clusters"]["dead"]["error"]
    assert body["clusters"]["dead"]["source"] == "probe"

    gw.sim.faults.down()
    try:
        await wait_until(lambda: _status(gw, 503))  # the last one's watch goes stale, then its probe fails
        answer = await gw.client.get("/api/ping")
        assert await answer.json() == {"status": "unavailable"} and int(answer.headers["Retry-After"]) > 0
        detail = await (await gw.client.get("/api/ping", headers=ADMIN)).json()
        assert detail["status"] == "unavailable" and detail["clusters"]["c1"]["reachable"] is False
        assert (await gw.client.get("/healthz")).status == 200  # liveness ignores dependencies
    finally:
        gw.sim.faults.up()
    await wait_until(lambda: _status(gw, 200))


async def test_a_flood_of_pings_is_no_load_on_the_api_server(make_gateway: Any) -> None:
    """Without a live watch every cluster is probed, but at most once per few seconds for all callers."""
    gw = await make_gateway(sync={"watch": False}, **AS_ADMIN)
    metrics = gw.app[appkeys.METRICS]

    def probes() -> float:
        return sum(sample.value for family in metrics.registry.collect() for sample in family.samples
                   if sample.name == "clever_gateway_cluster_requests_total" and sample.labels.get("verb") == "ping")

    before = probes()
    answers = await asyncio.gather(*(gw.client.get("/api/ping", headers=ADMIN if n % 2 else {})
                                     for n in range(200)))
    assert {a.status for a in answers} == {200}
    assert probes() - before <= 1


async def _status(gw: Gateway, status: int) -> bool:
    return (await gw.client.get("/api/ping")).status == status


async def test_metrics_count_requests_and_cluster_calls(gateway: Gateway) -> None:
    await gateway.client.post(gateway.jobs_url(), json=minimal("metered"), headers=USER)
    text = await (await gateway.client.get("/metrics")).text()
    assert 'clever_gateway_http_requests_total{method="POST",route="/api/{version}/clusters/{cid}/partitions/' \
           '{partition}/{kind}",status="200"}' in text
    assert 'clever_gateway_cluster_requests_total{cluster="c1",code="201",verb="create"}' in text
    assert "clever_gateway_outbox_depth" in text

    async def backlog_reported() -> bool:
        text = await (await gateway.client.get("/metrics")).text()
        return 'clever_gateway_sync_backlog_jobs{cluster="c1"} 0.0' in text

    await wait_until(backlog_reported)  # the watch wrote the new job's status: nothing left behind


async def test_redis_loss_is_rebuilt_from_the_cluster(gateway: Gateway) -> None:
    gw = gateway
    ids = []
    for name in ("keep-a", "keep-b"):
        created = await (await gw.client.post(gw.jobs_url(), json=minimal(name, description=f"d {name}"),
                                              headers=USER)).json()
        ids.append(created["metadata"]["id"])
    before = await (await gw.client.get(gw.jobs_url(), headers=USER)).json()
    # Lose everything under the gateway's prefix (never FLUSHDB: other tests share this Redis).
    keys = [k async for k in gw.redis.scan_iter(match=gw.prefix + "*")]
    await gw.redis.delete(*keys)
    gw.app[appkeys.SYNCS]["c1"].request_relist()

    async def rebuilt() -> dict[str, Any] | None:
        listing = await (await gw.client.get(gw.jobs_url(), headers=USER)).json()
        return listing if listing["metadata"]["total"] == 2 else None

    after = await wait_until(rebuilt)
    assert sorted(i["metadata"]["id"] for i in after["items"]) == sorted(ids)
    for old, new in zip(sorted(before["items"], key=lambda i: i["metadata"]["id"]),
                        sorted(after["items"], key=lambda i: i["metadata"]["id"]), strict=True):
        assert new["spec"] == old["spec"]
        assert new["metadata"] == old["metadata"]
    # The name claims came back too.
    duplicate = await gw.client.post(gw.jobs_url(), json=minimal("keep-a"), headers=USER)
    assert duplicate.status == 409


async def test_get_rebuilds_a_lost_record_without_the_watch(make_gateway: Any) -> None:
    gw = await make_gateway(sync={"watch": False})
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("solo"), headers=USER)).json()
    keys = [k async for k in gw.redis.scan_iter(match=gw.prefix + "*")]
    await gw.redis.delete(*keys)
    response = await gw.client.get(f"{gw.jobs_url()}/{created['metadata']['id']}", headers=USER)
    assert response.status == 200
    assert (await response.json())["spec"] == created["spec"]


async def test_unknown_ids_cost_no_cluster_call_while_the_watch_is_live(gateway: Gateway) -> None:
    """With a live watch Redis mirrors the cluster: guessing ids must not turn into cluster traffic."""
    gw = gateway
    await (await gw.client.post(gw.jobs_url(), json=minimal("real"), headers=USER)).json()

    async def watch_current() -> bool:
        state = gw.app[appkeys.STATE]
        return (await state.watch.heartbeat("c1") is not None
                and await state.watch.resource_version("c1", "jobs") is not None)

    await wait_until(watch_current)
    metrics = gw.app[appkeys.METRICS]

    def reads() -> float:  # the gateway's GET and LIST calls to the cluster (its watch streams aside)
        return sum(sample.value for family in metrics.registry.collect() for sample in family.samples
                   if sample.name == "clever_gateway_cluster_requests_total"
                   and sample.labels.get("verb") in ("get", "list"))

    before = reads()
    for guess in ("0123456789ab", "ffffffffffff", "not-a-job"):
        response = await gw.client.get(f"{gw.jobs_url()}/{guess}", headers=USER)
        assert response.status == 404
    assert reads() == before
