"""The gateway's Redis state against real Redis servers: the read model (answer bytes, joined lists, status
publishing), claims, records and indexes, leases, outbox, counters, a busy pool that waits, failures → 503.
The operations run in every Redis mode (standalone, Sentinel, Cluster: `tests.conftest.IN_EVERY_MODE`)."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest

from gateway.config import RedisSettings
from gateway.errors import Conflict, StoreUnavailable
from gateway.state import JobRecord, Keys, State, StatusUpdate, connect, topology_for
from gateway.state.jobs import PartitionLost, Rebuild
from tests.conftest import IN_EVERY_MODE, REDIS_URL, RedisMode, prefix_keys
from translators.clever import render_job
from translators.spec import JobIdentity, JobSpec, JobStatus, Replica, ReplicaStatus, Resources, RunPolicy
from translators.status import PodProblem


def _record(job_id: str = "abc123", *, name: str = "mnist", owner: str = "alice") -> JobRecord:
    spec = JobSpec(name=name, runtime="Python_2.7+Tensorflow_1.2.1", bootfile="/clever/a.py",
                   replicas=(Replica(type="worker", count=2, resources=Resources(cpu="1", memory="1Gi", gpu=0)),),
                   args=("--x=1", "a,b", "é\n"), environment=(("A", "1"), ("B", "x=y,z")),
                   run_policy=RunPolicy(backoff_limit=3, clean_pod_policy="Running"))
    identity = JobIdentity(id=job_id, owner=owner, cluster="c1", partition="clever",
                           created="2026-01-01T00:00:00.000000Z", updated="2026-01-01T00:00:00.000000Z")
    return JobRecord(spec=spec, identity=identity, namespace="clever", object_name=f"{name}-{job_id}")


@pytest.fixture
async def state(redis_prefix: str, redis_mode: RedisMode) -> State:
    """A State on the mode's Redis under the test's prefix (keys deleted by `redis_mode`'s teardown)."""
    settings = RedisSettings.model_validate({**redis_mode.settings, "keyPrefix": redis_prefix})
    made = State(connect(settings), Keys(redis_prefix), topology=topology_for(settings))
    yield made  # type: ignore[misc]
    await made.close()


RUNNING = JobStatus(phase="running", replicas=(ReplicaStatus(id="p0", type="worker", index=0, status="Running"),))


@IN_EVERY_MODE
async def test_name_claim_is_unique_and_released_only_by_its_holder(state: State) -> None:
    jobs = state.jobs
    await jobs.claim_name("c1", "clever", "mnist", "id1")
    await jobs.claim_name("c1", "clever", "mnist", "id1")  # same holder: idempotent
    with pytest.raises(Conflict):
        await jobs.claim_name("c1", "clever", "mnist", "id2")
    await jobs.release_name("c1", "clever", "mnist", "id2")  # not the holder: no effect
    assert await jobs.name_holder("c1", "clever", "mnist") == "id1"
    await jobs.release_name("c1", "clever", "mnist", "id1")
    assert await jobs.name_holder("c1", "clever", "mnist") is None


@IN_EVERY_MODE
async def test_the_read_model_serves_the_rendered_answer(state: State) -> None:
    jobs = state.jobs
    first, second = _record("a1"), _record("b2", name="other", owner="bob")
    await jobs.put(first, status=RUNNING, observed_at=10.0)
    await jobs.put(second, status=JobStatus(phase="pending"), observed_at=11.0)
    await state.watch.set_heartbeat("c1", 12.5)
    assert await state.watch.heartbeat("c1") == 12.5
    stored = await jobs.read("c1", "clever", "a1")
    assert stored is not None
    assert (stored.owner, stored.pending, stored.observed_at) == ("alice", None, 10.0)
    # Byte for byte what the renderer makes of the record (the answer is parsed only here, by the test).
    assert json.loads(stored.body) == render_job(first.spec, first.identity, RUNNING)
    assert await jobs.get("c1", "clever", "a1") == first  # the record decodes back exactly
    ids = await jobs.list_ids("c1", "clever", owner=None)
    assert ids == ["a1", "b2"]
    assert await jobs.list_ids("c1", "clever", owner="bob") == ["b2"]
    count, joined = await jobs.joined("c1", "clever", ids + ["gone-meanwhile"])
    assert count == 2
    items = orjson.loads(b"[" + joined + b"]")
    assert [i["metadata"]["id"] for i in items] == ["a1", "b2"] and items[1]["status"]["phase"] == "pending"


@IN_EVERY_MODE
async def test_remove_leaves_only_a_tombstone_and_blocks_a_rebuild(state: State, redis_mode: RedisMode,
                                                                   redis_prefix: str) -> None:
    jobs = state.jobs
    first, second = _record("a1"), _record("b2", name="other", owner="bob")
    await jobs.put(first, status=RUNNING, observed_at=10.0)
    await jobs.put(second)
    await jobs.remove(first)
    await jobs.remove(second)
    assert await jobs.get("c1", "clever", "a1") is None
    assert await jobs.list_ids("c1", "clever", owner=None) == []
    keys = Keys(redis_prefix)
    assert await prefix_keys(redis_mode.client, redis_prefix) == {keys.gone("c1", "clever", "a1"),
                                                             keys.gone("c1", "clever", "b2"),
                                                             keys.version("c1", "clever")}
    assert not await jobs.put_if_absent(first, status=RUNNING, observed_at=1.0)


@IN_EVERY_MODE
async def test_put_if_absent_does_not_overwrite_or_steal_a_name(state: State) -> None:
    jobs = state.jobs
    record = _record("a1")
    assert await jobs.put_if_absent(record, status=JobStatus(phase="pending"), observed_at=1.0)
    assert not await jobs.put_if_absent(record.with_pending("create"), status=JobStatus(phase="pending"),
                                        observed_at=1.0)
    assert await jobs.get("c1", "clever", "a1") == record
    assert not await jobs.put_if_absent(_record("zz9"), status=JobStatus(phase="pending"), observed_at=1.0)


@IN_EVERY_MODE
async def test_publish_writes_only_existing_settled_jobs_and_never_an_older_read(state: State) -> None:
    jobs = state.jobs
    await jobs.put(_record("a1"), status=JobStatus(phase="failed", reason="Error"), observed_at=100.0)
    await jobs.put(_record("q1", name="queued").with_pending("create"), status=JobStatus(phase="queued"),
                   observed_at=100.0)

    def update(job_id: str, phase: str, at: float, only_if_newer: bool) -> StatusUpdate:
        return StatusUpdate("c1", "clever", job_id, JobStatus(phase=phase), at, only_if_newer)  # type: ignore[arg-type]

    # A read from the cluster that started before the watch's write must not win; one after it does; the
    # watch writes what it sees; a queued job keeps its queued status; a job with no record is reported.
    assert await jobs.publish([update("a1", "running", 50.0, True)]) == [0]
    assert await jobs.publish([update("a1", "succeeded", 150.0, True), update("q1", "running", 200.0, False),
                               update("nope", "running", 1.0, False)]) == [1, 0, -1]
    stored = await jobs.read("c1", "clever", "a1")
    assert stored is not None and stored.observed_at == 150.0 and b'"phase":"succeeded"' in stored.body
    queued = await jobs.read("c1", "clever", "q1")
    assert queued is not None and queued.pending == "create" and b'"phase":"queued"' in queued.body


@IN_EVERY_MODE
async def test_settle_clears_only_the_pending_operation_it_was_given(state: State) -> None:
    jobs = state.jobs
    queued = _record("a1").with_pending("create")
    await jobs.put(queued, status=JobStatus(phase="queued"), observed_at=1.0)
    assert not await jobs.settle(queued.with_pending("delete"), status=RUNNING, observed_at=2.0)
    assert await jobs.settle(queued, status=RUNNING, observed_at=2.0)
    assert (await jobs.get("c1", "clever", "a1")) == queued.with_pending(None)
    assert not await jobs.settle(queued, status=RUNNING, observed_at=3.0)  # nothing pending any more


@IN_EVERY_MODE
async def test_lease_exclusive_renewal_and_release(state: State) -> None:
    leases = state.leases
    assert await leases.acquire("watch:c1", "r1", ttl_ms=5000)
    assert not await leases.acquire("watch:c1", "r2", ttl_ms=5000)
    assert await leases.renew("watch:c1", "r1", ttl_ms=5000)
    assert not await leases.renew("watch:c1", "r2", ttl_ms=5000)
    assert await leases.holder("watch:c1") == "r1"
    await leases.release("watch:c1", "r1")
    assert await leases.acquire("watch:c1", "r2", ttl_ms=5000)


@IN_EVERY_MODE
async def test_a_lease_is_taken_back_only_by_a_later_life_of_its_holder(state: State) -> None:
    leases = state.leases
    assert await leases.acquire("watch:c1", "gw-1 old", ttl_ms=15000)  # then the process is killed
    assert not await leases.acquire("watch:c1", "gw-1 new", ttl_ms=15000)  # without takeover: it waits
    assert not await leases.acquire("watch:c1", "gw-10 x", ttl_ms=15000, takeover="gw-10 ")  # another replica
    assert await leases.acquire("watch:c1", "gw-1 new", ttl_ms=15000, takeover="gw-1 ")
    assert await leases.holder("watch:c1") == "gw-1 new"
    assert not await leases.renew("watch:c1", "gw-1 old", ttl_ms=15000)  # the earlier life, if alive, lost it


@IN_EVERY_MODE
async def test_outbox_read_ack_and_takeover(state: State) -> None:
    outbox = state.outbox
    await outbox.ensure()
    await outbox.ensure()  # idempotent
    await outbox.add({"op": "create", "cluster": "c1", "partition": "clever", "id": "a1"})
    entries = await outbox.read("r1", block_ms=10)
    assert [e[1]["id"] for e in entries] == ["a1"]
    assert await outbox.read("r1", pending=True) == entries  # unacknowledged stays pending
    taken = await outbox.claim_stale("r2", min_idle_ms=0)
    assert [e[0] for e in taken] == [entries[0][0]]
    await outbox.ack(entries[0][0])
    assert await outbox.depth() == 0


@pytest.mark.parametrize("settings", [
    {"url": "redis://127.0.0.1:1/0"},
    {"url": "redis://127.0.0.1:1/0", "mode": "cluster"},
    {"url": "redis:///0", "mode": "sentinel", "sentinels": ["127.0.0.1:1"]},
], ids=["standalone", "cluster", "sentinel"])
async def test_redis_down_is_store_unavailable(settings: dict[str, object]) -> None:
    redis_settings = RedisSettings.model_validate({**settings, "socketTimeoutSeconds": 0.2})
    state = State(connect(redis_settings), Keys("test:dead:"), topology=topology_for(redis_settings))
    with pytest.raises(StoreUnavailable) as caught:
        await state.jobs.get("c1", "clever", "a1")
    assert caught.value.__cause__ is not None
    with pytest.raises(StoreUnavailable):
        await state.jobs.put(_record("a1"))
    await state.close()


@IN_EVERY_MODE
async def test_write_counter_counts_per_user_and_minute_and_expires(state: State, redis_mode: RedisMode,
                                                                    redis_prefix: str) -> None:
    assert (await state.counters.count_write("alice"))[0] == 1
    assert (await state.counters.count_write("alice"))[0] == 2
    assert (await state.counters.count_write("b}o{b"))[0] == 1
    (key,) = [k for k in await prefix_keys(redis_mode.client, redis_prefix) if "alice" in k]
    assert 0 < await redis_mode.client.ttl(key) <= 120


@IN_EVERY_MODE
async def test_a_busy_pool_waits_instead_of_refusing(redis_prefix: str, redis_mode: RedisMode) -> None:
    # Two connections, fifty concurrent reads: each waits its turn; none fails (redis-py's default pools,
    # and its cluster client whatever the pool, would raise MaxConnectionsError on the third).
    settings = RedisSettings.model_validate({**redis_mode.settings, "maxConnections": 2, "poolWaitSeconds": 5})
    state = State(connect(settings), Keys(redis_prefix), topology=topology_for(settings))
    try:
        await state.jobs.put(_record("a1"), status=RUNNING, observed_at=1.0)
        results = await asyncio.gather(*(state.jobs.read("c1", "clever", "a1") for _ in range(50)))
        assert all(stored is not None for stored in results)
    finally:
        await state.close()


@IN_EVERY_MODE
async def test_last_failures_round_trip_and_are_forgotten(state: State) -> None:
    watch = state.watch
    failure = PodProblem(5, "Error", "j-worker-0: container tensorflow exited with code 3 (Error)")
    await watch.set_last_failure("c1", "j1", failure)
    assert await watch.last_failure("c1", "j1") == failure
    assert await watch.last_failures("c1") == {"j1": failure}
    await watch.forget_last_failures("c1", ["j1", "never-saved"])
    assert await watch.last_failure("c1", "j1") is None and await watch.last_failures("c1") == {}


def test_every_multi_key_transaction_stays_in_one_hash_slot() -> None:
    keys = Keys("cg:")
    partition = [keys.job("c1", "clever", "a1"), keys.index("c1", "clever"), keys.owner("c1", "clever", "b{o}b"),
                 keys.names("c1", "clever"), keys.gone("c1", "clever", "a1"), keys.lock("c1", "clever", "a1"),
                 keys.complete("c1", "clever"), keys.version("c1", "clever")]
    assert {k.split("{", 1)[1].split("}", 1)[0] for k in partition} == {"c1/clever"}
    watch = [keys.heartbeat("c1"), keys.resource_version("c1", "jobs"), keys.last_failures("c1")]
    assert {k.split("{", 1)[1].split("}", 1)[0] for k in watch} == {"c1"}
    with pytest.raises(ValueError):
        Keys("bad{prefix")


@IN_EVERY_MODE
async def test_completeness_marker_registry_and_a_loss_between_two_reads(state: State, redis_mode: RedisMode,
                                                                        redis_prefix: str) -> None:
    jobs, watch, keys = state.jobs, state.watch, Keys(redis_prefix)
    await jobs.put(_record("a1"), status=RUNNING, observed_at=1.0)
    await jobs.put(_record("b2", name="other"), status=RUNNING, observed_at=1.0)
    assert not (await jobs.listing("c1", "clever", owner=None)).complete
    # Never marked: "new" only once the cluster's generation is there and the registry does not name it.
    assert not await watch.partition_is_new("c1", "clever")
    await watch.set_generation("c1", "g1")
    assert await watch.partition_is_new("c1", "clever")
    await watch.register_partitions("c1", ["clever"])
    assert not await watch.partition_is_new("c1", "clever")
    # Marked only if the index holds the jobs the writer just stored.
    assert await jobs.certify("c1", {"clever": 3}, generation="g1") == set()
    assert await jobs.certify("c1", {"clever": 2}, generation="g1") == {"clever"}
    listing = await jobs.listing("c1", "clever", owner=None, scores=True)
    assert listing.complete and listing.ids == ["a1", "b2"] and len(listing.scores) == 2
    assert await jobs.uncertified("c1", ["clever", "other"]) == {"other"}
    # The data goes between reading the ids and joining the answers: the join refuses to answer short.
    await redis_mode.client.delete(keys.complete("c1", "clever"), keys.job("c1", "clever", "a1"))
    with pytest.raises(PartitionLost):
        await jobs.joined("c1", "clever", listing.ids, complete=True)
    assert (await jobs.joined("c1", "clever", listing.ids))[0] == 1


@IN_EVERY_MODE
async def test_the_list_version_changes_with_every_change_of_an_answer_and_only_then(
        state: State, redis_mode: RedisMode, redis_prefix: str) -> None:
    jobs, versions = state.jobs, []
    await jobs.put(_record("a1"), status=RUNNING, observed_at=1.0)
    assert await jobs.list_version("c1", "clever") is None  # not marked complete: nothing may be reused
    assert await jobs.certify("c1", {"clever": 1}, generation="g1") == {"clever"}

    async def changed() -> bool:
        version = await jobs.list_version("c1", "clever")
        assert version is not None
        versions.append(version)
        return len(versions) < 2 or versions[-1] != versions[-2]

    assert await changed()
    failed = JobStatus(phase="failed", reason="Error")
    assert await jobs.publish([StatusUpdate("c1", "clever", "a1", failed, 2.0)]) == [1]
    assert await changed()
    # The same status seen again moves only the observation time: the answers did not change.
    assert await jobs.publish([StatusUpdate("c1", "clever", "a1", failed, 3.0)]) == [1]
    assert not await changed()
    queued = _record("b2", name="other").with_pending("create")
    await jobs.put(queued, status=JobStatus(phase="queued"), observed_at=4.0)
    assert await changed()
    assert await jobs.settle(queued, status=RUNNING, observed_at=5.0)
    assert await changed()
    await jobs.remove(queued.with_pending(None))
    assert await changed()
    assert await jobs.rebuild([Rebuild(_record("c3", name="third"), RUNNING, 6.0)]) == ["written"]
    assert await changed()
    assert await jobs.rebuild([Rebuild(_record("c3", name="third"), RUNNING, 7.0)]) == ["exists"]
    assert not await changed()
    # History: a finished job archived (its answer gains "archived"), then swept away.
    assert await jobs.archive([("c1", "clever", "a1")]) == 1
    assert await changed()
    assert await jobs.archive([("c1", "clever", "a1")]) == 0  # already archived: nothing written
    assert not await changed()
    assert await jobs.sweep_archived("c1", "clever", cutoff=10.0 ** 12) == 1
    assert await changed()
    assert await jobs.certify("c1", {"clever": 1}, generation="g2") == {"clever"}
    assert await changed()
    # Redis loses the data: no version at all until the partition is marked complete again, and then not
    # one seen before (tokens are never reused, a counter starting over would be).
    await redis_mode.client.delete(*await prefix_keys(redis_mode.client, redis_prefix))
    assert await jobs.list_version("c1", "clever") is None
    assert await jobs.certify("c1", {"clever": 0}, generation="g2") == {"clever"}
    assert await changed() and versions[-1] not in versions[:-1]


async def test_a_crash_inside_the_redis_client_is_store_unavailable_not_a_500() -> None:
    """redis-py's cluster client can trip over its own connection state during a failover (an AttributeError
    from its code): that is the store failing (503); the same error from the gateway's code is a bug."""
    from gateway.state.base import RedisPart

    namespace: dict[str, object] = {"__name__": "redis.asyncio.somewhere"}
    exec("def send(writer):\n    writer.writelines([b'x'])\n", namespace)  # noqa: S102 - a frame "in redis-py"
    part = RedisPart(connect(RedisSettings(url=REDIS_URL)), Keys("test:crash:"))
    with pytest.raises(StoreUnavailable):
        async with part._guard("send"):
            namespace["send"](None)  # type: ignore[operator]
    with pytest.raises(AttributeError):
        async with part._guard("ours"):
            None.writelines([])  # type: ignore[attr-defined]
    await part.redis.aclose()
