"""Tracing with OpenTelemetry: optional (the `tracing` extra), configured by the standard `OTEL_*` variables only.

Contract:
- `configure(environ)` (the app factory calls it) turns tracing on when the opentelemetry packages are
  installed, `OTEL_SDK_DISABLED` is not true, `OTEL_TRACES_EXPORTER` is unset, `otlp` or `console`, and
  (for otlp) an endpoint is set: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`.
  Spans go out over OTLP/HTTP (protobuf) in batches; the exporter reads its own variables (headers,
  timeout, certificate, compression), the resource `OTEL_SERVICE_NAME` (default `clever-gateway`) and
  `OTEL_RESOURCE_ATTRIBUTES`; the sampler `OTEL_TRACES_SAMPLER`/`_ARG`. Otherwise tracing is off and
  every helper here costs one check. A setting the gateway cannot honour (another exporter, the gRPC
  protocol, tracing asked for without the extra installed) is a `ConfigError` naming the variable.
- `shutdown()` flushes and stops (the app's cleanup); `install(provider)` is for tests (an in-memory
  exporter), `install(None)` turns tracing off again.
- Spans: `server_span` (one per HTTP request, continuing the caller's `traceparent`), `client_span` (one
  per cluster call and per Redis operation); `inject(headers)` adds the current `traceparent` to a
  cluster call's headers. The process-wide OpenTelemetry globals are left alone: a library that traces
  on its own does not end up in the gateway's pipeline, and tests can swap providers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import structlog

from gateway.config import ConfigError
from gateway.version import VERSION

log = structlog.get_logger(__name__)

SERVICE_NAME = "clever-gateway"


class _Tracing:
    """The one tracer of the process, or None (off)."""

    tracer: Any = None
    provider: Any = None


_state = _Tracing()


def enabled() -> bool:
    """Whether spans are recorded."""
    return _state.tracer is not None


def configure(environ: Mapping[str, str]) -> bool:
    """Turn tracing on per the `OTEL_*` variables of `environ` (see module docstring); whether it is on."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter_name = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter_name == "none":
        return False
    if exporter_name not in ("otlp", "console"):
        raise ConfigError(f"OTEL_TRACES_EXPORTER: {exporter_name!r} is not supported here (otlp, console or none)")
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if exporter_name == "otlp" and not endpoint:
        return False  # the default when nothing is configured: no tracing, no connection attempts
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf")
    if exporter_name == "otlp" and protocol != "http/protobuf":
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported here (http/protobuf)")
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError as e:
        raise ConfigError("OTEL_EXPORTER_OTLP_ENDPOINT is set but the tracing packages are not installed "
                          "(pip install 'clever-gateway[tracing]')") from e
    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout, TLS: its own OTEL_EXPORTER_OTLP_* reading
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME,
                                "service.version": VERSION})
    provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER, read by the SDK
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    log.info("tracing on", exporter=exporter_name, endpoint=endpoint if exporter_name == "otlp" else None)
    return True


def install(provider: Any) -> None:
    """Trace with `provider` (an SDK `TracerProvider`), None: off. For `configure` and tests."""
    _state.provider = provider
    _state.tracer = provider.get_tracer("clever-gateway", VERSION) if provider is not None else None


def shutdown() -> None:
    """Export what is buffered and stop."""
    provider = _state.provider
    install(None)
    if provider is not None:
        provider.shutdown()


@contextmanager
def server_span(name: str, headers: Mapping[str, str], attributes: dict[str, Any]) -> Iterator[Any]:
    """A SERVER span, current for the block, child of the caller's `traceparent` when it sent one."""
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    parent = propagate.extract(headers)
    with _state.tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER,
                                             attributes=attributes) as span:
        yield span


def client_span(name: str, attributes: dict[str, Any]) -> AbstractContextManager[Any]:
    """A CLIENT span, current for the block (a no-op when tracing is off); an exception marks it failed."""
    tracer = _state.tracer
    if tracer is None:
        return _NOOP
    from opentelemetry.trace import SpanKind

    span: AbstractContextManager[Any] = tracer.start_as_current_span(name, kind=SpanKind.CLIENT,
                                                                     attributes=attributes)
    return span


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's `traceparent` (and `tracestate`) to outgoing headers."""
    if _state.tracer is not None:
        from opentelemetry import propagate

        propagate.inject(headers)


def set_status_code(span: Any, code: int, *, server: bool) -> None:
    """Record an HTTP status on a span: 5xx is an error for a server span, 4xx too for a client span."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("http.response.status_code", code)
    if code >= 500 or (not server and code >= 400):
        span.set_status(Status(StatusCode.ERROR))


class _NoSpan:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NOOP = _NoSpan()
