"""The route table of the API (DESIGN §1, §7): what is served, and what `/api/openapi.json` documents.

Canonical: `/api/v1alpha1/clusters/{cid}/partitions/{partition}/tfjobs[/{id}]`; `v1alpha2` and the
singular `tfjob` are aliases served by the same handlers (the document lists each alias). Plus
`/api/version`, `/api/ping` (readiness), `/healthz` (liveness), `/metrics` and `/api/openapi.json`.
HEAD is answered wherever GET is (headers only). Other methods on these paths answer 405 (legacy error
body). Each `Route` names its request and answer models (gateway.web.schemas) and the error codes it
may give, so the document is generated from the same table that registers the handlers.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel

from gateway.web import handlers, schemas

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_VERSIONS = ("v1alpha1", "v1alpha2")
KINDS = ("tfjobs", "tfjob")
API_VERSION_PATTERN = "{version:v1alpha[12]}"
KIND_PATTERN = "{kind:tfjobs?}"
COLLECTION = f"/api/{API_VERSION_PATTERN}/clusters/{{cid}}/partitions/{{partition}}/{KIND_PATTERN}"
ITEM = COLLECTION + "/{id}"

# Errors every job route may answer, and those only writes give.
_JOB_ERRORS = (400, 401, 403, 404, 503)
_WRITE_ERRORS = (*_JOB_ERRORS, 408, 409, 413, 415, 429, 502, 504)


@dataclass(frozen=True, slots=True)
class Route:
    """One operation: method, path template, handler, and what the document says of it."""

    method: str
    path: str
    handler: Handler
    operation: str
    summary: str
    answer: type[BaseModel] | None = None
    request: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    authenticated: bool = False
    content_type: str = "application/json"

    def documented_paths(self) -> list[str]:
        """The concrete paths of this route, one per alias (OpenAPI has no regex path templates)."""
        if API_VERSION_PATTERN not in self.path:
            return [self.path]
        return [self.path.replace(API_VERSION_PATTERN, version).replace(KIND_PATTERN, kind)
                for version, kind in itertools.product(API_VERSIONS, KINDS)]


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/version", handlers.version, "getVersion", "The gateway's version", schemas.Version),
    Route("GET", "/api/ping", handlers.ping, "ping", "Readiness: whether the gateway can serve", schemas.Ping,
          errors=(503,)),
    Route("GET", "/healthz", handlers.healthz, "health", "Liveness (no dependencies)", schemas.Health),
    Route("GET", "/metrics", handlers.metrics, "metrics", "Prometheus metrics",
          content_type="text/plain"),
    Route("GET", "/api/openapi.json", handlers.openapi, "openapi", "This document"),
    Route("GET", COLLECTION, handlers.list_jobs, "listJobs", "List the partition's jobs the caller may see",
          schemas.JobList, errors=_JOB_ERRORS, authenticated=True),
    Route("POST", COLLECTION, handlers.create_job, "createJob", "Create a job", schemas.Job,
          request=schemas.JobRequest, errors=_WRITE_ERRORS, authenticated=True),
    Route("GET", ITEM, handlers.get_job, "getJob", "One job", schemas.Job, errors=_JOB_ERRORS,
          authenticated=True),
    Route("PATCH", ITEM, handlers.update_job, "updateJob",
          "Change a job (description and some run-policy fields in place; the rest recreates it)",
          schemas.Job, request=schemas.JobRequest, errors=_WRITE_ERRORS, authenticated=True),
    Route("DELETE", ITEM, handlers.delete_job, "deleteJob", "Delete a job (answers its last state)",
          schemas.Job, errors=_WRITE_ERRORS, authenticated=True),
)


def add_routes(app: web.Application) -> None:
    """Register every route on `app` (HEAD beside each GET)."""
    resources: dict[str, web.Resource] = {}
    for route in ROUTES:
        resource = resources.get(route.path)
        if resource is None:
            resource = resources[route.path] = app.router.add_resource(route.path, name=route.operation)
        resource.add_route(route.method, route.handler)
        if route.method == "GET":
            resource.add_route("HEAD", route.handler)
