"""kubesim faults through the Python API and the admin HTTP endpoint: outages, latency, injected failures,
cut watches, shrunk history, clear; plus the scenario admin endpoint."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from kubesim.testing import KubeSim

TF = "/apis/kubeflow.org/v1/namespaces/default/tfjobs"


async def test_down_refuse_then_up(api: Any) -> None:
    await api.create_tfjob()
    api.sim.faults.down(mode="refuse")
    with pytest.raises(aiohttp.ClientConnectorError):
        await api.get(TF)
    api.sim.faults.up()
    reply = await api.get(TF)
    assert reply.status == 200 and len(reply.body["items"]) == 1


async def test_down_refuse_drops_keepalive_connections(api: Any) -> None:
    assert (await api.get("/version")).status == 200  # leaves a pooled keep-alive connection
    api.sim.faults.down()
    with pytest.raises(aiohttp.ClientError):
        await api.get(TF)
    api.sim.faults.clear()
    assert (await api.get(TF)).status == 200


async def test_a_connection_that_slipped_past_going_down_is_dropped_at_its_first_request(api: Any) -> None:
    """A connection still in its TLS handshake when the listener goes down is not among the connections that
    going down aborts; it must not get its request served either."""
    assert (await api.get("/version")).status == 200  # an open keep-alive connection
    api.sim.faults.mode = "refuse"  # down, as if going down had missed this connection
    try:
        with pytest.raises(aiohttp.ClientError):
            await api.post(TF, api.tfjob("late"))
    finally:
        api.sim.faults.mode = None
    assert (await api.get(TF)).body["items"] == []


async def test_down_503(api: Any) -> None:
    api.sim.faults.down(mode="503")
    status = api.status(await api.get(TF), 503, "ServiceUnavailable")
    assert status["message"]
    # admin endpoints are never faulted
    assert (await api.get("/kubesim/admin/state")).body["faults"]["mode"] == "503"
    api.sim.faults.up()
    assert (await api.get(TF)).status == 200


async def test_fail_next_with_codes_and_matching(api: Any) -> None:
    faults = api.sim.faults
    faults.fail_next(1, 429)
    throttled = await api.get(TF)
    status = api.status(throttled, 429, "TooManyRequests")
    assert throttled.headers["Retry-After"] == "1" and status["details"]["retryAfterSeconds"] == 1
    faults.fail_next(2, 500, path="/tfjobs", method="POST")
    assert (await api.get(TF)).status == 200  # GET does not match
    api.status(await api.post(TF, api.tfjob()), 500, "InternalError")
    api.status(await api.post(TF, api.tfjob()), 500, "InternalError")
    assert (await api.post(TF, api.tfjob())).status == 201
    faults.fail_next(1, 410, reason="Gone", message="gone away")
    gone = api.status(await api.get(TF), 410, "Gone")
    assert gone["message"] == "gone away"
    faults.fail_next(1, 504)
    api.status(await api.get(TF), 504, "Timeout")
    assert faults.injected == 5


async def test_latency(api: Any) -> None:
    api.sim.faults.latency(0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await api.get(TF)).status == 200
    # The delay is real; compare against a generous lower bound only (no upper bound on wall-clock).
    assert loop.time() - started >= 0.2
    api.sim.faults.latency(0)
    assert api.sim.faults.delay == 0


async def test_cut_watches_ends_streams(api: Any) -> None:
    response = await api.session.get(api.sim.url + f"{TF}?watch=1", ssl=api.ssl)
    assert response.status == 200
    await asyncio.sleep(0.05)
    assert api.sim.faults.cut_watches() == 1
    with pytest.raises(aiohttp.ClientError):
        while await asyncio.wait_for(response.content.readline(), timeout=5):
            pass
    response.close()
    assert (await api.get(TF)).status == 200  # the server itself is fine


async def test_shrink_history_forces_410(api: Any) -> None:
    first = await api.create_tfjob(api.tfjob("a"))
    await api.create_tfjob(api.tfjob("b"))
    api.sim.faults.shrink_history(0)
    response = await api.session.get(
        api.sim.url + f"{TF}?watch=1&resourceVersion={first['metadata']['resourceVersion']}", ssl=api.ssl)
    line = await asyncio.wait_for(response.content.readline(), timeout=5)
    response.close()
    assert b'"ERROR"' in line and b'"Expired"' in line


async def test_admin_endpoint_drives_faults(api: Any) -> None:
    post = api.post
    assert (await post("/kubesim/admin/faults/fail-next", {"n": 1, "status": 429})).status == 200
    api.status(await api.get(TF), 429, "TooManyRequests")
    assert (await post("/kubesim/admin/faults/down", {"mode": "503"})).status == 200
    api.status(await api.get(TF), 503, "ServiceUnavailable")
    assert (await post("/kubesim/admin/faults/up", {})).status == 200
    assert (await post("/kubesim/admin/faults/latency", {"seconds": 0.01})).body["faults"]["latency"] == 0.01
    assert (await post("/kubesim/admin/faults/shrink-history", {"n": 5})).body["faults"]["historyLimit"] == 5
    assert (await post("/kubesim/admin/faults/cut-watches", {})).body == {"cut": 0}
    cleared = await post("/kubesim/admin/faults/clear", {})
    assert cleared.body["faults"]["latency"] == 0 and cleared.body["faults"]["mode"] is None
    assert (await post("/kubesim/admin/faults/down", {"mode": "refuse"})).status == 200
    with pytest.raises(aiohttp.ClientConnectorError):
        await api.get("/kubesim/admin/state")
    api.sim.faults.up()
    api.status(await post("/kubesim/admin/faults/explode", {}), 404, "NotFound")
    api.status(await post("/kubesim/admin/faults/down", {"mode": "sideways"}), 400, "BadRequest")
    api.status(await post("/kubesim/admin/faults/latency", {"seconds": "slow"}), 400, "BadRequest")
    api.status(await post("/kubesim/admin/scenario", {"scenario": "hold"}), 503, "ServiceUnavailable")


async def test_admin_endpoint_needs_the_token(api: Any) -> None:
    async with aiohttp.ClientSession() as anonymous, \
            anonymous.post(api.sim.url + "/kubesim/admin/faults/down", ssl=api.ssl) as response:
        assert response.status == 401
    assert api.sim.faults.mode is None


class RecordingControllers:
    """Stands in for kubesim.controllers.Controllers to observe the admin scenario endpoint."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def set_default_scenario(self, scenario: str) -> None:
        self.calls.append(("default", scenario))

    def set_job_scenario(self, namespace: str, name: str, scenario: str) -> None:
        self.calls.append(("job", namespace, name, scenario))


