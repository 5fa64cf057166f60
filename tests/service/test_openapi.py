"""`/api/openapi.json`: a valid OpenAPI 3.1 document of every route and alias, whose models every answer
satisfies; schemathesis (bounded, derandomized) checks a live gateway against it: no 5xx, and no answer
that breaks the document (status codes, content types, bodies)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.config import load_settings
from gateway.web import schemas
from gateway.web.openapi import openapi_document
from tests.conftest import Gateway
from tests.service import rawhttp
from tests.service.live import LiveGateway
from tests.service.seed_bodies import SEED_CREATE_FLAT, minimal

USER = {"X-User": "alice"}


async def test_the_document_is_valid_and_covers_every_route_and_alias(gateway: Gateway) -> None:
    response = await gateway.client.get("/api/openapi.json")
    assert response.status == 200 and response.headers["Content-Type"].startswith("application/json")
    document = await response.json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    for version in ("v1alpha1", "v1alpha2"):
        for kind in ("tfjobs", "tfjob"):
            collection = f"/api/{version}/clusters/{{cid}}/partitions/{{partition}}/{kind}"
            assert set(paths[collection]) == {"get", "head", "post"}
            assert set(paths[collection + "/{id}"]) == {"get", "head", "patch", "delete"}
    for path in ("/api/version", "/api/ping", "/healthz", "/metrics", "/api/openapi.json"):
        assert "get" in paths[path] and "head" in paths[path]
    create = paths["/api/v1alpha1/clusters/{cid}/partitions/{partition}/tfjobs"]["post"]
    assert create["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert {"ErrorBody", "Job", "JobList", "JobRequest"} <= set(document["components"]["schemas"])
    assert "securitySchemes" not in document["components"]  # auth.mode none: no scheme to claim


def test_oidc_mode_documents_the_bearer_scheme() -> None:
    settings = load_settings(environ={}, base={
        "auth": {"mode": "oidc", "oidc": {"issuer": "https://idp.example/realms/c", "audience": "cg"}},
        "clusters": [{"id": "c1", "server": "https://k8s.example", "token": "t"}]})
    document = openapi_document(settings)
    validate(document)
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    get = document["paths"]["/api/v1alpha1/clusters/{cid}/partitions/{partition}/tfjobs/{id}"]["get"]
    assert get["security"] == [{"bearer": []}] and "401" in get["responses"]


async def test_every_answer_fits_its_model(gateway: Gateway) -> None:
    gw = gateway
    gw.sim.controllers.set_default_scenario("hold")
    created = await gw.client.post(gw.jobs_url(), json={**SEED_CREATE_FLAT, "backoffLimit": 2}, headers=USER)
    job = schemas.Job.model_validate_json(await created.read())
    url = f"{gw.jobs_url()}/{job.metadata.id}"
    schemas.Job.model_validate_json(await (await gw.client.get(url, headers=USER)).read())
    schemas.JobList.model_validate_json(await (await gw.client.get(gw.jobs_url(), headers=USER)).read())
    schemas.Job.model_validate_json(await (await gw.client.patch(url, json={"description": "x"},
                                                                 headers=USER)).read())
    schemas.Version.model_validate_json(await (await gw.client.get("/api/version")).read())
    schemas.Health.model_validate_json(await (await gw.client.get("/healthz")).read())
    schemas.Ping.model_validate_json(await (await gw.client.get("/api/ping")).read())
    refused = await gw.client.post(gw.jobs_url(), json={"name": "x"}, headers=USER)
    schemas.ErrorBody.model_validate_json(await refused.read())
    schemas.Job.model_validate_json(await (await gw.client.delete(url, headers=USER)).read())


@pytest.fixture(scope="module")
def live_api() -> Iterator[LiveGateway]:
    """A live gateway with a couple of jobs to find."""
    gateway = LiveGateway()
    gateway.start()
    try:
        for i in range(2):
            body = json.dumps(minimal(f"doc-{i}")).encode()
            path = "/api/v1alpha1/clusters/c1/partitions/clever/tfjobs"
            answer = gateway.send([rawhttp.request("POST", path, headers=USER, body=body)])
            assert answer is not None and answer.status == 200
            gateway.ids.append(answer.json()["metadata"]["id"])
        yield gateway
    finally:
        gateway.stop()


def test_the_live_gateway_keeps_to_its_document(live_api: LiveGateway) -> None:
    base = f"http://127.0.0.1:{live_api.port}"
    schema = schemathesis.openapi.from_url(f"{base}/api/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=10, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def keeps_to_the_document(case: Any) -> None:
            if case.path_parameters and case.path_parameters.get("id") in (None, ""):
                case.path_parameters["id"] = live_api.ids[0]
            headers = {"X-User": "alice", **(case.headers or {})}
            case.call_and_validate(base_url=base, headers=headers, checks=checks)
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1

        keeps_to_the_document()
    assert len(calls) >= 30, calls  # every operation of every alias was exercised
