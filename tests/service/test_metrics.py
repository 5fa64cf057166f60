"""/metrics after real calls: the process and build series, cluster-call and Redis latencies, the watch's
age measured from real events (-1 on a replica that does not watch), the outbox's oldest entry, and the
OIDC verification outcomes."""

from __future__ import annotations

import asyncio
import platform
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import appkeys
from gateway.version import VERSION
from tests.auth.issuer import LocalIssuer
from tests.conftest import CLUSTER, Gateway, wait_until
from tests.service.seed_bodies import minimal

USER = {"X-User": "alice"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(gw: Gateway) -> Samples:
    """Every sample of /metrics by (name, labels)."""
    response = await gw.client.get("/metrics")
    assert response.status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def matching(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return {key: v for (n, key), v in samples.items() if n == name and wanted <= key}


async def test_process_build_cluster_and_redis_series_after_real_calls(gateway: Gateway) -> None:
    gw = gateway
    created = await gw.client.post(gw.jobs_url(), json=minimal("measured"), headers=USER)
    assert created.status == 200
    job_id = (await created.json())["metadata"]["id"]
    assert (await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=USER)).status == 200
    samples = await scrape(gw)

    assert (value(samples, "process_resident_memory_bytes") or 0) > 0
    assert (value(samples, "process_cpu_seconds_total") or 0) > 0
    assert value(samples, "python_info", implementation=platform.python_implementation(),
                 major=str(platform.python_version_tuple()[0]), minor=str(platform.python_version_tuple()[1]),
                 patchlevel=str(platform.python_version_tuple()[2]), version=platform.python_version()) == 1
    assert matching(samples, "python_gc_collections_total")
    assert value(samples, "clever_gateway_build_info", version=VERSION, python=platform.python_version()) == 1

    # The create reached the cluster once (201) and was timed.
    count = value(samples, "clever_gateway_cluster_request_duration_seconds_count",
                  cluster=CLUSTER, verb="create", code="201")
    assert count == value(samples, "clever_gateway_cluster_requests_total", cluster=CLUSTER, verb="create",
                          code="201") == 1
    assert 0 < (value(samples, "clever_gateway_cluster_request_duration_seconds_sum", cluster=CLUSTER,
                      verb="create", code="201") or 0) < 5
    # The watch's list and watch calls too.
    assert matching(samples, "clever_gateway_cluster_request_duration_seconds_count", cluster=CLUSTER, verb="list")

    # Redis: the GET read the job's hash (operation "read"), the create stored it ("put"); no failures.
    redis_counts = matching(samples, "clever_gateway_redis_operation_duration_seconds_count")
    # (An operation of the background work may be under way while scraped: labelled, not yet observed.)
    operations = {dict(key)["operation"]: v for key, v in redis_counts.items() if v}
    assert operations.get("read", 0) >= 1 and operations.get("put", 0) >= 1, operations
    assert len(operations) >= 4, operations  # the request path and the background work, by name
    assert all((value(samples, "clever_gateway_redis_operation_duration_seconds_sum", operation=op) or 0) > 0
               for op in operations)
    assert not any(v for v in matching(samples, "clever_gateway_redis_operation_failures_total").values())


async def test_redis_failures_are_counted(make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    with socket.socket() as probe:  # a port nothing listens on: Redis is away from the start
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gw = await make_gateway(redis={"url": f"redis://127.0.0.1:{port}/0", "socketTimeoutSeconds": 0.5})
    response = await gw.client.get(f"{gw.jobs_url()}/0123456789ab", headers=USER)
    assert response.status == 503
    samples = await scrape(gw)
    assert (value(samples, "clever_gateway_redis_operation_failures_total", operation="read") or 0) >= 1
    assert (value(samples, "clever_gateway_redis_operation_duration_seconds_count", operation="read") or 0) >= 1


async def test_watch_age_is_the_age_of_real_events_and_minus_one_elsewhere(
        kubesim: Any, make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    kubesim.server.bookmark_interval = 3600.0  # only real changes make events: a quiet cluster is quiet
    leader = await make_gateway()
    await wait_until(lambda: _leading(leader))
    follower = await make_gateway()
    await asyncio.sleep(1.2)  # a few lease ticks of the follower
    assert value(await scrape(follower), "clever_gateway_watch_last_event_age_seconds", cluster=CLUSTER) == -1

    # A create makes events (the job, its pods): the leader's age is near 0 after them.
    assert (await leader.client.post(leader.jobs_url(), json=minimal("evented"), headers=USER)).status == 200

    async def age() -> float:
        reported = value(await scrape(leader), "clever_gateway_watch_last_event_age_seconds", cluster=CLUSTER)
        assert reported is not None and reported >= 0
        return reported

    await wait_until(lambda: _below(age, 1.0))
    # Then the job settles and nothing changes: the age grows although the heartbeat, rewritten every
    # second while the streams are up, stays fresh.
    watches = leader.app[appkeys.WATCHES]

    async def quiet_but_connected() -> bool:
        beat = watches.beat(CLUSTER)
        return await age() >= 3.0 and beat is not None and time.time() - beat < 2.0

    await wait_until(quiet_but_connected, timeout=20)


async def _below(measure: Callable[[], Awaitable[float]], limit: float) -> bool:
    return await measure() < limit


async def _leading(gw: Gateway) -> bool:
    return bool(gw.app[appkeys.SYNCS][CLUSTER].leading)


async def test_outbox_oldest_age_counts_a_queued_create(gateway: Gateway) -> None:
    gw = gateway
    gw.sim.faults.down()
    try:
        created = await (await gw.client.post(gw.jobs_url(), json=minimal("waiting"), headers=USER)).json()
        assert created["status"]["phase"] == "queued"

        async def aged() -> float | None:
            age = value(await scrape(gw), "clever_gateway_outbox_oldest_age_seconds")
            return age if age is not None and age >= 0.3 else None

        age = await wait_until(aged)
        assert age < 30
        assert value(await scrape(gw), "clever_gateway_outbox_depth") == 1
    finally:
        gw.sim.faults.up()

    async def emptied() -> bool:
        samples = await scrape(gw)
        return (value(samples, "clever_gateway_outbox_oldest_age_seconds") == 0
                and value(samples, "clever_gateway_outbox_depth") == 0)

    await wait_until(emptied)


@pytest.fixture
async def issuer() -> AsyncIterator[LocalIssuer]:
    async with LocalIssuer() as running:
        yield running


async def test_oidc_outcomes_are_exported(make_gateway: Callable[..., Awaitable[Gateway]],
                                          issuer: LocalIssuer) -> None:
    gw = await make_gateway(auth={"mode": "oidc", "oidc": {"issuer": issuer.issuer, "audience": issuer.audience},
                                  "partitionRead": [{"cluster": CLUSTER, "partition": "default", "groups": ["x"]}]})
    good = {"Authorization": f"Bearer {issuer.mint(user='alice', groups=['x'])}"}
    for _ in range(3):
        assert (await gw.client.get(gw.jobs_url(), headers=good)).status == 200
    bad = {"Authorization": f"Bearer {issuer.mint_unsigned(user='mallory')}"}
    assert (await gw.client.get(gw.jobs_url(), headers=bad)).status == 401
    samples = await scrape(gw)
    assert value(samples, "clever_gateway_oidc_tokens_total", outcome="verified") == 1
    assert value(samples, "clever_gateway_oidc_tokens_total", outcome="cached") == 2
    assert value(samples, "clever_gateway_oidc_tokens_total", outcome="rejected") == 1
    assert value(samples, "clever_gateway_oidc_tokens_total", outcome="unavailable") == 0
    assert (value(samples, "clever_gateway_oidc_jwks_fetches_total", outcome="ok") or 0) >= 1
    assert value(samples, "clever_gateway_oidc_jwks_fetches_total", outcome="failed") == 0


async def test_no_oidc_series_without_oidc(gateway: Gateway) -> None:
    samples = await scrape(gateway)
    assert not matching(samples, "clever_gateway_oidc_tokens_total")


async def test_list_cache_lookups_and_bytes_are_exported(gateway: Gateway) -> None:
    gw = gateway
    gw.sim.controllers.set_default_scenario("hold")
    assert (await gw.client.post(gw.jobs_url(), json=minimal("cached"), headers={"X-User": "alice"})).status == 200

    async def listed_from_the_cache() -> bool:  # once the watch has written the job's status, LISTs hit
        assert (await gw.client.get(gw.jobs_url(), headers={"X-User": "alice"})).status == 200
        return bool(value(await scrape(gw), "clever_gateway_list_cache_lookups_total", outcome="hit"))

    await wait_until(listed_from_the_cache)
    samples = await scrape(gw)
    assert (value(samples, "clever_gateway_list_cache_lookups_total", outcome="miss") or 0) >= 1  # the first
    held = value(samples, "clever_gateway_list_cache_bytes")
    assert held is not None and held > 0
