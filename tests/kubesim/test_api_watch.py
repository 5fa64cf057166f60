"""kubesim watch: chunked JSON lines, replay from a resourceVersion, 410 ERROR events, bookmarks, timeouts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from kubesim.errors import ApiError
from kubesim.store import CONFIGMAPS, PODS, TFJOBS, Store

TF = "/apis/kubeflow.org/v1/namespaces/default/tfjobs"


@asynccontextmanager
async def watching(api: Any, path: str) -> AsyncIterator[tuple[aiohttp.ClientResponse, asyncio.Queue[Any]]]:
    """Open a watch and feed its decoded events into a queue (None marks the end of the stream)."""
    response = await api.session.get(api.sim.url + path, ssl=api.ssl)
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for line in response.content:
                if line.strip():
                    await queue.put(json.loads(line))
        except aiohttp.ClientError as exc:
            await queue.put(exc)
        await queue.put(None)

    task = asyncio.create_task(pump())
    try:
        yield response, queue
    finally:
        task.cancel()
        response.close()


async def next_event(queue: asyncio.Queue[Any], *, skip_bookmarks: bool = True) -> Any:
    while True:
        event = await asyncio.wait_for(queue.get(), timeout=5)
        if skip_bookmarks and isinstance(event, dict) and event.get("type") == "BOOKMARK":
            continue
        return event


async def test_watch_from_list_rv_streams_changes(api: Any) -> None:
    listed = await api.get(TF)
    rv = listed.body["metadata"]["resourceVersion"]
    async with watching(api, f"{TF}?watch=1&resourceVersion={rv}") as (response, queue):
        assert response.status == 200 and response.content_type == "application/json"
        created = await api.create_tfjob()
        event = await next_event(queue)
        assert event["type"] == "ADDED" and event["object"]["metadata"]["uid"] == created["metadata"]["uid"]
        await api.patch(f"{TF}/mnist", {"metadata": {"labels": {"x": "y"}}})
        modified = await next_event(queue)
        assert modified["type"] == "MODIFIED" and modified["object"]["metadata"]["labels"]["x"] == "y"
        await api.delete(f"{TF}/mnist")
        deleted = await next_event(queue)
        assert deleted["type"] == "DELETED"
        assert int(deleted["object"]["metadata"]["resourceVersion"]) > int(modified["object"]["metadata"]
                                                                           ["resourceVersion"])


async def test_watch_replays_history_after_rv(api: Any) -> None:
    first = await api.create_tfjob(api.tfjob("one"))
    await api.create_tfjob(api.tfjob("two"))
    await api.create_tfjob(api.tfjob("three"))
    rv = first["metadata"]["resourceVersion"]
    async with watching(api, f"{TF}?watch=true&resourceVersion={rv}") as (_, queue):
        names = [(await next_event(queue))["object"]["metadata"]["name"] for _ in range(2)]
    assert names == ["two", "three"]


async def test_watch_without_rv_sends_current_state_first(api: Any) -> None:
    await api.create_tfjob(api.tfjob("existing"))
    async with watching(api, "/apis/kubeflow.org/v1/tfjobs?watch=1") as (_, queue):
        first = await next_event(queue)
        assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "existing"
        await api.create_tfjob(api.tfjob("later"), ns="team-a")
        second = await next_event(queue)
        assert second["object"]["metadata"]["name"] == "later"


async def test_watch_filters_namespace_and_labels(api: Any) -> None:
    rv = (await api.get(TF)).body["metadata"]["resourceVersion"]
    async with watching(api, f"{TF}?watch=1&resourceVersion={rv}&labelSelector=pick%3Dme") as (_, queue):
        await api.create_tfjob(api.tfjob("elsewhere"), ns="team-a")
        await api.create_tfjob(api.tfjob("unlabelled"))
        chosen = api.tfjob("chosen")
        chosen["metadata"]["labels"] = {"pick": "me"}
        await api.create_tfjob(chosen)
        event = await next_event(queue)
        assert event["object"]["metadata"]["name"] == "chosen"


async def test_watch_too_old_rv_gets_410_error_event(api: Any, sim: Any) -> None:
    created = await api.create_tfjob(api.tfjob("a"))
    for name in ("b", "c", "d"):
        await api.create_tfjob(api.tfjob(name))
    sim.faults.shrink_history(1)
    old_rv = created["metadata"]["resourceVersion"]
    async with watching(api, f"{TF}?watch=1&resourceVersion={old_rv}") as (response, queue):
        assert response.status == 200
        event = await next_event(queue)
        assert event["type"] == "ERROR"
        status = event["object"]
        assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
        assert status["message"].startswith(f"too old resource version: {old_rv} (")
        assert await next_event(queue) is None  # the stream ends after the error


async def test_a_watcher_too_far_behind_is_closed_and_resumes(api: Any) -> None:
    """Like the API server's watch cache: a watcher that cannot keep up is closed, not buffered without end."""
    store = api.sim.store
    rv = (await api.get(TF)).body["metadata"]["resourceVersion"]
    async with watching(api, f"{TF}?watch=1&resourceVersion={rv}") as (_, queue):
        await asyncio.sleep(0.05)  # the server has subscribed
        first = store.create(TFJOBS, {**api.tfjob("first"), "metadata": {"name": "first", "namespace": "default"}})
        for index in range(1100):  # one burst, no await: more than the watcher's buffer (1000 events)
            store.create(TFJOBS, {**api.tfjob(f"burst-{index}"),
                                  "metadata": {"name": f"burst-{index}", "namespace": "default"}})
        store.create(TFJOBS, {**api.tfjob("second"), "metadata": {"name": "second", "namespace": "default"}})
        seen = await next_event(queue)
        assert seen["type"] == "ADDED" and seen["object"]["metadata"]["name"] == "first"
        delivered = []
        while (event := await next_event(queue)) is not None:  # what it had buffered, then the end
            delivered.append(event["object"]["metadata"]["name"])
        assert len(delivered) < 1000 and "second" not in delivered  # closed: "second" was past the buffer
    # The client resumes from the last event it saw; here that is older than the history -> 410, relist.
    async with watching(api, f"{TF}?watch=1&resourceVersion={first['metadata']['resourceVersion']}") as (_, queue):
        expired = await next_event(queue)
        assert expired["type"] == "ERROR" and expired["object"]["code"] == 410


