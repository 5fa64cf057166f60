"""kubesim through kubernetes_asyncio (a client that knows nothing of kubesim): create/list/patch/watch/delete of
TFJobs, errors as ApiException with a Status body, pod logs and SelfSubjectAccessReview via the kubeconfig."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from kubesim.store import PODS

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "tfjobs"


@pytest.fixture
async def k8s(sim: Any, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(sim.write_kubeconfig(tmp_path / "kubeconfig")),
                                  client_configuration=configuration)
    async with client.ApiClient(configuration) as api_client:
        yield api_client


async def test_tfjob_lifecycle_with_kubernetes_asyncio(k8s: client.ApiClient, api: Any) -> None:
    custom = client.CustomObjectsApi(k8s)
    created = await custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, api.tfjob())
    assert created["metadata"]["uid"]
    listed = await custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, label_selector="app=demo")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["mnist"]
    rv = listed["metadata"]["resourceVersion"]

    patched = await custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "mnist", {"spec": {"runPolicy": {"suspend": True}}},
        _content_type="application/merge-patch+json")  # type: ignore[call-arg]
    assert patched["spec"]["runPolicy"]["suspend"] is True

    # Without _content_type this client sends a dict as a JSON patch: the server must refuse it like a real one.
    with pytest.raises(ApiException) as caught:
        await custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "mnist",
                                                    {"spec": {"runPolicy": {"suspend": False}}})
    assert caught.value.status == 400
    assert json.loads(caught.value.body or b"{}")["message"] == (
        "json: cannot unmarshal object into Go value of type jsonpatch.Patch")

    events: list[tuple[str, str]] = []
    stream = watch.Watch()
    async with asyncio.timeout(10):
        async for event in stream.stream(custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                                         resource_version=rv, timeout_seconds=5):
            events.append((event["type"], event["object"]["metadata"]["name"]))
            if len(events) == 1:
                await custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "mnist")
            if len(events) == 2:
                stream.stop()
    assert events == [("MODIFIED", "mnist"), ("DELETED", "mnist")]

    with pytest.raises(ApiException) as missing:
        await custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "mnist")
    assert missing.value.status == 404 and json.loads(missing.value.body or b"{}")["reason"] == "NotFound"


async def test_conflict_and_invalid_through_the_client(k8s: client.ApiClient, api: Any) -> None:
    custom = client.CustomObjectsApi(k8s)
    created = await custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, api.tfjob())
    with pytest.raises(ApiException) as exists:
        await custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, api.tfjob())
    assert exists.value.status == 409 and json.loads(exists.value.body or b"{}")["reason"] == "AlreadyExists"
    stale = dict(created)
    stale["metadata"] = dict(created["metadata"], resourceVersion="1")
    with pytest.raises(ApiException) as conflict:
        await custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "mnist", stale)
    assert conflict.value.status == 409 and json.loads(conflict.value.body or b"{}")["reason"] == "Conflict"
    bad = api.tfjob("bad")
    bad["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = "lots"
    with pytest.raises(ApiException) as invalid:
        await custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, bad)
    assert invalid.value.status == 422
    assert json.loads(invalid.value.body or b"{}")["details"]["causes"][0]["field"] == "spec.tfReplicaSpecs.Worker.replicas"


async def test_core_logs_and_self_subject_access_review(k8s: client.ApiClient, sim: Any) -> None:
    sim.store.create(PODS, {"metadata": {"name": "p", "namespace": "default"},
                            "spec": {"containers": [{"name": "tensorflow", "image": "x"}]},
                            "status": {"phase": "Running"}})
    sim.store.append_log("default", "p", "tensorflow", "hello\nworld\n")
    core = client.CoreV1Api(k8s)
    assert await core.read_namespaced_pod_log("p", "default", tail_lines=1) == "world\n"
    pods = await core.list_namespaced_pod("default", field_selector="status.phase=Running")
    assert [p.metadata.name for p in pods.items] == ["p"]
    review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
        resource_attributes=client.V1ResourceAttributes(verb="create", group=GROUP, resource=PLURAL,
                                                        namespace="default")))
    answer = await client.AuthorizationV1Api(k8s).create_self_subject_access_review(review)
    assert answer.status.allowed is True
