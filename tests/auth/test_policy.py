"""Object-level and partition-level authorization, and impersonation headers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from gateway.auth import Principal
from gateway.auth.policy import (
    PartitionAccess,
    can_access_job,
    impersonates,
    impersonation_headers,
    list_owner_filter,
)
from gateway.auth.settings import AuthSettings
from gateway.errors import Forbidden
from tests.auth.conftest import FakeClock

ALICE = Principal(user="alice", groups=frozenset({"team-a"}))
BOB = Principal(user="bob", groups=frozenset({"team-b"}))
CAROL_TEAM_A = Principal(user="carol", groups=frozenset({"team-a"}))
ADMIN = Principal(user="root", groups=frozenset({"clever-admins"}), is_admin=True)
ADMIN_AS_BOB = Principal(user="bob", is_admin=True, actor="root")

SETTINGS = AuthSettings.model_validate({
    "mode": "none",
    "partitionRead": [
        {"cluster": "c1", "partition": "team-a", "groups": ["team-a"]},
        {"cluster": "*", "partition": "shared", "shared": True},
    ],
})


# --- can_access_job -------------------------------------------------------------------------------

@pytest.mark.parametrize(("principal", "write", "expected"), [
    (ALICE, False, True), (ALICE, True, True),              # owner
    (ADMIN, False, True), (ADMIN, True, True),              # admin
    (ADMIN_AS_BOB, True, True),                             # admin acting on behalf of someone
    (BOB, False, False), (BOB, True, False),                # another user
])
def test_owner_admin_other_matrix(principal: Principal, write: bool, expected: bool) -> None:
    assert can_access_job(principal, owner="alice", cluster="c2", partition="p", write=write,
                          settings=SETTINGS) is expected


def test_partition_read_lets_members_read_but_never_write() -> None:
    assert can_access_job(CAROL_TEAM_A, owner="alice", cluster="c1", partition="team-a", write=False,
                          settings=SETTINGS)
    assert not can_access_job(CAROL_TEAM_A, owner="alice", cluster="c1", partition="team-a", write=True,
                              settings=SETTINGS)
    # Same partition name on another cluster, or another partition: no sharing.
    assert not can_access_job(CAROL_TEAM_A, owner="alice", cluster="c2", partition="team-a", write=False,
                              settings=SETTINGS)
    assert not can_access_job(CAROL_TEAM_A, owner="alice", cluster="c1", partition="team-b", write=False,
                              settings=SETTINGS)
    # Non-members of team-a cannot read it.
    assert not can_access_job(BOB, owner="alice", cluster="c1", partition="team-a", write=False,
                              settings=SETTINGS)


def test_shared_partition_lets_everyone_read() -> None:
    for cluster in ("c1", "c9"):
        assert can_access_job(BOB, owner="alice", cluster=cluster, partition="shared", write=False,
                              settings=SETTINGS)
        assert not can_access_job(BOB, owner="alice", cluster=cluster, partition="shared", write=True,
                                  settings=SETTINGS)


# --- list_owner_filter ----------------------------------------------------------------------------

def test_list_filter_plain_user() -> None:
    def filt(requested: str | None, partition: str = "p") -> str | None:
        return list_owner_filter(ALICE, cluster="c2", partition=partition, requested_user=requested,
                                 settings=SETTINGS)

    assert filt(None) == "alice"
    assert filt("") == "alice"
    assert filt("alice") == "alice"
    for requested in ("bob", "*"):
        with pytest.raises(Forbidden):
            filt(requested)


def test_list_filter_admin() -> None:
    def filt(principal: Principal, requested: str | None) -> str | None:
        return list_owner_filter(principal, cluster="c1", partition="p", requested_user=requested,
                                 settings=SETTINGS)

    assert filt(ADMIN, None) is None
    assert filt(ADMIN, "*") is None
    assert filt(ADMIN, "bob") == "bob"
    assert filt(ADMIN_AS_BOB, None) == "bob"  # acting as bob: bob's view by default
    assert filt(ADMIN_AS_BOB, "*") is None


def test_list_filter_partition_reader() -> None:
    def filt(principal: Principal, requested: str | None, *, cluster: str = "c1",
             partition: str = "team-a") -> str | None:
        return list_owner_filter(principal, cluster=cluster, partition=partition, requested_user=requested,
                                 settings=SETTINGS)

    assert filt(CAROL_TEAM_A, None) == "carol"
    assert filt(CAROL_TEAM_A, "alice") == "alice"
    assert filt(CAROL_TEAM_A, "*") is None
    assert filt(BOB, "*", cluster="c3", partition="shared") is None
    with pytest.raises(Forbidden):
        filt(BOB, "alice")


# --- PartitionAccess: open and static -------------------------------------------------------------

async def test_open_mode_allows_everyone() -> None:
    access = PartitionAccess(AuthSettings(mode="none"))
    await access.check(BOB, cluster="c1", partition="anything", verb="create")


async def test_static_group_map() -> None:
    settings = AuthSettings.model_validate({
        "mode": "none",
        "partitionAccess": {"mode": "static", "groups": {"team-a": ["team-a", "shared"], "platform": ["*"]}},
        "clusters": {"c-open": {"mode": "open"}},
    })
    access = PartitionAccess(settings)
    await access.check(ALICE, cluster="c1", partition="team-a", verb="create")
    await access.check(ALICE, cluster="c1", partition="shared", verb="get")
    with pytest.raises(Forbidden):
        await access.check(ALICE, cluster="c1", partition="team-b", verb="create")
    with pytest.raises(Forbidden):
        await access.check(BOB, cluster="c1", partition="team-a", verb="create")
    await access.check(Principal(user="ops", groups=frozenset({"platform"})), cluster="c1", partition="x", verb="create")
    await access.check(ADMIN, cluster="c1", partition="team-b", verb="delete")  # admins everywhere
    await access.check(BOB, cluster="c-open", partition="team-a", verb="create")  # per-cluster override


# --- PartitionAccess: SubjectAccessReview ---------------------------------------------------------

class CountingReviewer:
    """Allows (user, namespace) pairs it was told about; records every review it is asked."""

    def __init__(self, allowed: set[tuple[str, str]]) -> None:
        self.allowed = allowed
        self.calls: list[dict[str, Any]] = []

    async def review(self, *, user: str, groups: Sequence[str], namespace: str, verb: str, group: str,
                     resource: str) -> bool:
        self.calls.append({"user": user, "groups": list(groups), "namespace": namespace, "verb": verb,
                           "group": group, "resource": resource})
        return (user, namespace) in self.allowed


SAR_SETTINGS = AuthSettings.model_validate({"mode": "none", "clusters": {"c1": {"mode": "sar", "cacheSeconds": 30}}})


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[Redis, str]]:
    client = Redis.from_url("redis://127.0.0.1:6379/0")
    prefix = f"test:{uuid4().hex}:"
    yield client, prefix
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.mark.redis
async def test_sar_allow_deny_and_redis_cache(redis_prefix: tuple[Redis, str]) -> None:
    redis, prefix = redis_prefix
    reviewer = CountingReviewer({("alice", "team-a")})
    access = PartitionAccess(SAR_SETTINGS, reviewers={"c1": reviewer}, redis=redis, key_prefix=prefix)

    for _ in range(3):
        await access.check(ALICE, cluster="c1", partition="team-a", verb="create")
    assert reviewer.calls == [{"user": "alice", "groups": ["team-a"], "namespace": "team-a", "verb": "create",
                               "group": "kubeflow.org", "resource": "tfjobs"}]
    for _ in range(3):
        with pytest.raises(Forbidden):
            await access.check(BOB, cluster="c1", partition="team-a", verb="create")
    assert len(reviewer.calls) == 2  # the denial is cached too

    # A different verb, namespace or resource is a different question.
    await access.check(ALICE, cluster="c1", partition="team-a", verb="create", namespace="team-a",
                       group="batch.volcano.sh", resource="jobs")
    with pytest.raises(Forbidden):
        await access.check(ALICE, cluster="c1", partition="ns-mapped", verb="delete", namespace="clever-team-a")
    assert len(reviewer.calls) == 4

    keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
    assert len(keys) == 4
    assert all(b"alice" not in key and b"bob" not in key for key in keys)  # names are hashed
    ttls = [await redis.pttl(key) for key in keys]
    assert all(0 < ttl <= 30_000 for ttl in ttls)

    # A second gateway replica shares the cache.
    other_reviewer = CountingReviewer(set())
    replica = PartitionAccess(SAR_SETTINGS, reviewers={"c1": other_reviewer}, redis=redis, key_prefix=prefix)
    await replica.check(ALICE, cluster="c1", partition="team-a", verb="create")
    assert other_reviewer.calls == []


async def test_sar_local_cache_expires() -> None:
    monotonic = FakeClock(100.0)
    reviewer = CountingReviewer({("alice", "team-a")})
    access = PartitionAccess(SAR_SETTINGS, reviewers={"c1": reviewer}, monotonic=monotonic)
    await access.check(ALICE, cluster="c1", partition="team-a", verb="create")
    await access.check(ALICE, cluster="c1", partition="team-a", verb="create")
    assert len(reviewer.calls) == 1
    monotonic.advance(31)
    reviewer.allowed.clear()  # revoked on the cluster: noticed once the cache entry expires
    with pytest.raises(Forbidden):
        await access.check(ALICE, cluster="c1", partition="team-a", verb="create")
    assert len(reviewer.calls) == 2


async def test_sar_without_cache_asks_every_time() -> None:
    settings = AuthSettings.model_validate({"mode": "none", "partitionAccess": {"mode": "sar", "cacheSeconds": 0}})
    reviewer = CountingReviewer({("alice", "team-a")})
    access = PartitionAccess(settings, reviewers={"c7": reviewer})
    for _ in range(3):
        await access.check(ALICE, cluster="c7", partition="team-a", verb="get")
    assert len(reviewer.calls) == 3


async def test_sar_redis_down_falls_back_to_asking() -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    reviewer = CountingReviewer({("alice", "team-a")})
    access = PartitionAccess(SAR_SETTINGS, reviewers={"c1": reviewer}, redis=redis, key_prefix="x:")
    await access.check(ALICE, cluster="c1", partition="team-a", verb="create")
    await access.check(ALICE, cluster="c1", partition="team-a", verb="create")
    assert len(reviewer.calls) == 2
    await redis.aclose()


async def test_sar_cluster_without_reviewer_fails_closed() -> None:
    access = PartitionAccess(SAR_SETTINGS, reviewers={})
    with pytest.raises(Forbidden):
        await access.check(ALICE, cluster="c1", partition="team-a", verb="create")


async def test_admins_skip_the_review() -> None:
    reviewer = CountingReviewer(set())
    access = PartitionAccess(SAR_SETTINGS, reviewers={"c1": reviewer})
    await access.check(ADMIN, cluster="c1", partition="team-a", verb="create")
    assert reviewer.calls == []


# --- impersonation --------------------------------------------------------------------------------

def test_impersonation_headers() -> None:
    headers = impersonation_headers(Principal(user="alice", groups=frozenset({"team-b", "team-a"})))
    assert list(headers.items()) == [("Impersonate-User", "alice"), ("Impersonate-Group", "team-a"),
                                     ("Impersonate-Group", "team-b")]
    assert headers.getall("impersonate-group") == ["team-a", "team-b"]
    assert list(impersonation_headers(ADMIN_AS_BOB).items()) == [("Impersonate-User", "bob")]


def test_impersonation_never_forwards_reserved_names() -> None:
    sneaky = Principal(user="mallory", groups=frozenset({"system:masters", "team-a"}))
    assert impersonation_headers(sneaky).getall("Impersonate-Group") == ["team-a"]
    for user in ("system:admin", "system:serviceaccount:kube-system:default"):
        with pytest.raises(Forbidden):
            impersonation_headers(Principal(user=user))


def test_impersonation_is_per_cluster() -> None:
    settings = AuthSettings.model_validate({"mode": "none", "clusters": {"c2": {"impersonate": True}}})
    assert impersonates(settings, cluster="c2")
    assert not impersonates(settings, cluster="c1")
