"""JobStore against the real Redis: claims, records and indexes, leases, outbox, failures → 503."""

from __future__ import annotations

import pytest
from redis import asyncio as redis_asyncio

from gateway.errors import Conflict, StoreUnavailable
from gateway.store import JobRecord, JobStore
from tests.conftest import prefix_keys
from translators.spec import JobIdentity, JobSpec, JobStatus, Replica, ReplicaStatus, Resources
from translators.status import PodProblem


def _record(job_id: str = "abc123", *, name: str = "mnist", owner: str = "alice") -> JobRecord:
    spec = JobSpec(name=name, runtime="Python_2.7+Tensorflow_1.2.1", bootfile="/clever/a.py",
                   replicas=(Replica(type="worker", count=2, resources=Resources(cpu="1", memory="1Gi", gpu=0)),),
                   args=("--x=1",), environment=(("A", "1"),))
    identity = JobIdentity(id=job_id, owner=owner, cluster="c1", partition="clever",
                           created="2026-01-01T00:00:00.000000Z", updated="2026-01-01T00:00:00.000000Z")
    return JobRecord(spec=spec, identity=identity, namespace="clever", object_name=f"{name}-{job_id}")


@pytest.fixture
def store(redis_client: redis_asyncio.Redis, redis_prefix: str) -> JobStore:
    return JobStore(redis_client, prefix=redis_prefix)


async def test_name_claim_is_unique_and_released_only_by_its_holder(store: JobStore) -> None:
    await store.claim_name("c1", "clever", "mnist", "id1")
    await store.claim_name("c1", "clever", "mnist", "id1")  # same holder: idempotent
    with pytest.raises(Conflict):
        await store.claim_name("c1", "clever", "mnist", "id2")
    await store.release_name("c1", "clever", "mnist", "id2")  # not the holder: no effect
    assert await store.name_holder("c1", "clever", "mnist") == "id1"
    await store.release_name("c1", "clever", "mnist", "id1")
    assert await store.name_holder("c1", "clever", "mnist") is None


async def test_record_round_trip_indexes_and_remove(store: JobStore, redis_client: redis_asyncio.Redis,
                                                    redis_prefix: str) -> None:
    first, second = _record("a1"), _record("b2", name="other", owner="bob")
    status = JobStatus(phase="running", replicas=(ReplicaStatus(id="p0", type="worker", index=0, status="Running"),))
    await store.put(first, status=status, observed_at=10.0)
    await store.put(second)
    assert await store.get("c1", "a1") == first
    assert [r.identity.id for r in await store.list("c1", "clever")] == ["a1", "b2"]
    assert [r.identity.id for r in await store.list("c1", "clever", owner="bob")] == ["b2"]
    observed = await store.get_status("c1", "a1")
    assert observed is not None and observed.status == status and observed.observed_at == 10.0
    assert await store.job_ids("c1") == {"a1", "b2"}
    await store.remove(first)
    await store.remove(second)
    assert await store.get("c1", "a1") is None
    assert await store.list("c1", "clever") == []
    # Only the tombstones remain: a late watch event must not rebuild a deleted job.
    assert await prefix_keys(redis_client, redis_prefix) == {f"{redis_prefix}gone:c1:a1", f"{redis_prefix}gone:c1:b2"}
    assert not await store.put_if_absent(first, status=status, observed_at=1.0)


async def test_put_if_absent_does_not_overwrite(store: JobStore) -> None:
    record = _record("a1")
    assert await store.put_if_absent(record, status=JobStatus(phase="pending"), observed_at=1.0)
    assert not await store.put_if_absent(record.with_pending("create"), status=JobStatus(phase="pending"),
                                         observed_at=1.0)
    assert (await store.get("c1", "a1")) == record
    # A name held by another job is not stolen by a rebuild.
    assert not await store.put_if_absent(_record("zz9"), status=JobStatus(phase="pending"), observed_at=1.0)


async def test_lease_exclusive_renewal_and_release(store: JobStore) -> None:
    assert await store.acquire_lease("watch:c1", "r1", ttl_ms=5000)
    assert not await store.acquire_lease("watch:c1", "r2", ttl_ms=5000)
    assert await store.renew_lease("watch:c1", "r1", ttl_ms=5000)
    assert not await store.renew_lease("watch:c1", "r2", ttl_ms=5000)
    await store.release_lease("watch:c1", "r1")
    assert await store.acquire_lease("watch:c1", "r2", ttl_ms=5000)


async def test_outbox_read_ack_and_takeover(store: JobStore) -> None:
    await store.ensure_outbox()
    await store.ensure_outbox()  # idempotent
    await store.outbox_add({"op": "create", "cluster": "c1", "id": "a1"})
    entries = await store.outbox_read("r1", block_ms=10)
    assert [e[1]["id"] for e in entries] == ["a1"]
    assert await store.outbox_read("r1", pending=True) == entries  # unacknowledged stays pending
    taken = await store.outbox_claim_stale("r2", min_idle_ms=0)
    assert [e[0] for e in taken] == [entries[0][0]]
    await store.outbox_ack(entries[0][0])
    assert await store.outbox_depth() == 0


async def test_redis_down_is_store_unavailable() -> None:
    dead = redis_asyncio.Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True, socket_connect_timeout=0.2)
    store = JobStore(dead, prefix="test:dead:")
    with pytest.raises(StoreUnavailable) as caught:
        await store.get("c1", "a1")
    assert caught.value.__cause__ is not None
    await store.close()


async def test_an_api_read_never_puts_an_older_state_over_the_watchs(store: JobStore) -> None:
    await store.set_status("c1", "j1", JobStatus(phase="failed", reason="Error"), observed_at=100.0)
    # A read from the cluster that started before the watch's write must not win...
    assert not await store.set_status_if_older("c1", "j1", JobStatus(phase="running"), read_at=50.0)
    kept = await store.get_status("c1", "j1")
    assert kept is not None and (kept.status.phase, kept.observed_at) == ("failed", 100.0)
    # ...one that started after it does (and so does one for a job with no status yet).
    assert await store.set_status_if_older("c1", "j1", JobStatus(phase="succeeded"), read_at=150.0)
    assert await store.set_status_if_older("c1", "j2", JobStatus(phase="pending"), read_at=1.0)
    newer = await store.get_status("c1", "j1")
    assert newer is not None and (newer.status.phase, newer.observed_at) == ("succeeded", 150.0)


async def test_last_failures_round_trip_and_are_forgotten(store: JobStore) -> None:
    failure = PodProblem(5, "Error", "j-worker-0: container tensorflow exited with code 3 (Error)")
    await store.set_last_failure("c1", "j1", failure)
    assert await store.last_failure("c1", "j1") == failure
    assert await store.last_failures("c1") == {"j1": failure}
    await store.forget_last_failures("c1", ["j1", "never-saved"])
    assert await store.last_failure("c1", "j1") is None and await store.last_failures("c1") == {}