async def test_a_burst_of_another_kind_does_not_close_a_watch(api: Any) -> None:
    """A watch receives its own resource's events only (the API server keeps a watch cache per resource):
    thousands of ConfigMap events in one burst neither fill nor close a TFJob watch."""
    store = api.sim.store
    rv = (await api.get(TF)).body["metadata"]["resourceVersion"]
    async with watching(api, f"{TF}?watch=1&resourceVersion={rv}") as (_, queue):
        await asyncio.sleep(0.05)  # the server has subscribed
        for index in range(1100):
            store.create(CONFIGMAPS, {"metadata": {"name": f"burst-{index}", "namespace": "default"}})
        store.create(TFJOBS, {**api.tfjob("after"), "metadata": {"name": "after", "namespace": "default"}})
        seen = await next_event(queue)
        assert seen["type"] == "ADDED" and seen["object"]["metadata"]["name"] == "after"


async def test_only_bounded_subscribers_are_dropped() -> None:
    store = Store(watch_buffer=3, namespaces=["x"])
    watcher, controllers = store.subscribe(), store.subscribe(bounded=False)
    for index in range(10):
        store.create(CONFIGMAPS, {"metadata": {"name": f"c{index}", "namespace": "x"}})
    assert not store.is_subscribed(watcher) and watcher.qsize() == 3  # it keeps what it had, in order
    assert store.is_subscribed(controllers) and controllers.qsize() >= 10


async def test_history_limit_evicts_old_events() -> None:
    store = Store(history_limit=2, namespaces=["x"])
    for index in range(4):
        store.create(CONFIGMAPS, {"metadata": {"name": f"c{index}", "namespace": "x"}})
    newest = int(store.resource_version)
    assert [e.object["metadata"]["name"] for e in store.history_since(newest - 1)] == ["c3"]
    with pytest.raises(ApiError) as caught:
        store.history_since(1)
    assert caught.value.code == 410 and caught.value.reason == "Expired"
    assert caught.value.message == f"too old resource version: 1 ({newest - 2})"


