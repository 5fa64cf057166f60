"""The Redis-touching paths of the gateway in every Redis mode: standalone, Sentinel (master + replica +
three sentinels) and a three-master Redis Cluster, each a real redis-server topology
(`tests.redis_servers`, session-scoped). Create/get/list/patch/delete, the outbox, the watch and the
watch lease run once per mode; in sentinel and cluster modes every acknowledged write WAITs for the
replica (the default `redis.waitReplicas: 1`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway import appkeys
from gateway.state.keys import Keys
from tests.conftest import IN_EVERY_MODE, Gateway, RedisMode, wait_until
from tests.redis_servers import RedisServer, free_port, wait_for
from tests.service.seed_bodies import minimal

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}

MakeGateway = Callable[..., Awaitable[Gateway]]


async def _gateway(make_gateway: MakeGateway, redis_mode: RedisMode, **overrides: Any) -> Gateway:
    gw = await make_gateway(redis=dict(redis_mode.settings), **overrides)
    gw.redis = redis_mode.client
    return gw


async def _phase(gw: Gateway, job_id: str, headers: dict[str, str] = ALICE) -> str:
    answer = await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=headers)
    assert answer.status == 200, await answer.text()
    return str((await answer.json())["status"]["phase"])


@IN_EVERY_MODE
async def test_create_get_list_patch_delete(make_gateway: MakeGateway, redis_mode: RedisMode) -> None:
    gw = await _gateway(make_gateway, redis_mode)
    gw.sim.controllers.set_default_scenario("hold")
    ids = {}
    for name, user in (("mode-a", ALICE), ("mode-b", ALICE), ("mode-c", BOB)):
        answer = await gw.client.post(gw.jobs_url(), json=minimal(name), headers=user)
        assert answer.status == 200, await answer.text()
        ids[name] = (await answer.json())["metadata"]["id"]
    assert (await gw.client.post(gw.jobs_url(), json=minimal("mode-a"), headers=ALICE)).status == 409

    listing = await (await gw.client.get(gw.jobs_url(), headers=ALICE)).json()
    assert [i["metadata"]["id"] for i in listing["items"]] == [ids["mode-a"], ids["mode-b"]]
    job_url = f"{gw.jobs_url()}/{ids['mode-a']}"
    patched = await gw.client.patch(job_url, json={"description": "in every mode"}, headers=ALICE)
    assert patched.status == 200, await patched.text()
    assert (await (await gw.client.get(job_url, headers=ALICE)).json())["spec"]["description"] == "in every mode"
    assert (await gw.client.get(job_url, headers=BOB)).status == 404

    assert (await gw.client.delete(job_url, headers=ALICE)).status == 200
    assert (await gw.client.get(job_url, headers=ALICE)).status == 404
    again = await gw.client.post(gw.jobs_url(), json=minimal("mode-a"), headers=ALICE)  # the name is free again
    assert again.status == 200
    assert await _phase(gw, ids["mode-c"], BOB) in ("pending", "running")


@IN_EVERY_MODE
async def test_queued_create_lands_through_the_outbox(make_gateway: MakeGateway, redis_mode: RedisMode) -> None:
    gw = await _gateway(make_gateway, redis_mode)
    gw.sim.controllers.set_default_scenario("hold")
    gw.sim.faults.down()
    try:
        answer = await gw.client.post(gw.jobs_url(), json=minimal("queued-in-mode"), headers=ALICE)
        assert answer.status == 200
        created = await answer.json()
        assert created["status"]["phase"] == "queued"
        assert await gw.outbox_depth() == 1
    finally:
        gw.sim.faults.up()
    job_id = created["metadata"]["id"]

    async def landed() -> bool:
        return await _phase(gw, job_id) in ("pending", "running")

    await wait_until(landed)
    await wait_until(lambda: _outbox_empty(gw))


async def _outbox_empty(gw: Gateway) -> bool:
    return await gw.outbox_depth() == 0


@IN_EVERY_MODE
async def test_the_watch_moves_the_status(make_gateway: MakeGateway, redis_mode: RedisMode) -> None:
    gw = await _gateway(make_gateway, redis_mode)
    gw.sim.controllers.set_default_scenario("hold")
    await wait_until(lambda: _watch_live(gw))  # else a GET reads the cluster itself, and the test proves less
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("watched"), headers=ALICE)).json()

    async def running() -> bool:
        return await _phase(gw, created["metadata"]["id"]) == "running"

    await wait_until(running)
    state = gw.app[appkeys.STATE]
    assert await state.watch.resource_version("c1", "jobs") is not None


@IN_EVERY_MODE
async def test_one_watcher_and_a_takeover(make_gateway: MakeGateway, redis_mode: RedisMode) -> None:
    fast = {"sync": {"leaseSeconds": 1.0}}
    first = await _gateway(make_gateway, redis_mode, **fast)
    await wait_until(lambda: _leading(first))
    second = await _gateway(make_gateway, redis_mode, **fast)
    assert not second.app[appkeys.SYNCS]["c1"].leading
    await first.client.close()  # gives the lease up on the way out
    await wait_until(lambda: _leading(second))

    second.sim.controllers.set_default_scenario("hold")
    created = await (await second.client.post(second.jobs_url(), json=minimal("taken-over"), headers=ALICE)).json()

    async def running() -> bool:
        return await _phase(second, created["metadata"]["id"]) == "running"

    await wait_until(running)


async def _watch_live(gw: Gateway) -> bool:
    return gw.app[appkeys.WATCHES].live("c1")


async def _leading(gw: Gateway) -> bool:
    return bool(gw.app[appkeys.SYNCS]["c1"].leading)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Path]]:
    """A redis-server that speaks only TLS and knows the gateway as an ACL user: (server, its CA file)."""
    from kubesim.tls import make_certificates

    certs = make_certificates(tmp_path / "tls")
    port = free_port()
    server = RedisServer(tmp_path / "redis", port=port, args=(
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(certs.cert_file),
        "--tls-key-file", str(certs.key_file), "--tls-ca-cert-file", str(certs.ca_file),
        "--tls-auth-clients", "no", "--requirepass", "not-the-gateways",
        "--user", "clever-gateway", "on", ">s3cret", "~*", "&*", "+@all"))
    server.start(wait=False)
    try:
        def answers() -> bool:
            with redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(certs.ca_file),
                             username="clever-gateway", password="s3cret", socket_timeout=2) as client:
                return bool(client.ping())

        wait_for(answers, timeout=20, what="TLS redis-server")
        yield server, certs.ca_file
    finally:
        server.kill()


async def test_tls_and_a_password_file(tls_redis: tuple[RedisServer, Path], make_gateway: MakeGateway,
                                       tmp_path: Path) -> None:
    """rediss:// with the server's CA, an ACL user, its password from a file (a mounted Kubernetes Secret)."""
    server, ca_file = tls_redis
    secret = tmp_path / "redis-password"
    secret.write_text("s3cret\n")
    gw = await make_gateway(redis={"url": f"rediss://127.0.0.1:{server.port}/0", "tlsCaFile": str(ca_file),
                                   "username": "clever-gateway", "passwordFile": str(secret)})
    answer = await gw.client.post(gw.jobs_url(), json=minimal("over-tls"), headers=ALICE)
    assert answer.status == 200, await answer.text()
    listing = await (await gw.client.get(gw.jobs_url(), headers=ALICE)).json()
    assert [i["spec"]["name"] for i in listing["items"]] == ["over-tls"]


@IN_EVERY_MODE
async def test_a_restarted_replica_takes_its_own_lease_back_at_once(make_gateway: MakeGateway, redis_mode: RedisMode,
                                                                    redis_prefix: str) -> None:
    # What a replica killed with SIGKILL leaves behind: its lease, held for another 15 s.
    await redis_mode.client.set(Keys(redis_prefix).lease("watch:c1"), "gw-7 0123456789ab", px=15000)
    other = await _gateway(make_gateway, redis_mode, replicaId="gw-70", sync={"leaseSeconds": 15})
    restarted = await _gateway(make_gateway, redis_mode, replicaId="gw-7", sync={"leaseSeconds": 15})
    await wait_until(lambda: _leading(restarted), timeout=5)
    assert not other.app[appkeys.SYNCS]["c1"].leading
    holder = await redis_mode.client.get(Keys(redis_prefix).lease("watch:c1"))
    assert holder.startswith("gw-7 ") and holder != "gw-7 0123456789ab"
