"""Cluster errors: every answer a cluster can give maps to exactly one legacy answer, transient ones are
retried and permanent ones are not (calls counted by KubeSim), and cluster calls carry the request id.

The table is checked twice: on the cluster client itself (GET, retried with 3 attempts) and through the
gateway's HTTP API (an in-place PATCH, i.e. a merge patch, 2 attempts in the test settings)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from gateway.config import ClusterSettings, RetrySettings
from gateway.kube import PODS, ClusterApiError, ClusterClient, KubeError, KubeStatus
from gateway.metrics import Metrics
from gateway.web.errors import legacy_error
from tests.conftest import PARTITION, RUNTIMES, Gateway
from tests.service.seed_bodies import minimal

USER = {"X-User": "alice"}

# (what the cluster does, legacy code, legacy reason, transient)
TABLE: list[tuple[str, int, str, bool]] = [
    ("400 BadRequest", 400, "BadRequest", False),
    ("401 Unauthorized", 502, "BadGateway", False),
    ("403 Forbidden", 403, "Forbidden", False),
    ("404 NotFound", 404, "NotFound", False),
    ("405 MethodNotAllowed", 502, "BadGateway", False),
    ("409 AlreadyExists", 409, "Conflict", False),
    ("409 Conflict", 409, "Conflict", False),
    ("410 Expired", 502, "BadGateway", False),
    ("413 RequestEntityTooLarge", 413, "RequestEntityTooLarge", False),
    ("415 UnsupportedMediaType", 502, "BadGateway", False),
    ("422 Invalid", 400, "Invalid", False),
    ("429 TooManyRequests", 429, "TooManyRequests", True),
    ("500 InternalError", 502, "BadGateway", True),
    ("502 BadGateway", 502, "BadGateway", True),
    ("503 ServiceUnavailable", 503, "ServiceUnavailable", True),
    ("504 Timeout", 504, "GatewayTimeout", True),
    ("unreachable", 503, "ServiceUnavailable", True),
    ("timeout", 504, "GatewayTimeout", True),
]
STATUS_ROWS = [row for row in TABLE if row[0][0].isdigit()]


def _code_reason(case: str) -> tuple[int, str]:
    code, reason = case.split(" ", 1)
    return int(code), reason


def test_the_table_covers_every_case_once() -> None:
    cases = [row[0] for row in TABLE]
    assert len(cases) == len(set(cases)) == 18


@pytest.mark.parametrize(("code", "transient"), [(400, False), (401, False), (403, False), (404, False),
                                                  (409, False), (410, False), (422, False), (429, True),
                                                  (500, True), (501, False), (502, True), (503, True),
                                                  (504, True)])
def test_the_status_decides_transience_not_the_class(code: int, transient: bool) -> None:
    status = KubeStatus.parse(code, b"")
    assert status.transient is transient
    error = ClusterApiError("c1", status)
    assert error.transient is transient
    assert error.auth_failure is (code in (401, 403))

    class Subclass(ClusterApiError):
        """A new subclass keeps what its Status says."""

    assert Subclass("c1", status).transient is transient


def test_a_status_body_is_parsed_and_a_foreign_body_is_never_echoed() -> None:
    body = (b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":422,"reason":"Invalid",'
            b'"message":"TFJob.kubeflow.org \\"x\\" is invalid","details":{"name":"x","kind":"tfjobs",'
            b'"causes":[{"reason":"FieldValueInvalid","message":"must be > 0","field":"spec.replicas"}],'
            b'"retryAfterSeconds":3}}')
    status = KubeStatus.parse(422, body)
    assert (status.code, status.reason, status.name, status.kind, status.retry_after_seconds) == (
        422, "Invalid", "x", "tfjobs", 3)
    assert [(c.field, c.message) for c in status.causes] == [("spec.replicas", "must be > 0")]
    answer = legacy_error(ClusterApiError("c1", status))
    assert answer.details["fields"] == [{"path": "spec.replicas", "message": "must be > 0"}]
    assert answer.details["clusterStatus"] == {"code": 422, "reason": "Invalid",
                                               "message": 'TFJob.kubeflow.org "x" is invalid'}
    html = KubeStatus.parse(502, b"<html>secret proxy page</html>")
    assert (html.reason, "secret" in html.message) == ("InternalError", False)


@pytest.fixture
async def client(kubesim: Any) -> AsyncIterator[ClusterClient]:
    settings = ClusterSettings.model_validate({"id": "c1", "server": kubesim.url, "token": kubesim.token,
                                               "caFile": kubesim.ca_file, "runtimes": RUNTIMES,
                                               "requestTimeoutSeconds": 0.5})
    cluster = ClusterClient(settings, metrics=Metrics(),
                            retry=RetrySettings(attempts=3, initial_delay_seconds=0.01, max_delay_seconds=0.02))
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.close()


@pytest.mark.parametrize(("case", "legacy_code", "legacy_reason", "transient"), STATUS_ROWS,
                         ids=[row[0] for row in STATUS_ROWS])
async def test_client_table_every_status(client: ClusterClient, kubesim: Any, case: str, legacy_code: int,
                                         legacy_reason: str, transient: bool) -> None:
    code, reason = _code_reason(case)
    kubesim.faults.fail_next(10, code, method="GET", path="/pods/", reason=reason)
    before = kubesim.faults.injected
    with pytest.raises(KubeError) as raised:
        await client.get(client.ref(PODS, PARTITION, "any"))
    error = raised.value
    assert isinstance(error, ClusterApiError)
    assert (error.status.code, error.status.reason) == (code, reason)
    assert error.transient is transient
    answer = legacy_error(error)
    assert (answer.status, answer.reason) == (legacy_code, legacy_reason)
    assert answer.message.startswith("cluster c1: ")
    # Transient answers are retried (3 attempts in all), permanent ones are sent once.
    assert kubesim.faults.injected - before == (3 if transient else 1)


async def test_client_table_unreachable_and_timeout(client: ClusterClient, kubesim: Any) -> None:
    calls: list[str] = []
    kubesim.server.on_request = lambda request: calls.append(request.method)
    kubesim.faults.latency(1.0)  # beyond requestTimeoutSeconds 0.5
    with pytest.raises(KubeError) as raised:
        await client.get(client.ref(PODS, PARTITION, "any"))
    kubesim.faults.latency(0)
    assert raised.value.kind == "timeout" and raised.value.transient
    assert (legacy_error(raised.value).status, legacy_error(raised.value).reason) == (504, "GatewayTimeout")
    assert isinstance(raised.value.__cause__, TimeoutError)
    assert calls == ["GET", "GET", "GET"]

    kubesim.faults.down()
    try:
        with pytest.raises(KubeError) as raised:
            await client.get(client.ref(PODS, PARTITION, "any"))
    finally:
        kubesim.faults.up()
    assert raised.value.kind == "unreachable" and raised.value.transient
    assert (legacy_error(raised.value).status, legacy_error(raised.value).reason) == (503, "ServiceUnavailable")
    assert not type(raised.value.__cause__).__module__.startswith("gateway")  # chained from the transport's error
    text = (await _metrics_text(client))
    assert 'clever_gateway_cluster_requests_total{cluster="c1",code="unreachable",verb="get"} 3.0' in text


async def _metrics_text(client: ClusterClient) -> str:
    metrics = client._metrics
    assert metrics is not None
    return metrics.render()[0].decode()


async def test_http_table_through_the_gateway(make_gateway: Any) -> None:
    """Every row through the legacy API: an in-place PATCH (a merge patch) that the cluster answers."""
    gw: Gateway = await make_gateway(cluster={"requestTimeoutSeconds": 0.5})
    created = await (await gw.client.post(gw.jobs_url(), json=minimal("table"), headers=USER)).json()
    url = f"{gw.jobs_url()}/{created['metadata']['id']}"
    patches: list[str] = []

    def observe(request: web.Request) -> None:
        if request.method == "PATCH":
            patches.append(request.path)

    gw.sim.server.on_request = observe
    for n, (case, legacy_code, legacy_reason, transient) in enumerate(TABLE):
        patches.clear()
        if case == "unreachable":
            gw.sim.faults.down()
        elif case == "timeout":
            gw.sim.faults.latency(1.0)
        else:
            code, reason = _code_reason(case)
            gw.sim.faults.fail_next(10, code, method="PATCH", path="/tfjobs/", reason=reason)
        try:
            response = await gw.client.patch(url, json={"description": f"try {n}"}, headers=USER)
            body = await response.json()
        finally:
            gw.sim.faults.clear()
        assert (response.status, body["reason"]) == (legacy_code, legacy_reason), (case, body)
        assert body["message"].startswith("cluster c1: "), (case, body)
        assert body["details"]["requestId"] == response.headers["X-Request-Id"]
        if case[0].isdigit():
            assert body["details"]["clusterStatus"]["code"] == _code_reason(case)[0], case
            assert len(patches) == (2 if transient else 1), (case, patches)
        elif case == "timeout":
            assert len(patches) == 2, (case, patches)
        if legacy_code == 429 or case.startswith("503"):
            assert response.headers.get("Retry-After"), case
    # And the job is still as it was: nothing half-applied.
    job = await (await gw.client.get(url, headers=USER)).json()
    assert job["spec"]["description"] == created["spec"]["description"]


async def test_cluster_calls_carry_the_request_id(gateway: Gateway) -> None:
    gw = gateway
    seen: list[tuple[str, str | None]] = []
    gw.sim.server.on_request = lambda request: seen.append((request.method, request.headers.get("X-Request-ID")))
    with capture_logs() as logs:
        gw.sim.faults.fail_next(1, 409, method="POST", path="/tfjobs", reason="Conflict")
        refused = await gw.client.post(gw.jobs_url(), json=minimal("rid"), headers={**USER, "X-Request-Id": "rid-1"})
        assert refused.status == 409
        created = await gw.client.post(gw.jobs_url(), json=minimal("rid"), headers={**USER, "X-Request-Id": "rid-2"})
        assert created.status == 200
    posts = [rid for method, rid in seen if method == "POST"]
    assert posts == ["rid-1", "rid-2"]
    refusal = [e for e in logs if e["event"] == "cluster call refused"]
    assert refusal and refusal[0]["request_id"] == "rid-1" and refusal[0]["code"] == 409
    # Background calls (the watch) carry none: they are nobody's request.
    assert any(method == "GET" and rid is None for method, rid in seen)


async def test_a_request_id_is_taken_when_sane_else_made_and_the_cluster_sees_the_same(gateway: Gateway) -> None:
    gw = gateway
    seen: list[str | None] = []
    gw.sim.server.on_request = lambda request: seen.append(request.headers.get("X-Request-ID")) \
        if request.method == "POST" else None
    for n, (given, kept) in enumerate([("Trace.id_42-x", True), ("x" * 65, False), ("has space", False),
                                        ("semi;colon", False), ("", False)]):
        response = await gw.client.post(gw.jobs_url(), json=minimal(f"rid{n}"),
                                        headers={**USER, "X-Request-Id": given})
        assert response.status == 200
        answered = response.headers["X-Request-Id"]
        if kept:
            assert answered == given
        else:
            assert answered != given and len(answered) == 32 and int(answered, 16) >= 0
        assert seen[-1] == answered  # the cluster call carried the id the client was told