async def test_admin_scenario_calls_controllers(api: Any) -> None:
    recorder = RecordingControllers()
    api.sim.controllers = recorder
    try:
        assert (await api.post("/kubesim/admin/scenario", {"scenario": "fail:exit=3"})).status == 200
        assert (await api.post("/kubesim/admin/scenario", {"scenario": "hold", "namespace": "team-a",
                                                           "name": "j"})).status == 200
        api.status(await api.post("/kubesim/admin/scenario", {}), 400, "BadRequest")
    finally:
        api.sim.controllers = None
    assert recorder.calls == [("default", "fail:exit=3"), ("job", "team-a", "j", "hold")]


async def test_fixture_wires_real_controllers() -> None:
    async with KubeSim(tfjob_operator="training-operator", volcano=True) as running:
        from kubesim.controllers import Controllers
        assert isinstance(running.controllers, Controllers)
    async with KubeSim(tfjob_operator=None, volcano=False) as bare:
        assert bare.controllers is None


async def test_admin_rejects_bad_parameters_with_400(api: Any) -> None:
    """A malformed scenario or a non-numeric fault parameter is the caller's mistake, not a server error."""
    from kubesim.controllers import Controllers

    controllers = Controllers(api.sim.store, time_scale=0.01)
    api.sim.controllers = controllers
    try:
        api.status(await api.post("/kubesim/admin/scenario", {"scenario": "explode:now"}), 400, "BadRequest")
        api.status(await api.post("/kubesim/admin/scenario", {"scenario": "fail:exit=abc"}), 400, "BadRequest")
    finally:
        api.sim.controllers = None
    api.status(await api.post("/kubesim/admin/faults/latency", {"seconds": "slow"}), 400, "BadRequest")
    api.status(await api.post("/kubesim/admin/faults/fail-next", {"n": "x", "status": 500}), 400, "BadRequest")
