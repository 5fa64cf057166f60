"""Tracing with the real OpenTelemetry SDK: one server span per request continuing the caller's trace, a
client span per cluster call and per Redis operation, the traceparent the cluster receives; OTLP/HTTP export
configured by the OTEL_* variables alone, to a local receiver; off without an endpoint."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway import tracing
from gateway.config import ConfigError
from tests.conftest import CLUSTER, Gateway, wait_until
from tests.service.seed_bodies import minimal

USER = {"X-User": "alice"}
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()


def _hex(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


async def test_a_request_is_one_trace_down_to_the_cluster_and_redis(
        spans: InMemorySpanExporter, gateway: Gateway) -> None:
    gw = gateway
    received: list[str | None] = []

    def observe(request: web.Request) -> None:
        if request.method == "POST":
            received.append(request.headers.get("traceparent"))

    gw.sim.server.on_request = observe
    response = await gw.client.post(gw.jobs_url(), json=minimal("traced"),
                                    headers={**USER, "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
    assert response.status == 200
    finished = spans.get_finished_spans()
    in_trace = [s for s in finished if _hex(s)[0] == CALLER_TRACE]

    servers = [s for s in in_trace if s.kind == SpanKind.SERVER]
    assert len(servers) == 1
    server = servers[0]
    assert server.name == "POST /api/{version}/clusters/{cid}/partitions/{partition}/{kind}"
    assert server.parent is not None and format(server.parent.span_id, "016x") == CALLER_SPAN
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 200
    assert server.attributes["clever.request_id"] == response.headers["X-Request-Id"]

    creates = [s for s in in_trace if s.kind == SpanKind.CLIENT and s.name == "POST create"]
    assert len(creates) == 1
    create = creates[0]
    assert create.parent is not None and create.parent.span_id == server.get_span_context().span_id
    assert create.attributes is not None and create.attributes["k8s.cluster.name"] == CLUSTER
    assert create.attributes["http.response.status_code"] == 201
    # The cluster received the create's own span as the parent of whatever it does.
    assert received == [f"00-{CALLER_TRACE}-{_hex(create)[1]}-01"]

    redis = {s.name for s in in_trace if s.kind == SpanKind.CLIENT and s.name.startswith("redis ")}
    assert "redis put" in redis, redis
    assert all(s.parent is not None and s.parent.span_id == server.get_span_context().span_id
               for s in in_trace if s.name.startswith("redis "))


async def test_a_request_without_traceparent_starts_a_trace_and_errors_mark_spans(
        spans: InMemorySpanExporter, gateway: Gateway) -> None:
    gw = gateway
    gw.sim.faults.fail_next(1, 409, method="POST", path="/tfjobs", reason="Conflict")
    response = await gw.client.post(gw.jobs_url(), json=minimal("refused"), headers=USER)
    assert response.status == 409
    finished = spans.get_finished_spans()
    server = next(s for s in finished if s.kind == SpanKind.SERVER and s.name.startswith("POST "))
    assert server.parent is None
    create = next(s for s in finished if s.name == "POST create")
    assert _hex(create)[0] == _hex(server)[0]
    assert not create.status.is_ok  # the cluster refused it
    assert server.status.is_unset  # a 4xx is the client's, not the server's error


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A minimal OTLP/HTTP traces endpoint (in a thread of its own: the exporter's flush at shutdown
    blocks the event loop)."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.bodies.append((self.path, self.headers.get("Content-Type"), self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def otlp_receiver() -> Iterator[Any]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


async def test_otlp_http_export_from_the_otel_variables(
        monkeypatch: pytest.MonkeyPatch, otlp_receiver: Any,
        make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{otlp_receiver.server_address[1]}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # milliseconds between batches
    try:
        gw = await make_gateway()
        assert tracing.enabled()
        assert (await gw.client.post(gw.jobs_url(), json=minimal("exported"), headers=USER)).status == 200

        async def exported() -> set[str]:
            names: set[str] = set()
            for path, content_type, body in list(otlp_receiver.bodies):
                assert path == "/v1/traces" and content_type == "application/x-protobuf"
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    assert attributes["service.name"] == "gateway-under-test"
                    for scope in resource_spans.scope_spans:
                        names |= {span.name for span in scope.spans}
            return names if {"POST create", "redis put"} <= names else set()

        names = await wait_until(exported)
        assert "POST /api/{version}/clusters/{cid}/partitions/{partition}/{kind}" in names
    finally:
        tracing.shutdown()


def test_configuration_is_the_otel_variables_only() -> None:
    assert tracing.configure({}) is False  # no endpoint: off
    assert tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                              "OTEL_SDK_DISABLED": "true"}) is False
    assert tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                              "OTEL_TRACES_EXPORTER": "none"}) is False
    assert not tracing.enabled()
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert not tracing.enabled()
