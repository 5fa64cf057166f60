"""Phase webhooks against KubeSim, the real Redis and a real receiver on loopback: the body and its
signature, the filters, a receiver that fails once gets the change again, a dead receiver delays no
other hook, and the config check of webhook URLs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, load_settings
from tests.conftest import CLUSTER, IN_EVERY_MODE, PARTITION, Gateway, RedisMode, wait_until
from tests.service.seed_bodies import minimal
from tests.service.webhook_receiver import Receiver

ALICE = {"X-User": "alice"}
SECRET = b"hook-secret-1"
FIELDS = {"id", "name", "owner", "cluster", "partition", "phase", "previousPhase", "reason", "message", "at"}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    made = Receiver(SECRET)
    await made.start()
    yield made
    await made.stop()


def _notifications(hooks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"webhooks": hooks, "retryInitialSeconds": 0.05, "retryMaxSeconds": 0.2, "claimIdleSeconds": 120,
            **extra}


async def _create(gw: Gateway, name: str) -> str:
    response = await gw.client.post(gw.jobs_url(), json=minimal(name), headers=ALICE)
    assert response.status == 200, await response.text()
    return str((await response.json())["metadata"]["id"])


async def _phase(gw: Gateway, job_id: str) -> str:
    response = await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=ALICE)
    return str((await response.json())["status"]["phase"])


async def test_each_phase_change_is_posted_signed(make_gateway: Callable[..., Awaitable[Gateway]],
                                                  receiver: Receiver, tmp_path: Path) -> None:
    secret_file = tmp_path / "hook.key"
    secret_file.write_text(SECRET.decode() + "\n")
    gw = await make_gateway(notifications=_notifications([{"url": receiver.url("/all"),
                                                           "secretFile": str(secret_file)}]))
    gw.sim.controllers.set_default_scenario("succeed:after=0.5")
    job_id = await _create(gw, "signed")
    await wait_until(lambda: _ends_at(receiver, "/all", job_id, "succeeded"), timeout=15)

    seen = receiver.delivered("/all")
    assert seen and all(d.signed_ok for d in seen)
    events = [d.event for d in seen]
    assert all(set(e) == FIELDS for e in events), events
    first = next(e for e in events if e["previousPhase"] is None)
    assert first["phase"] == "pending" and first["name"] == "signed" and first["owner"] == "alice"
    assert (first["cluster"], first["partition"], first["id"]) == (CLUSTER, PARTITION, job_id)
    assert first["at"].endswith("Z")
    # Every change once: the chain from the first status to the last has no gap and no repeat.
    assert _chain(events, job_id) == ["pending", *_chain(events, job_id)[1:]]
    assert len({d.delivery_id for d in seen}) == len(seen)
    # The signature is of the exact body with this hook's key: another key does not give it.
    forged = "sha256=" + hmac.new(b"other-key", seen[0].body, hashlib.sha256).hexdigest()
    assert all(d.signed_ok for d in seen) and forged != _signature_of(seen[0].body)


async def test_filters_by_phase_cluster_and_partition(make_gateway: Callable[..., Awaitable[Gateway]],
                                                      receiver: Receiver) -> None:
    secret = SECRET.decode()
    gw = await make_gateway(notifications=_notifications([
        {"url": receiver.url("/done"), "secret": secret, "phases": ["succeeded", "failed"]},
        {"url": receiver.url("/elsewhere"), "secret": secret, "partitions": ["not-this-one"]},
        {"url": receiver.url("/other-cluster"), "secret": secret, "clusters": ["c9"]},
        {"url": receiver.url("/here"), "secret": secret, "clusters": [CLUSTER], "partitions": [PARTITION],
         "phases": ["pending"]},
    ]))
    gw.sim.controllers.set_default_scenario("succeed:after=0.5")
    job_id = await _create(gw, "filtered")
    await wait_until(lambda: _delivered(receiver, "/done"), timeout=15)
    await wait_until(lambda: _delivered(receiver, "/here"), timeout=15)
    await wait_until(lambda: _phase_is(gw, job_id, "succeeded"))
    await asyncio.sleep(0.5)  # any stray delivery to the filtered-out hooks would have come by now

    assert [d.event["phase"] for d in receiver.delivered("/done")] == ["succeeded"]
    assert [d.event["phase"] for d in receiver.delivered("/here")] == ["pending"]
    assert not [d for d in receiver.deliveries if d.path in ("/elsewhere", "/other-cluster")]
    # Filtered-out changes are acknowledged, not left pending for ever.
    groups = await gw.redis.xinfo_groups(gw.key_names.phases)
    assert all(g["pending"] == 0 for g in groups), groups


async def test_a_receiver_that_fails_gets_the_change_again(make_gateway: Callable[..., Awaitable[Gateway]],
                                                           receiver: Receiver) -> None:
    receiver.answers["/flaky"] = [500, 200]
    gw = await make_gateway(notifications=_notifications([
        {"url": receiver.url("/flaky"), "secret": SECRET.decode(), "phases": ["pending"]}]))
    job_id = await _create(gw, "flaky")
    await wait_until(lambda: _delivered(receiver, "/flaky"), timeout=15)

    attempts = [d for d in receiver.deliveries if d.path == "/flaky"]
    print("attempts:", [(d.delivery_id, d.status, d.event["phase"]) for d in attempts])
    assert [d.status for d in attempts] == [500, 200]
    assert attempts[0].delivery_id == attempts[1].delivery_id and attempts[0].body == attempts[1].body
    assert attempts[1].event["id"] == job_id and attempts[1].signed_ok


async def test_a_dead_receiver_delays_no_other_hook(make_gateway: Callable[..., Awaitable[Gateway]],
                                                    receiver: Receiver) -> None:
    receiver.hang.add("/dead")
    gw = await make_gateway(notifications=_notifications(
        [{"url": receiver.url("/dead"), "secret": SECRET.decode(), "timeoutSeconds": 60, "concurrency": 1},
         {"url": receiver.url("/live"), "secret": SECRET.decode(), "phases": ["pending"]}],
        claimIdleSeconds=200))
    ids = [await _create(gw, f"busy-{n}") for n in range(4)]

    # Every change reaches the live hook while the dead one still hangs on its first delivery (its
    # timeout is 60 s): the dead hook's backlog holds up nothing else.
    async def all_live() -> bool:
        return {d.event["id"] for d in receiver.delivered("/live")} == set(ids)

    await wait_until(all_live, timeout=20)
    assert not receiver.delivered("/dead")  # still hanging on its first delivery
    # The API answers meanwhile too.
    listed = await gw.client.get(gw.jobs_url(), headers=ALICE)
    assert listed.status == 200 and (await listed.json())["metadata"]["total"] == 4


@pytest.mark.parametrize("url", ["http://example.com/hook", "ftp://127.0.0.1/x", "hook.example.com",
                                 "http://10.0.0.1/hook"])
def test_webhook_urls_are_checked_at_load(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={}, base={"auth": {"mode": "none"}, "clusters": [{"id": "c1", "server": "https://k"}],
                                        "notifications": {"webhooks": [{"url": url, "secret": "k"}]}})
    line = next(li for li in str(raised.value).splitlines() if "webhooks.0.url" in li)
    assert "https://" in line and "loopback" in line


def test_webhook_urls_accepted() -> None:
    settings = load_settings(environ={}, base={
        "auth": {"mode": "none"}, "clusters": [{"id": "c1", "server": "https://k"}],
        "notifications": {"webhooks": [{"url": "https://hooks.example.com/x", "secret": "k"},
                                       {"url": "http://127.0.0.1:9000/x", "secret": "k"},
                                       {"url": "http://[::1]:9000/x", "secret": "k", "name": "v6"}]}})
    assert [h.url for h in settings.notifications.webhooks] == ["https://hooks.example.com/x", "http://127.0.0.1:9000/x",
                                                               "http://[::1]:9000/x"]


def _chain(events: list[dict[str, Any]], job_id: str) -> list[str]:
    """The job's phases in the order the changes link up (previousPhase → phase), from its first status."""
    by_previous = {e["previousPhase"]: e["phase"] for e in events if e["id"] == job_id}
    chain, current = [], None
    while current in by_previous and len(chain) <= len(by_previous):
        current = by_previous[current]
        chain.append(current)
    return chain


