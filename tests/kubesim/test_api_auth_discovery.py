"""kubesim authentication, discovery, SubjectAccessReviews, impersonation and the shipped CRD copies."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubesim.testing import KubeSim

TF = "/apis/kubeflow.org/v1/namespaces/default/tfjobs"
SAR = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic a2V5OnZhbHVl"])
async def test_requests_without_the_token_are_unauthorized(api: Any, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    async with aiohttp.ClientSession() as anonymous, \
            anonymous.get(api.sim.url + TF, headers=headers, ssl=api.ssl) as response:
        body = await response.json()
    assert response.status == 401
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


async def test_tls_is_verified_against_the_kubesim_ca(api: Any) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(api.sim.url + "/version", ssl=ssl.create_default_context())
    assert api.sim.url.startswith("https://127.0.0.1:")


async def test_plain_http_mode() -> None:
    async with KubeSim(tfjob_operator=None, volcano=False, tls=False) as plain:
        assert plain.url.startswith("http://") and plain.ca_file == ""
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {plain.token}"}) as session, \
                session.get(plain.url + "/version") as response:
            assert response.status == 200 and (await response.json())["major"] == "1"


async def test_discovery_documents(api: Any) -> None:
    assert (await api.get("/version")).body["gitVersion"].startswith("v1.")
    assert (await api.get("/api")).body["versions"] == ["v1"]
    core = (await api.get("/api/v1")).body
    core_names = {r["name"] for r in core["resources"]}
    assert {"pods", "pods/log", "pods/status", "services", "configmaps", "events", "namespaces"} <= core_names
    listed = [(g["name"], g["preferredVersion"]["version"]) for g in (await api.get("/apis")).body["groups"]]
    assert dict(listed) == {"kubeflow.org": "v1", "batch.volcano.sh": "v1alpha1", "bus.volcano.sh": "v1alpha1",
                            "scheduling.volcano.sh": "v1beta1", "authorization.k8s.io": "v1", "batch": "v1",
                            "jobset.x-k8s.io": "v1alpha2"}
    # built-in groups come first, so kubectl's `jobs` resolves to batch/v1 before Volcano's
    assert [name for name, _ in listed][:2] == ["authorization.k8s.io", "batch"]
    kubeflow = (await api.get("/apis/kubeflow.org/v1")).body
    tfjobs = next(r for r in kubeflow["resources"] if r["name"] == "tfjobs")
    assert tfjobs["kind"] == "TFJob" and tfjobs["namespaced"] is True and "watch" in tfjobs["verbs"]
    assert "shortNames" not in tfjobs
    assert {"name": "tfjobs/status", "singularName": "", "namespaced": True, "kind": "TFJob",
            "verbs": ["get", "patch", "update"]} in kubeflow["resources"]
    volcano = (await api.get("/apis/batch.volcano.sh/v1alpha1")).body
    jobs = next(r for r in volcano["resources"] if r["name"] == "jobs")
    assert jobs["shortNames"] == ["vcjob", "vj"]
    authz = (await api.get("/apis/authorization.k8s.io/v1")).body
    assert {r["name"] for r in authz["resources"]} == {"subjectaccessreviews", "selfsubjectaccessreviews"}
    assert (await api.get("/apis/kubeflow.org")).body["kind"] == "APIGroup"
    api.status(await api.get("/apis/kubeflow.org/v2"), 404, "NotFound")
    root = (await api.get("/openapi/v3")).body
    assert "apis/kubeflow.org/v1" in root["paths"]
    document = (await api.get("/openapi/v3/apis/kubeflow.org/v1")).body
    assert document["components"]["schemas"]["org.kubeflow.v1.TFJob"]["x-kubernetes-group-version-kind"]
    api.status(await api.get("/openapi/v2"), 404, "NotFound")


def sar(user: str | None = None, groups: list[str] | None = None, *, attrs: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"resourceAttributes": attrs}
    if user:
        spec["user"] = user
    if groups:
        spec["groups"] = groups
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


async def test_subject_access_review_policy(api: Any) -> None:
    policy = api.sim.policy
    policy.allow("alice", "create", "tfjobs", "team-a")
    policy.allow(group="ml-admins")
    policy.deny("mallory")
    attrs = {"verb": "create", "group": "kubeflow.org", "resource": "tfjobs", "namespace": "team-a"}
    allowed = await api.post(SAR, sar("alice", attrs=attrs))
    assert allowed.status == 201 and allowed.body["status"]["allowed"] is True
    assert allowed.body["kind"] == "SubjectAccessReview" and allowed.body["spec"]["user"] == "alice"
    other_ns = await api.post(SAR, sar("alice", attrs=attrs | {"namespace": "default"}))
    assert other_ns.body["status"] == {"allowed": False}
    by_group = await api.post(SAR, sar("bob", ["ml-admins"], attrs=attrs))
    assert by_group.body["status"]["allowed"] is True
    denied = await api.post(SAR, sar("mallory", ["ml-admins"], attrs=attrs))
    assert denied.body["status"]["allowed"] is False and denied.body["status"]["denied"] is True
    policy.clear(default_allow=True)
    assert (await api.post(SAR, sar("anyone", attrs=attrs))).body["status"]["allowed"] is True
    api.status(await api.post(SAR, sar(attrs=attrs)), 422, "Invalid")


async def test_self_subject_access_review_sees_the_impersonated_user(api: Any) -> None:
    api.sim.policy.allow("carol", "list", "tfjobs", "*")
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": "list", "group": "kubeflow.org", "resource": "tfjobs",
                                            "namespace": "default"}}}
    as_admin = await api.post(SSAR, body)
    assert as_admin.body["status"]["allowed"] is True  # the token user is system:masters
    as_carol = await api.post(SSAR, body, headers={"Impersonate-User": "carol"})
    assert as_carol.body["status"]["allowed"] is True
    as_dave = await api.post(SSAR, body, headers={"Impersonate-User": "dave"})
    assert as_dave.body["status"]["allowed"] is False
    assert [i["user"] for i in api.sim.impersonations] == ["carol", "dave"]


async def test_impersonated_requests_are_authorized_and_recorded(api: Any) -> None:
    await api.create_tfjob()
    policy = api.sim.policy
    policy.allow("group:readers", "get", "tfjobs", "default")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api.sim.token}"}) as session:
        headers = [("Impersonate-User", "erin"), ("Impersonate-Group", "readers"), ("Impersonate-Group", "x")]
        async with session.get(api.sim.url + f"{TF}/mnist", headers=headers, ssl=api.ssl) as response:
            assert response.status == 200
        async with session.delete(api.sim.url + f"{TF}/mnist", headers=headers, ssl=api.ssl) as response:
            body = await response.json()
            assert response.status == 403 and body["reason"] == "Forbidden"
            assert body["message"] == ('tfjobs.kubeflow.org "mnist" is forbidden: User "erin" cannot delete '
                                       'resource "tfjobs" in API group "kubeflow.org" in the namespace "default"')
    assert api.sim.impersonations[0] == {"user": "erin", "groups": ["readers", "x"], "method": "GET",
                                         "path": f"{TF}/mnist"}
    assert len(api.sim.impersonations) == 2
    assert (await api.get(f"{TF}/mnist")).status == 200


def test_crd_copies_match_the_shared_originals() -> None:
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "crds"
    if not shared.is_dir():
        pytest.fail(f"{shared} is missing: CI must provide ../shared/crds beside the repository")
    ours = Path(__file__).resolve().parents[2] / "kubesim" / "crds"
    originals = sorted(p.name for p in shared.glob("*.yaml"))
    assert originals and originals == sorted(p.name for p in ours.glob("*.yaml"))
    for name in originals:
        assert (ours / name).read_bytes() == (shared / name).read_bytes(), name
    assert (ours / "README").read_text().count("Apache") >= 1


async def test_write_kubeconfig(sim: Any, tmp_path: Path) -> None:
    import yaml
    path = sim.write_kubeconfig(tmp_path / "kube" / "config")
    config = yaml.safe_load(path.read_text())
    assert config["clusters"][0]["cluster"] == {"server": sim.url, "certificate-authority": sim.ca_file}
    assert config["users"][0]["user"] == {"token": sim.token}
    assert config["current-context"] == "kubesim"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
