"""The Store contract the controllers and the server share: versions, generation, status, GC, events, watch."""

from __future__ import annotations

from typing import Any

import pytest

from kubesim.errors import ApiError
from kubesim.store import EVENTS, NAMESPACES, PODS, SERVICES, TFJOBS, VCJOBS, Store


def job(name: str = "j") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"tfReplicaSpecs": {"Worker": {"replicas": 1}}}}


def owned_pod(name: str, *owners: dict[str, Any]) -> dict[str, Any]:
    refs = [{"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
             "uid": o["metadata"]["uid"]} for o in owners]
    return {"metadata": {"name": name, "namespace": "ns", "ownerReferences": refs},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}


async def test_versions_generation_and_noop_updates() -> None:
    store = Store(namespaces=["ns"])
    created = store.create(TFJOBS, job())
    assert created["apiVersion"] == "kubeflow.org/v1" and created["kind"] == "TFJob"
    rv = created["metadata"]["resourceVersion"]
    assert store.update(TFJOBS, created)["metadata"]["resourceVersion"] == rv  # nothing changed
    created["metadata"]["labels"] = {"a": "b"}
    relabelled = store.update(TFJOBS, created)
    assert relabelled["metadata"]["generation"] == 1 and int(relabelled["metadata"]["resourceVersion"]) > int(rv)
    relabelled["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = 2
    assert store.update(TFJOBS, relabelled)["metadata"]["generation"] == 2
    with pytest.raises(ApiError) as stale:
        store.update(TFJOBS, relabelled)  # carries the previous resourceVersion
    assert stale.value.code == 409 and stale.value.reason == "Conflict"
    unconditional = dict(relabelled, metadata={k: v for k, v in relabelled["metadata"].items()
                                               if k != "resourceVersion"})
    assert store.update(TFJOBS, unconditional)["metadata"]["generation"] == 2


async def test_status_is_kept_by_update_and_written_by_update_status() -> None:
    store = Store(namespaces=["ns"])
    store.create(VCJOBS, {"metadata": {"name": "v", "namespace": "ns"}, "spec": {"tasks": []}})
    with_status = store.update_status(VCJOBS, "ns", "v", {"state": {"phase": "Running"}})
    assert with_status["metadata"]["generation"] == 1
    with_status["status"] = {"state": {"phase": "Completed"}}
    with_status["spec"]["minAvailable"] = 1
    updated = store.update(VCJOBS, with_status)
    assert updated["status"] == {"state": {"phase": "Running"}} and updated["spec"]["minAvailable"] == 1
    with pytest.raises(ApiError) as missing:
        store.update_status(VCJOBS, "ns", "nope", {})
    assert missing.value.code == 404


async def test_background_gc_spares_objects_with_another_live_owner() -> None:
    store = Store(namespaces=["ns"])
    first, second = store.create(TFJOBS, job("a")), store.create(TFJOBS, job("b"))
    store.create(PODS, owned_pod("only-a", first))
    store.create(PODS, owned_pod("shared", first, second))
    store.create(SERVICES, {"metadata": {"name": "only-a", "namespace": "ns", "ownerReferences": owned_pod(
        "x", first)["metadata"]["ownerReferences"]}})
    store.delete(TFJOBS, "ns", "a")
    assert [p["metadata"]["name"] for p in store.list(PODS, "ns")[0]] == ["shared"]
    assert store.list(SERVICES, "ns")[0] == []


async def test_finalizers_hold_deletion_until_removed() -> None:
    store = Store(namespaces=["ns"])
    body = job()
    body["metadata"]["finalizers"] = ["example.com/hold"]
    store.create(TFJOBS, body)
    pending = store.delete(TFJOBS, "ns", "j")
    assert pending["metadata"]["deletionTimestamp"]
    held = store.get(TFJOBS, "ns", "j")
    held["metadata"]["finalizers"].append("example.com/new")  # cannot add finalizers while deleting
    held["metadata"]["finalizers"].remove("example.com/hold")
    store.update(TFJOBS, held)
    assert store.try_get(TFJOBS, "ns", "j") is None


async def test_namespace_create_delete_and_missing_namespace() -> None:
    store = Store()
    with pytest.raises(ApiError) as missing:
        store.create(TFJOBS, job())
    assert missing.value.message == 'namespaces "ns" not found'
    store.ensure_namespace("ns")
    store.create(TFJOBS, job())
    store.delete(NAMESPACES, None, "ns")
    assert store.list(TFJOBS)[0] == [] and not store.namespace_exists("ns")


async def test_subscribers_get_deep_copies_in_order() -> None:
    store = Store(namespaces=["ns"])
    queue = store.subscribe()
    created = store.create(TFJOBS, job())
    created["spec"]["changed"] = True
    store.delete(TFJOBS, "ns", "j")
    events = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [(e.type, e.resource) for e in events] == [("ADDED", TFJOBS), ("DELETED", TFJOBS)]
    assert "changed" not in events[0].object["spec"]
    assert events[0].resource_version < events[1].resource_version
    store.unsubscribe(queue)
    store.create(TFJOBS, job("k"))
    assert queue.empty()


async def test_record_event_and_logs() -> None:
    store = Store(namespaces=["ns"])
    owner = store.create(TFJOBS, job())
    event = store.record_event(owner, reason="SuccessfulCreatePod", message="Created pod: j-worker-0",
                               type="Normal")
    assert event["involvedObject"] == {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "name": "j",
                                       "namespace": "ns", "uid": owner["metadata"]["uid"],
                                       "resourceVersion": owner["metadata"]["resourceVersion"]}
    assert store.list(EVENTS, "ns", field_selector="reason=SuccessfulCreatePod")[0][0]["type"] == "Normal"
    store.create(PODS, owned_pod("p"))
    store.append_log("ns", "p", "c", "one\ntwo")
    assert [line.text for line in store.logs("ns", "p", "c")] == ["one\n", "two\n"]
    store.delete(PODS, "ns", "p")
    store.create(PODS, owned_pod("p"))  # a new pod with the same name starts with empty logs
    assert store.logs("ns", "p", "c") == []
