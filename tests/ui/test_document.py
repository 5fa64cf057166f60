"""The dashboard's routes keep to the API document too: schemathesis (bounded, derandomized) calls every
dashboard operation of a live gateway without a session, as anyone on the network can: no 5xx, and only
the documented status codes, content types and bodies (303 to sign in, 401, 403, 405 in the legacy body)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.live import LiveGateway


@pytest.fixture(scope="module")
def live_ui() -> Iterator[LiveGateway]:
    gateway = LiveGateway(ui={"enabled": True})
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def test_the_dashboard_keeps_to_the_document(live_ui: LiveGateway) -> None:
    base = f"http://127.0.0.1:{live_ui.port}"
    schema = schemathesis.openapi.from_url(f"{base}/api/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith("/ui"):
            continue

        @settings(max_examples=5, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def keeps_to_the_document(case: Any) -> None:
            case.call_and_validate(base_url=base, checks=checks, allow_redirects=False)
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1

        keeps_to_the_document()
    assert len(calls) >= 14, calls  # every dashboard operation, HEAD included, was exercised