def _signature_of(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()


async def _delivered(receiver: Receiver, path: str) -> bool:
    return bool(receiver.delivered(path))


async def _ends_at(receiver: Receiver, path: str, job_id: str, phase: str) -> bool:
    chain = _chain([d.event for d in receiver.delivered(path)], job_id)
    return bool(chain) and chain[-1] == phase


async def _phase_is(gw: Gateway, job_id: str, phase: str) -> bool:
    return await _phase(gw, job_id) == phase


@IN_EVERY_MODE
async def test_changes_are_delivered_in_every_redis_mode(make_gateway: Callable[..., Awaitable[Gateway]],
                                                         redis_mode: RedisMode, receiver: Receiver) -> None:
    """Standalone and Sentinel append in the status write's script; Redis Cluster returns the change and the
    writer appends it (the stream is in another slot): each change once either way."""
    gw = await make_gateway(redis=dict(redis_mode.settings), notifications=_notifications(
        [{"url": receiver.url("/modes"), "secret": SECRET.decode()}]))
    gw.sim.controllers.set_default_scenario("succeed:after=0.3")
    job_id = await _create(gw, f"mode-{redis_mode.name}")
    await wait_until(lambda: _ends_at(receiver, "/modes", job_id, "succeeded"), timeout=20)
    events = [d.event for d in receiver.delivered("/modes")]
    assert _chain(events, job_id)[0] == "pending" and all(d.signed_ok for d in receiver.delivered("/modes"))
    # One delivery per change: no change appended twice.
    assert len(events) == len({(e["previousPhase"], e["phase"]) for e in events}), events
