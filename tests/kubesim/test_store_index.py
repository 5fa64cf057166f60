"""The store's indexes answer exactly what a scan would, and stay right through updates, GC and namespaces.

Selectors read through the label/namespace index are compared with a brute-force scan of every stored object
(random objects, random label changes and deletions, every selector operator). Owner-reference garbage
collection, which now walks the owner index, keeps its three propagation policies; named indexes follow
writes; a watch event is encoded once for every watcher; an expired resourceVersion still gets 410.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

import pytest

from kubesim import store as store_module
from kubesim.errors import ApiError
from kubesim.selectors import parse_field_selector, parse_label_selector
from kubesim.store import CONFIGMAPS, NAMESPACES, PODS, SERVICES, TFJOBS, Store

NAMESPACE_NAMES = ("a", "b", "c")
LABEL_KEYS = ("app", "tier", "training.kubeflow.org/job-name")
LABEL_VALUES = ("x", "y", "z")
SELECTORS = (
    None, "", "app=x", "app==y", "app!=x", "app in (x,z)", "app notin (x)", "app", "!app", "app=x,tier=y",
    "app in (x,y),tier", "tier,!app", "training.kubeflow.org/job-name=z", "app=x,app=y", "app=nothing",
    "app!=x,tier notin (y,z)",
)
FIELD_SELECTORS = (None, "metadata.name=p3", "metadata.namespace=b", "metadata.name!=p3", "status.phase=Running",
                   "metadata.name=p5,metadata.namespace=a", "status.phase!=Running,metadata.namespace=c")


def random_labels(rng: random.Random) -> dict[str, str]:
    return {key: rng.choice(LABEL_VALUES) for key in LABEL_KEYS if rng.random() < 0.6}


def pod(name: str, namespace: str, labels: dict[str, str], owner: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "name": "j", "uid": owner,
                                    "controller": True}]
    return {"metadata": meta, "spec": {"containers": [{"name": "c", "image": "i"}]}}


def scan(store: Store, res: Any, namespace: str | None, label_selector: str | None,
         field_selector: str | None) -> list[Mapping[str, Any]]:
    """What `select` must return, computed the slow way: every object, in key order, filtered."""
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector, fields=("metadata.name", "metadata.namespace", "status.phase"))
    everything = sorted(store._objects[res].values(),
                        key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
    return [o for o in everything
            if (not namespace or o["metadata"]["namespace"] == namespace) and labels(o) and fields(o)]


def assert_index_matches_scan(store: Store) -> None:
    for namespace in (None, *NAMESPACE_NAMES):
        for label_selector in SELECTORS:
            for field_selector in FIELD_SELECTORS:
                via_index = store.select(PODS, namespace, label_selector=label_selector,
                                         field_selector=field_selector)
                expected = scan(store, PODS, namespace, label_selector, field_selector)
                assert [o["metadata"]["uid"] for o in via_index] == [o["metadata"]["uid"] for o in expected], \
                    (namespace, label_selector, field_selector)
                listed, _ = store.list(PODS, namespace, label_selector=label_selector, field_selector=field_selector)
                assert listed == [dict(o) for o in expected]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_selectors_through_the_index_match_a_scan(seed: int) -> None:
    rng = random.Random(seed)
    store = Store(namespaces=NAMESPACE_NAMES)
    for index in range(60):
        store.create(PODS, pod(f"p{index}", rng.choice(NAMESPACE_NAMES), random_labels(rng)))
    assert_index_matches_scan(store)
    # relabel, change phases, delete and recreate: every index entry must follow
    for _ in range(80):
        victim = rng.choice(store.list(PODS)[0])
        meta = victim["metadata"]
        action = rng.random()
        if action < 0.4:
            victim["metadata"]["labels"] = random_labels(rng)
            store.update(PODS, victim)
        elif action < 0.6:
            store.update_status(PODS, meta["namespace"], meta["name"], {"phase": rng.choice(("Running", "Pending"))})
        elif action < 0.8:
            store.delete(PODS, meta["namespace"], meta["name"])
        else:
            store.delete(PODS, meta["namespace"], meta["name"])
            store.create(PODS, pod(meta["name"], rng.choice(NAMESPACE_NAMES), random_labels(rng)))
    assert_index_matches_scan(store)
    store.delete(NAMESPACES, None, "b")
    assert_index_matches_scan(store)
    assert store.select(PODS, "b") == [] and store.select(PODS, label_selector="app") == scan(
        store, PODS, None, "app", None)


def test_reads_are_copies_and_views_are_the_stored_objects() -> None:
    store = Store(namespaces=["a"])
    store.create(PODS, pod("p", "a", {"app": "x"}))
    copy_ = store.get(PODS, "a", "p")
    copy_["metadata"]["labels"]["app"] = "changed"
    assert store.peek(PODS, "a", "p") is store.select(PODS, "a", label_selector="app=x")[0]
    assert store.get(PODS, "a", "p")["metadata"]["labels"] == {"app": "x"}
    before = store.peek(PODS, "a", "p")
    store.update_status(PODS, "a", "p", {"phase": "Running"})
    # a write stores a new object: what a reader held keeps the version it read
    assert before is not None and before["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert (store.peek(PODS, "a", "p") or {})["status"] == {"phase": "Running"}


def test_shared_writes_keep_the_given_object_and_never_change_it() -> None:
    store = Store(namespaces=["a"])
    body = pod("p", "a", {"app": "x"})
    given_meta = body["metadata"]
    stored = store.create(PODS, body, shared=True)
    assert stored is store.peek(PODS, "a", "p")
    assert "uid" not in given_meta  # the store built its own metadata dict around the given parts
    replaced = store.update(PODS, {**stored, "spec": {"containers": []}}, shared=True)
    assert stored["spec"]["containers"] and not replaced["spec"]["containers"]
    assert int(replaced["metadata"]["resourceVersion"]) > int(stored["metadata"]["resourceVersion"])


def test_owner_index_garbage_collection() -> None:
    store = Store(namespaces=["a"])
    owner = store.create(TFJOBS, {"metadata": {"name": "j", "namespace": "a"}, "spec": {}})
    other = store.create(TFJOBS, {"metadata": {"name": "k", "namespace": "a"}, "spec": {}})
    uid, other_uid = owner["metadata"]["uid"], other["metadata"]["uid"]
    store.create(PODS, pod("p1", "a", {}, owner=uid))
    store.create(PODS, pod("p2", "a", {}, owner=uid))
    two_owners = pod("p3", "a", {}, owner=uid)
    two_owners["metadata"]["ownerReferences"].append({"apiVersion": "kubeflow.org/v1", "kind": "TFJob",
                                                      "name": "k", "uid": other_uid})
    store.create(PODS, two_owners)
    store.create(SERVICES, {"metadata": {"name": "s", "namespace": "a", "ownerReferences": [
        {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "name": "j", "uid": uid}]}})
    assert [p["metadata"]["name"] for p in store.owned(PODS, uid)] == ["p1", "p2", "p3"]
    assert [p["metadata"]["name"] for p in store.owned(PODS, other_uid)] == ["p3"]
    # an ownerReference dropped by an update leaves the index
    p2 = store.get(PODS, "a", "p2")
    del p2["metadata"]["ownerReferences"]
    store.update(PODS, p2)
    assert [p["metadata"]["name"] for p in store.owned(PODS, uid)] == ["p1", "p3"]
    store.delete(TFJOBS, "a", "j")  # Background
    # p3 has another live owner and survives, as with the real garbage collector; p2 was orphaned by hand
    assert [p["metadata"]["name"] for p in store.select(PODS, "a")] == ["p2", "p3"]
    assert store.select(SERVICES, "a") == []
    # the survivor keeps its (now dangling) reference, as the real garbage collector leaves it
    assert [p["metadata"]["name"] for p in store.owned(PODS, uid)] == ["p3"]
    assert store.find_uid(uid) is None and (store.find_uid(other_uid) or (None, {}))[0] is TFJOBS


def test_foreground_and_orphan_through_the_owner_index() -> None:
    store = Store(namespaces=["a"])
    owner = store.create(TFJOBS, {"metadata": {"name": "j", "namespace": "a"}, "spec": {}})
    uid = owner["metadata"]["uid"]
    finalized = pod("held", "a", {}, owner=uid)
    finalized["metadata"]["finalizers"] = ["example.com/hold"]
    store.create(PODS, finalized)
    store.create(PODS, pod("free", "a", {}, owner=uid))
    store.delete(TFJOBS, "a", "j", propagation="Foreground")
    job = store.get(TFJOBS, "a", "j")
    assert job["metadata"]["finalizers"] == ["foregroundDeletion"] and job["metadata"]["deletionTimestamp"]
    assert store.peek(PODS, "a", "free") is None and (store.peek(PODS, "a", "held") or {})["metadata"].get(
        "deletionTimestamp")
    held = store.get(PODS, "a", "held")
    held["metadata"]["finalizers"] = []
    store.update(PODS, held)  # the last dependent goes → the owner goes
    assert store.peek(PODS, "a", "held") is None and store.peek(TFJOBS, "a", "j") is None
    owner = store.create(TFJOBS, {"metadata": {"name": "o", "namespace": "a"}, "spec": {}})
    store.create(PODS, pod("kept", "a", {}, owner=owner["metadata"]["uid"]))
    store.delete(TFJOBS, "a", "o", propagation="Orphan")
    kept = store.get(PODS, "a", "kept")
    assert "ownerReferences" not in kept["metadata"] and store.owned(PODS, owner["metadata"]["uid"]) == []


def test_named_index_follows_writes() -> None:
    store = Store(namespaces=["a"])
    store.create(PODS, pod("early", "a", {"group": "g1"}))

    def by_group(obj: Mapping[str, Any]) -> list[str]:
        group = (obj["metadata"].get("labels") or {}).get("group")
        return [f"{obj['metadata']['namespace']}/{group}"] if group else []

    store.add_index(PODS, "group", by_group)  # built over what is already stored
    store.create(PODS, pod("late", "a", {"group": "g1"}))
    store.create(PODS, pod("other", "a", {"group": "g2"}))
    assert [p["metadata"]["name"] for p in store.by_index(PODS, "group", "a/g1")] == ["early", "late"]
    moved = store.get(PODS, "a", "late")
    moved["metadata"]["labels"] = {"group": "g2"}
    store.update(PODS, moved)
    store.delete(PODS, "a", "early")
    assert store.by_index(PODS, "group", "a/g1") == []
    assert [p["metadata"]["name"] for p in store.by_index(PODS, "group", "a/g2")] == ["late", "other"]
    with pytest.raises(KeyError):
        store.by_index(SERVICES, "group", "a/g1")


def test_indexes_do_not_keep_empty_entries() -> None:
    store = Store(namespaces=["a"])
    for index in range(20):
        store.create(CONFIGMAPS, {"metadata": {"name": f"c{index}", "namespace": "a", "labels": {"i": str(index)}}})
    for index in range(20):
        store.delete(CONFIGMAPS, "a", f"c{index}")
    assert store.select(CONFIGMAPS, label_selector="i") == []
    assert store._by_label[CONFIGMAPS] == {} and store._by_label_key[CONFIGMAPS] == {}


async def test_a_watch_event_is_encoded_once_for_all_watchers(monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(namespaces=["a"])
    queues = [store.subscribe() for _ in range(5)]
    encoded: list[Any] = []
    real_encode = store_module.encode_json

    def counting_encode(obj: Any) -> bytes:
        encoded.append(obj)
        return real_encode(obj)

    monkeypatch.setattr(store_module, "encode_json", counting_encode)
    store.create(PODS, pod("p", "a", {"app": "x"}))
    events = [queue.get_nowait() for queue in queues]
    assert all(event is events[0] for event in events)
    lines = {event.line() for event in events} | {events[0].line()}
    assert len(lines) == 1 and len(encoded) == 1
    parsed = json.loads(lines.pop())
    assert parsed["type"] == "ADDED" and parsed["object"] == store.get(PODS, "a", "p")
    assert json.loads(events[0].line("DELETED"))["type"] == "DELETED" and len(encoded) == 1


async def test_filtered_subscribers_get_only_their_resources() -> None:
    store = Store(namespaces=["a"])
    pods_only = store.subscribe(bounded=False, resources=[PODS])
    everything = store.subscribe()
    store.create(CONFIGMAPS, {"metadata": {"name": "c", "namespace": "a"}})
    store.create(PODS, pod("p", "a", {}))
    assert [pods_only.get_nowait().resource for _ in range(pods_only.qsize())] == [PODS]
    assert [everything.get_nowait().resource for _ in range(everything.qsize())] == [CONFIGMAPS, PODS]


def test_history_still_expires_with_shared_events() -> None:
    store = Store(history_limit=3, namespaces=["a"])
    first = store.create(PODS, pod("p", "a", {"app": "x"}))
    for phase in ("Running", "Succeeded", "Failed", "Unknown"):
        store.update_status(PODS, "a", "p", {"phase": phase})
    with pytest.raises(ApiError) as caught:
        store.history_since(int(first["metadata"]["resourceVersion"]))
    assert caught.value.code == 410 and caught.value.reason == "Expired"
    newest = int(store.resource_version)
    replay = store.history_since(newest - 2)
    assert [e.object["status"]["phase"] for e in replay] == ["Failed", "Unknown"]
    # each event kept the version it was written at, though every write after it made a new one
    assert [e.resource_version for e in replay] == [newest - 1, newest]
