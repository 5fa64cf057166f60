"""kubesim pod logs: tailLines, container choice, timestamps, follow while the pod runs, and error cases."""

from __future__ import annotations

import asyncio
from typing import Any

from kubesim.store import PODS

LOG = "/api/v1/namespaces/default/pods/{pod}/log"


def make_pod(sim: Any, name: str = "trainer", containers: tuple[str, ...] = ("tensorflow",),
             phase: str = "Running") -> None:
    sim.store.create(PODS, {"metadata": {"name": name, "namespace": "default"},
                                  "spec": {"containers": [{"name": c, "image": "x"} for c in containers]}})
    sim.store.update_status(PODS, "default", name, {"phase": phase})


async def test_logs_tail_and_timestamps(api: Any, sim: Any) -> None:
    make_pod(sim)
    sim.store.append_log("default", "trainer", "tensorflow", "epoch 1\nepoch 2\n")
    sim.store.append_log("default", "trainer", "tensorflow", "epoch 3")
    full = await api.get(LOG.format(pod="trainer"))
    assert full.status == 200 and full.body == "epoch 1\nepoch 2\nepoch 3\n"
    assert full.headers["Content-Type"].startswith("text/plain")
    tail = await api.get(LOG.format(pod="trainer") + "?tailLines=2")
    assert tail.body == "epoch 2\nepoch 3\n"
    stamped = await api.get(LOG.format(pod="trainer") + "?tailLines=1&timestamps=true")
    stamp, _, text = stamped.body.partition(" ")
    assert text == "epoch 3\n" and stamp.endswith("Z") and "T" in stamp


async def test_logs_container_selection(api: Any, sim: Any) -> None:
    make_pod(sim, containers=("tensorflow", "sidecar"))
    sim.store.append_log("default", "trainer", "sidecar", "side\n")
    status = api.status(await api.get(LOG.format(pod="trainer")), 400, "BadRequest")
    assert status["message"] == ("a container name must be specified for pod trainer, choose one of: "
                                 "[tensorflow sidecar]")
    assert (await api.get(LOG.format(pod="trainer") + "?container=sidecar")).body == "side\n"
    bad = api.status(await api.get(LOG.format(pod="trainer") + "?container=nope"), 400, "BadRequest")
    assert bad["message"] == "container nope is not valid for pod trainer"


async def test_logs_of_missing_or_waiting_pod(api: Any, sim: Any) -> None:
    api.status(await api.get(LOG.format(pod="ghost")), 404, "NotFound")
    make_pod(sim, name="waiting", phase="Pending")
    status = api.status(await api.get(LOG.format(pod="waiting")), 400, "BadRequest")
    assert status["message"] == 'container "tensorflow" in pod "waiting" is waiting to start: ContainerCreating'


async def test_logs_follow_streams_until_the_pod_finishes(api: Any, sim: Any) -> None:
    make_pod(sim)
    sim.store.append_log("default", "trainer", "tensorflow", "start\n")
    response = await api.session.get(api.sim.url + LOG.format(pod="trainer") + "?follow=true", ssl=api.ssl)
    assert response.status == 200
    assert await asyncio.wait_for(response.content.readline(), timeout=5) == b"start\n"
    sim.store.append_log("default", "trainer", "tensorflow", "step 1\n")
    assert await asyncio.wait_for(response.content.readline(), timeout=5) == b"step 1\n"
    sim.store.append_log("default", "trainer", "tensorflow", "done\n")
    sim.store.update_status(PODS, "default", "trainer", {"phase": "Succeeded"})
    rest = await asyncio.wait_for(response.read(), timeout=5)
    assert rest == b"done\n"
    response.close()


async def test_logs_follow_ends_when_the_pod_is_deleted(api: Any, sim: Any) -> None:
    make_pod(sim)
    response = await api.session.get(api.sim.url + LOG.format(pod="trainer") + "?follow=1", ssl=api.ssl)
    assert response.status == 200
    await asyncio.sleep(0.05)
    sim.store.delete(PODS, "default", "trainer")
    assert await asyncio.wait_for(response.read(), timeout=5) == b""
    response.close()
