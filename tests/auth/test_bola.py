"""Broken object-level authorization, through the whole gateway: real tokens from the local issuer, real
HTTP, Redis and KubeSim.

User B against every route for user A's job (404 for get/patch/delete, excluded from lists, on every path
alias); admins against everything; partition readers; and the shape of 401/403/503 answers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.auth.issuer import LocalIssuer
from tests.conftest import CLUSTER, PARTITION, Gateway
from tests.service.seed_bodies import minimal

ADMIN_GROUP = "clever-admins"
ALIASES = [("v1alpha1", "tfjobs"), ("v1alpha2", "tfjobs"), ("v1alpha1", "tfjob"), ("v1alpha2", "tfjob")]
NO_SUCH_JOB = "0123456789abcdef0123456789abcdef"


def auth_overrides(issuer: LocalIssuer, **extra: Any) -> dict[str, Any]:
    return {"auth": {"mode": "oidc", "oidc": {"issuer": issuer.issuer, "audience": issuer.audience},
                     "adminGroups": [ADMIN_GROUP], **extra}}


class Users:
    """Bearer headers for the cast."""

    def __init__(self, issuer: LocalIssuer) -> None:
        self.alice = {"Authorization": f"Bearer {issuer.mint(user='alice', groups=['team-x'])}"}
        self.bob = {"Authorization": f"Bearer {issuer.mint(user='bob', groups=['team-y'])}"}
        self.carol = {"Authorization": f"Bearer {issuer.mint(user='carol', groups=['team-x'])}"}
        self.root = {"Authorization": f"Bearer {issuer.mint(user='root', groups=[ADMIN_GROUP])}"}


@pytest.fixture
async def oidc_gateway(make_gateway: Callable[..., Awaitable[Gateway]], issuer: LocalIssuer) -> Gateway:
    return await make_gateway(**auth_overrides(
        issuer, partitionRead=[{"cluster": CLUSTER, "partition": "default", "groups": ["team-x"]}]))


def item_url(gw: Gateway, job_id: str, *, partition: str = PARTITION, version: str = "v1alpha1",
             kind: str = "tfjobs") -> str:
    return f"{gw.jobs_url(partition, version=version, kind=kind)}/{job_id}"


async def create(gw: Gateway, headers: dict[str, str], name: str, *, partition: str = PARTITION) -> dict[str, Any]:
    response = await gw.client.post(gw.jobs_url(partition), json=minimal(name), headers=headers)
    assert response.status == 200, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def list_ids(gw: Gateway, headers: dict[str, str], *, partition: str = PARTITION,
                   query: str = "") -> set[str]:
    response = await gw.client.get(gw.jobs_url(partition) + query, headers=headers)
    assert response.status == 200, await response.text()
    return {item["metadata"]["id"] for item in (await response.json())["items"]}


def without_ids(body: dict[str, Any], job_id: str) -> dict[str, Any]:
    """An error body with the job id and request id blanked, to compare two answers."""
    details = {k: v for k, v in body["details"].items() if k not in ("requestId", "id")}
    return {**body, "message": body["message"].replace(job_id, "<id>"), "details": details}


async def test_other_user_cannot_see_or_touch_a_job(oidc_gateway: Gateway, issuer: LocalIssuer) -> None:
    gw, users = oidc_gateway, Users(issuer)
    job = await create(gw, users.alice, "alice-job")
    job_id = job["metadata"]["id"]
    assert job["metadata"]["uid"] == "alice"

    for version, kind in ALIASES:
        url = item_url(gw, job_id, version=version, kind=kind)
        missing_url = item_url(gw, NO_SUCH_JOB, version=version, kind=kind)
        for method, body in (("GET", None), ("PATCH", {"description": "pwned"}), ("DELETE", None)):
            answer = await gw.client.request(method, url, json=body, headers=users.bob)
            assert answer.status == 404, (method, url, await answer.text())
            missing = await gw.client.request(method, missing_url, json=body, headers=users.bob)
            assert missing.status == 404
            # Indistinguishable from a job that does not exist.
            assert without_ids(await answer.json(), job_id) == without_ids(await missing.json(), NO_SUCH_JOB)

    assert job_id not in await list_ids(gw, users.bob)
    for query in ("?user=alice", "?user=*"):
        refused = await gw.client.get(gw.jobs_url() + query, headers=users.bob)
        assert refused.status == 403

    # X-User cannot be used to borrow alice's identity with bob's token.
    for method in ("GET", "PATCH", "DELETE"):
        answer = await gw.client.request(method, item_url(gw, job_id), json={"description": "x"},
                                         headers={**users.bob, "X-User": "alice"})
        assert answer.status == 403

    # Still intact for its owner.
    mine = await gw.client.get(item_url(gw, job_id), headers=users.alice)
    assert mine.status == 200
    assert (await mine.json())["spec"]["description"] != "pwned"
    assert job_id in await list_ids(gw, users.alice)


async def test_admin_sees_and_manages_every_job(oidc_gateway: Gateway, issuer: LocalIssuer) -> None:
    gw, users = oidc_gateway, Users(issuer)
    alice_job = (await create(gw, users.alice, "a-job"))["metadata"]["id"]
    bob_job = (await create(gw, users.bob, "b-job"))["metadata"]["id"]

    assert {alice_job, bob_job} <= await list_ids(gw, users.root)
    assert await list_ids(gw, users.root, query="?user=bob") == {bob_job}
    assert (await gw.client.get(item_url(gw, alice_job), headers=users.root)).status == 200
    patched = await gw.client.patch(item_url(gw, alice_job), json={"description": "by admin"}, headers=users.root)
    assert patched.status == 200, await patched.text()
    assert (await patched.json())["spec"]["description"] == "by admin"

    # Acting on behalf of bob: the job is bob's, and bob's view is the default list.
    on_behalf = {**users.root, "X-User": "bob"}
    created = await create(gw, on_behalf, "for-bob")
    assert created["metadata"]["uid"] == "bob"
    assert created["metadata"]["id"] in await list_ids(gw, users.bob)
    assert alice_job not in await list_ids(gw, on_behalf)

    deleted = await gw.client.delete(item_url(gw, bob_job), headers=users.root)
    assert deleted.status == 200, await deleted.text()


async def test_partition_readers_read_but_do_not_write(oidc_gateway: Gateway, issuer: LocalIssuer) -> None:
    gw, users = oidc_gateway, Users(issuer)
    shared_job = (await create(gw, users.alice, "shared", partition="default"))["metadata"]["id"]
    private_job = (await create(gw, users.alice, "private"))["metadata"]["id"]

    # carol is in team-x, which may read partition "default" of c1.
    assert (await gw.client.get(item_url(gw, shared_job, partition="default"), headers=users.carol)).status == 200
    assert shared_job in await list_ids(gw, users.carol, partition="default", query="?user=alice")
    assert shared_job in await list_ids(gw, users.carol, partition="default", query="?user=*")
    assert shared_job not in await list_ids(gw, users.carol, partition="default")  # default: her own jobs
    for method, body in (("PATCH", {"description": "x"}), ("DELETE", None)):
        answer = await gw.client.request(method, item_url(gw, shared_job, partition="default"), json=body,
                                         headers=users.carol)
        assert answer.status == 403
    # Not in the other partition, and bob (team-y) not at all.
    assert (await gw.client.get(item_url(gw, private_job), headers=users.carol)).status == 404
    assert (await gw.client.get(item_url(gw, shared_job, partition="default"), headers=users.bob)).status == 404
    # A job id looked up under another partition is not found either.
    assert (await gw.client.get(item_url(gw, shared_job), headers=users.alice)).status == 404


async def test_401_and_403_answers(oidc_gateway: Gateway, issuer: LocalIssuer) -> None:
    gw, users = oidc_gateway, Users(issuer)
    now = int(time.time())
    bad_tokens = {
        "none": {},
        "garbage": {"Authorization": "Bearer nonsense"},
        "expired": {"Authorization": f"Bearer {issuer.mint(exp=now - 600, iat=now - 900, nbf=now - 900)}"},
        "audience": {"Authorization": f"Bearer {issuer.mint(aud='another-api')}"},
        "unsigned": {"Authorization": f"Bearer {issuer.mint_unsigned(user='root', groups=[ADMIN_GROUP])}"},
        "x-user only": {"X-User": "alice"},
    }
    bodies = []
    for headers in bad_tokens.values():
        answer = await gw.client.get(gw.jobs_url(), headers=headers)
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        body = await answer.json()
        assert set(body) == {"code", "reason", "message", "details"}
        assert body["code"] == 401 and body["reason"] == "Unauthorized" and body["details"]["requestId"]
        bodies.append({k: v for k, v in body.items() if k != "details"})
    assert all(b == bodies[0] for b in bodies)  # no hint of which check failed

    forbidden = await gw.client.get(gw.jobs_url(), headers={**users.alice, "X-User": "bob"})
    assert forbidden.status == 403
    body = await forbidden.json()
    assert body["code"] == 403 and body["reason"] == "Forbidden" and body["details"]["requestId"]

    # A token too big to parse (the HTTP server's own header limit is above the auth limit) is a legacy 401 too.
    oversized = await gw.client.get(gw.jobs_url(), headers={"Authorization": "Bearer " + "a" * 20_000})
    assert oversized.status == 401 and oversized.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert {k: v for k, v in (await oversized.json()).items() if k != "details"} == bodies[0]
    # A big but valid token (many groups) fits through the HTTP server.
    many_groups = issuer.mint(user="alice", groups=["team-x"] + [f"group-{i:04d}" for i in range(700)])
    assert len(many_groups) > 8190
    assert (await gw.client.get(gw.jobs_url(), headers={"Authorization": f"Bearer {many_groups}"})).status == 200

    # Unauthenticated paths stay open: probes and version.
    assert (await gw.client.get("/healthz")).status == 200
    assert (await gw.client.get("/api/version")).status == 200


async def test_static_partition_access_through_the_gateway(issuer: LocalIssuer,
                                                           make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    gw = await make_gateway(**auth_overrides(issuer, partitionAccess={
        "mode": "static", "groups": {"team-x": [PARTITION]}}))
    users = Users(issuer)
    assert (await gw.client.post(gw.jobs_url(), json=minimal("ok"), headers=users.alice)).status == 200
    denied = await gw.client.post(gw.jobs_url(), json=minimal("no"), headers=users.bob)
    assert denied.status == 403
    assert (await gw.client.get(gw.jobs_url(), headers=users.bob)).status == 403
    assert (await gw.client.post(gw.jobs_url("default"), json=minimal("no"), headers=users.alice)).status == 403
    assert (await gw.client.post(gw.jobs_url("default"), json=minimal("adm"), headers=users.root)).status == 200


async def test_sar_and_impersonation_through_the_gateway(issuer: LocalIssuer,
                                                         make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    gw = await make_gateway(**auth_overrides(issuer, clusters={CLUSTER: {"mode": "sar", "impersonate": True}}))
    users = Users(issuer)
    sim = gw.sim
    sim.policy.allow("group:team-x", "*", "tfjobs", PARTITION, api_group="kubeflow.org")

    created = await gw.client.post(gw.jobs_url(), json=minimal("imp"), headers=users.alice)
    assert created.status == 200, await created.text()
    creates = [i for i in sim.impersonations if i["method"] == "POST" and "tfjobs" in i["path"]]
    assert creates and creates[-1]["user"] == "alice" and creates[-1]["groups"] == ["team-x"]

    denied = await gw.client.post(gw.jobs_url(), json=minimal("no"), headers=users.bob)
    assert denied.status == 403  # the SubjectAccessReview said no; nothing reached the cluster as bob
    assert not [i for i in sim.impersonations if i["user"] == "bob"]


async def test_issuer_down_at_cold_start_is_503_not_401(issuer: LocalIssuer,
                                                        make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    token = {"Authorization": f"Bearer {issuer.mint()}"}
    await issuer.stop()
    gw = await make_gateway(**auth_overrides(issuer))
    answer = await gw.client.get(gw.jobs_url(), headers=token)
    assert answer.status == 503
    body = await answer.json()
    assert body["code"] == 503 and body["reason"] == "ServiceUnavailable"


async def test_ping_shows_the_no_auth_warning(issuer: LocalIssuer,
                                              make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    demo = await make_gateway(auth={"mode": "none", "adminUsers": ["ops"]})  # the fixture's default mode: none
    report = await (await demo.client.get("/api/ping", headers={"X-User": "ops"})).json()  # admins see the detail
    assert "auth.mode: none" in report["warning"]


async def test_ping_detail_is_for_authenticated_admins(oidc_gateway: Gateway, issuer: LocalIssuer) -> None:
    gw, users = oidc_gateway, Users(issuer)
    for headers in ({}, users.alice, {"X-User": "root"}):  # anonymous, a plain user, an unverified X-User
        answer = await gw.client.get("/api/ping", headers=headers)
        assert answer.status == 200 and await answer.json() == {"status": "ok"}
    detail = await (await gw.client.get("/api/ping", headers=users.root)).json()
    assert set(detail["clusters"]) == {CLUSTER} and detail["authMode"] == "oidc" and "warning" not in detail
    forged = await gw.client.get("/api/ping", headers={"Authorization": "Bearer not-a-token"})
    assert forged.status == 401  # an admin whose token fails learns why
