"""Bad input never reaches the cluster and never leaves anything in Redis; never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Gateway
from tests.service.seed_bodies import minimal

USER = {"X-User": "alice"}


def _without(key: str) -> dict[str, Any]:
    body = minimal("bad")
    body.pop(key)
    return body


# (case, body, expected field path fragment)
BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("missing-name", _without("name"), "name"),
    ("missing-runtime", _without("runtime"), "runtime"),
    ("missing-bootfile", _without("bootfile"), "bootfile"),
    ("cpu-abc", minimal("bad", cpu="abc"), "cpu"),
    ("cpu-zero", minimal("bad", cpu="0"), "cpu"),
    ("memory-negative", minimal("bad", memory="-1Gi"), "memory"),
    ("negative-count", minimal("bad", count="-2"), "count"),
    ("fractional-gpu", minimal("bad", gpu="0.5"), "gpu"),
    ("unknown-replica-type", minimal("bad", type="driver"), "type"),
    ("bad-runtime", minimal("bad", runtime="Python_9+Tensorflow_99"), "runtime"),
    ("relative-bootfile", minimal("bad", bootfile="train.py"), "bootfile"),
    ("dotdot-dir", minimal("bad", logDir="/clever/../etc"), "logDir"),
    ("too-many-replicas", minimal("bad", count="100000"), "replicas"),
    ("bad-name", minimal("Not A Name!" * 10), "name"),
]


async def _assert_nothing_new(gw: Gateway, before: set[str]) -> None:
    from kubesim.store import TFJOBS

    assert await gw.keys() == before
    assert gw.sim.store.list(TFJOBS)[0] == []


@pytest.mark.parametrize(("case", "body", "path"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_bad_body_is_400_with_field_paths(gateway: Gateway, case: str, body: dict[str, Any],
                                                path: str) -> None:
    before = await gateway.keys()
    response = await gateway.client.post(gateway.jobs_url(), json=body, headers=USER)
    assert response.status == 400, await response.text()
    error = await response.json()
    assert set(error) == {"code", "reason", "message", "details"}
    assert error["code"] == 400 and error["details"]["requestId"]
    paths = [f["path"] for f in error["details"]["fields"]]
    assert any(path.lower() in p.lower() for p in paths), paths
    await _assert_nothing_new(gateway, before)


@pytest.mark.parametrize(("case", "data", "content_type", "status"), [
    ("malformed-json", b'{"name": "x",', "application/json", 400),
    ("non-object-json", b'["a", "b"]', "application/json", 400),
    ("json-string", b'"hello"', "application/json", 400),
    ("empty-body", b"", "application/json", 400),
    ("form-encoded-not-json", b"name=x", "application/x-www-form-urlencoded", 400),
    ("multipart", b"--b\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b", 415),
    ("xml", b"<job/>", "application/xml", 415),
    ("not-utf8", b'{"name": "\xff"}', "application/json", 400),
])
async def test_unreadable_bodies(gateway: Gateway, case: str, data: bytes, content_type: str, status: int) -> None:
    before = await gateway.keys()
    response = await gateway.client.post(gateway.jobs_url(), data=data, headers={**USER, "Content-Type": content_type})
    assert response.status == status, await response.text()
    assert (await response.json())["code"] == status
    await _assert_nothing_new(gateway, before)


async def test_json_body_under_curl_default_content_type_is_accepted(gateway: Gateway) -> None:
    """`curl -d '{...}'` sends form-urlencoded; legacy scripts do exactly that and must keep working."""
    body = json.dumps(minimal("curl-default")).encode()
    response = await gateway.client.post(gateway.jobs_url(), data=body,
                                         headers={**USER, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 200, await response.text()
    assert (await response.json())["metadata"]["name"] == "curl-default"


async def test_huge_body_is_413_whatever_its_content_type(make_gateway: Any) -> None:
    gw = await make_gateway(limits={"maxBodyBytes": 4096})
    before = await gw.keys()
    for content_type in ("application/x-www-form-urlencoded", "application/xml"):
        response = await gw.client.post(gw.jobs_url(), data=b"a" * 10_000,
                                        headers={**USER, "Content-Type": content_type})
        assert response.status == 413, await response.text()
    await _assert_nothing_new(gw, before)


async def test_huge_body_is_413(make_gateway: Any) -> None:
    gw = await make_gateway(limits={"maxBodyBytes": 4096})
    before = await gw.keys()
    body = minimal("big", description="x" * 10_000)
    response = await gw.client.post(gw.jobs_url(), json=body, headers=USER)
    assert response.status == 413
    error = await response.json()
    assert error["reason"] == "RequestEntityTooLarge" and error["details"]["requestId"]
    await _assert_nothing_new(gw, before)


@pytest.mark.parametrize("partition", ["Bad_Partition", "a" * 70, "-x-", "UPPER"])
async def test_invalid_partition_is_400(gateway: Gateway, partition: str) -> None:
    before = await gateway.keys()
    created = await gateway.client.post(gateway.jobs_url(partition), json=minimal("p"), headers=USER)
    assert created.status == 400
    assert any(f["path"] == "partition" for f in (await created.json())["details"]["fields"])
    listed = await gateway.client.get(gateway.jobs_url(partition), headers=USER)
    assert listed.status == 400
    await _assert_nothing_new(gateway, before)


async def test_bad_patch_changes_nothing(gateway: Gateway) -> None:
    created = await (await gateway.client.post(gateway.jobs_url(), json=minimal("keep"), headers=USER)).json()
    url = f"{gateway.jobs_url()}/{created['metadata']['id']}"
    before = await gateway.keys()
    response = await gateway.client.patch(url, json={"cpu": "abc"}, headers=USER)
    assert response.status == 400
    assert (await (await gateway.client.get(url, headers=USER)).json())["spec"] == created["spec"]
    assert await gateway.keys() == before


async def test_unknown_cluster_job_and_method(gateway: Gateway) -> None:
    unknown = await gateway.client.get(gateway.jobs_url(cluster="nope"), headers=USER)
    assert unknown.status == 404
    assert (await unknown.json())["reason"] == "NotFound"
    missing = await gateway.client.get(f"{gateway.jobs_url()}/doesnotexist", headers=USER)
    assert missing.status == 404
    wrong = await gateway.client.put(f"{gateway.jobs_url()}/x", json={}, headers=USER)
    assert wrong.status == 405
    error = await wrong.json()
    assert error["reason"] == "MethodNotAllowed" and "PATCH" in wrong.headers["Allow"]
    nowhere = await gateway.client.get("/api/v1alpha1/nothing/here", headers=USER)
    assert nowhere.status == 404 and (await nowhere.json())["code"] == 404


async def test_a_partition_without_its_namespace_is_a_clear_404(gateway: Gateway) -> None:
    before = await gateway.keys()
    response = await gateway.client.post(gateway.jobs_url("nosuchns"), json=minimal("lost"), headers=USER)
    assert response.status == 404
    error = await response.json()
    assert error["message"] == ("partition 'nosuchns' does not exist on cluster 'c1' "
                                "(the cluster has no namespace 'nosuchns')")
    assert error["details"]["clusterStatus"]["reason"] == "NotFound"
    await _assert_nothing_new(gateway, before)