async def test_history_keeps_the_recent_events_and_lets_older_ones_go() -> None:
    """Like the API server's watch cache: every event of the last `history_seconds` (here 0.2 s) stays
    within the bound, and older ones go once more than 100 are held."""
    store = Store(history_limit=10_000, history_seconds=0.2, namespaces=["x"])
    for index in range(300):
        store.create(CONFIGMAPS, {"metadata": {"name": f"old{index}", "namespace": "x"}})
    assert len(store.history_since(1)) == 300  # fresh: all kept, far beyond 100
    await asyncio.sleep(0.3)
    store.create(CONFIGMAPS, {"metadata": {"name": "new", "namespace": "x"}})
    newest = int(store.resource_version)
    with pytest.raises(ApiError) as caught:
        store.history_since(1)
    assert caught.value.code == 410
    assert len(store.history_since(newest - 100)) == 100  # the last 100 stay, however old


async def test_bookmarks_when_allowed(api: Any) -> None:
    rv = (await api.get(TF)).body["metadata"]["resourceVersion"]
    async with watching(api, f"{TF}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true") as (_, queue):
        event = await next_event(queue, skip_bookmarks=False)
        assert event["type"] == "BOOKMARK"
        assert event["object"] == {"kind": "TFJob", "apiVersion": "kubeflow.org/v1",
                                   "metadata": {"resourceVersion": rv}}


async def test_no_bookmarks_unless_asked(api: Any) -> None:
    rv = (await api.get(TF)).body["metadata"]["resourceVersion"]
    async with watching(api, f"{TF}?watch=1&resourceVersion={rv}&timeoutSeconds=1") as (_, queue):
        assert await next_event(queue, skip_bookmarks=False) is None


async def test_watch_ends_at_timeout_seconds(api: Any) -> None:
    async with watching(api, f"{TF}?watch=1&timeoutSeconds=1") as (response, queue):
        assert response.status == 200
        assert await next_event(queue) is None


async def test_watch_bad_resource_version_is_bad_request(api: Any) -> None:
    api.status(await api.get(f"{TF}?watch=1&resourceVersion=abc"), 400, "BadRequest")


async def test_watch_core_pods_by_field_selector(api: Any, sim: Any) -> None:
    rv = (await api.get("/api/v1/pods")).body["metadata"]["resourceVersion"]
    async with watching(api, f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}"
                             "&fieldSelector=metadata.name%3Dwanted") as (_, queue):
        for name in ("other", "wanted"):
            sim.store.create(PODS, {"metadata": {"name": name, "namespace": "default"},
                                    "spec": {"containers": [{"name": "c", "image": "x"}]}})
        event = await next_event(queue)
        assert event["object"]["metadata"]["name"] == "wanted" and event["object"]["kind"] == "Pod"


async def test_label_selector_watch_reports_objects_entering_and_leaving(api: Any) -> None:
    rv = (await api.get(TF)).body["metadata"]["resourceVersion"]
    async with watching(api, f"{TF}?watch=1&resourceVersion={rv}&labelSelector=phase%3Dhot") as (_, queue):
        await api.create_tfjob()  # labels app=demo only: invisible
        await api.patch(f"{TF}/mnist", {"metadata": {"labels": {"phase": "hot"}}})
        entered = await next_event(queue)
        assert entered["type"] == "ADDED" and entered["object"]["metadata"]["labels"]["phase"] == "hot"
        await api.patch(f"{TF}/mnist", {"metadata": {"labels": {"extra": "1"}}})
        assert (await next_event(queue))["type"] == "MODIFIED"
        await api.patch(f"{TF}/mnist", {"metadata": {"labels": {"phase": "cold"}}})
        left = await next_event(queue)
        assert left["type"] == "DELETED" and left["object"]["metadata"]["labels"]["phase"] == "cold"
        await api.delete(f"{TF}/mnist")  # already invisible: nothing more
        marker = api.tfjob("marker")
        marker["metadata"]["labels"] = {"phase": "hot"}
        await api.create_tfjob(marker)
        assert (await next_event(queue))["object"]["metadata"]["name"] == "marker"


async def test_server_notices_a_watch_client_going_away(api: Any, sim: Any) -> None:
    response = await api.session.get(api.sim.url + f"{TF}?watch=1", ssl=api.ssl)
    assert response.status == 200
    for _ in range(100):
        if sim.server.open_streams == 1:
            break
        await asyncio.sleep(0.02)
    assert sim.server.open_streams == 1
    response.close()
    for _ in range(250):  # polled, not timed: the server checks its clients about once a second
        if sim.server.open_streams == 0:
            break
        await asyncio.sleep(0.02)
    assert sim.server.open_streams == 0
