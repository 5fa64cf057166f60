"""The route table of the API (DESIGN §1, §7): what is served, and what `/api/openapi.json` documents.

Canonical: `/api/v1alpha1/clusters/{cid}/partitions/{partition}/tfjobs[/{id}]` and a job's diagnostics
`…/tfjobs/{id}/logs` and `…/tfjobs/{id}/events`; `v1alpha2` and the singular `tfjob` are aliases served by
the same handlers (the document lists each alias). Plus
`/api/version`, `/api/ping` (readiness), `/healthz` (liveness), `/metrics` and `/api/openapi.json`. With
`ui.enabled`, the dashboard under `/ui` (pages, sign-in, assets, and `/ui/api/...`: the same handlers
behind the session cookie instead of the bearer token).
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

from gateway.version import API_VERSIONS
from gateway.web import diagnostics, handlers, schemas
from gateway.web.ui import handlers as ui_handlers

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KINDS = ("tfjobs", "tfjob")
API_VERSION_PATTERN = "{version:" + "|".join(API_VERSIONS) + "}"
KIND_PATTERN = "{kind:tfjobs?}"
COLLECTION = f"/api/{API_VERSION_PATTERN}/clusters/{{cid}}/partitions/{{partition}}/{KIND_PATTERN}"
ITEM = COLLECTION + "/{id}"
LOGS = ITEM + "/logs"
EVENTS = ITEM + "/events"
UI_JOB_PAGE = "/ui/jobs/{cid}/{partition}/{id}"
UI_ITEM = "/ui/api/clusters/{cid}/partitions/{partition}/tfjobs/{id}"

# Errors every job route may answer, and those only writes give.
_JOB_ERRORS = (400, 401, 403, 404, 503)
_WRITE_ERRORS = (*_JOB_ERRORS, 408, 409, 413, 415, 429, 502, 504)
# Diagnostics read the cluster: its failures, and a replica with no log (409 not yet, 410 no longer).
_DIAGNOSTIC_ERRORS = (*_JOB_ERRORS, 502, 504)
_LOG_ERRORS = (*_DIAGNOSTIC_ERRORS, 409, 410)


@dataclass(frozen=True, slots=True)
class QueryParameter:
    """One documented query parameter (the handler parses it; the document says what it accepts)."""

    name: str
    description: str
    schema: dict[str, object]


_LOG_QUERY = (
    QueryParameter("replica", "Which replica, `<type>-<index>` as in the spec (worker-0, ps-1, chief-0); default: "
                   "chief-0, else worker-0. Unknown: 404 listing the job's replicas.",
                   {"type": "string", "examples": ["worker-0"]}),
    QueryParameter("tail", "Only the last N lines.", {"type": "integer", "minimum": 0, "maximum": 1_000_000}),
    QueryParameter("follow", "Stream (chunked) until the container ends, the client leaves or the configured "
                   "bounds (limits.logFollowMaxBytes, limits.logFollowMaxSeconds) are reached.",
                   {"type": "boolean"}),
)


_LIST_QUERY = (
    QueryParameter("phase", "Only jobs in these legacy phases (comma-separated, or the parameter repeated): queued, "
                   "pending, running, restarting, succeeded, failed, suspended, terminating. Unknown: 400.",
                   {"type": "string", "examples": ["succeeded,failed"]}),
    QueryParameter("since", "Only jobs created or finished at or after this time: RFC 3339 with its offset, or unix "
                   "seconds. Invalid: 400.", {"type": "string", "examples": ["2024-05-01T12:00:00Z", "1714564800"]}),
)


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
    query: tuple[QueryParameter, ...] = ()
    ui: bool = False
    """Part of the dashboard: served (and documented) only with `ui.enabled`."""
    session: bool = False
    """Authenticated by the dashboard's session cookie (writes also need the X-CSRF-Token header)."""
    redirect: bool = False
    """May answer 303 See Other (to sign in, or after it)."""
    form: tuple[str, ...] = ()
    """Fields of an `application/x-www-form-urlencoded` request body."""

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
          schemas.JobList, errors=_JOB_ERRORS, authenticated=True, query=_LIST_QUERY),
    Route("POST", COLLECTION, handlers.create_job, "createJob", "Create a job", schemas.Job,
          request=schemas.JobRequest, errors=_WRITE_ERRORS, authenticated=True),
    Route("GET", ITEM, handlers.get_job, "getJob", "One job", schemas.Job, errors=_JOB_ERRORS,
          authenticated=True),
    Route("PATCH", ITEM, handlers.update_job, "updateJob",
          "Change a job (description and some run-policy fields in place; the rest recreates it)",
          schemas.Job, request=schemas.JobRequest, errors=_WRITE_ERRORS, authenticated=True),
    Route("DELETE", ITEM, handlers.delete_job, "deleteJob", "Delete a job (answers its last state)",
          schemas.Job, errors=_WRITE_ERRORS, authenticated=True),
    Route("GET", LOGS, diagnostics.job_logs, "getJobLogs",
          "A replica's container log as text (409: no pod yet; 410: its pod is gone, with its last state)",
          errors=_LOG_ERRORS, authenticated=True, content_type="text/plain", query=_LOG_QUERY),
    Route("GET", EVENTS, diagnostics.job_events, "getJobEvents", "The job's and its pods' Kubernetes events, "
          "oldest first", schemas.EventList, errors=_DIAGNOSTIC_ERRORS, authenticated=True),
    # The dashboard (gateway.web.ui): pages, sign-in, assets, and the JSON its pages read with the session.
    Route("GET", "/ui", ui_handlers.jobs_page, "uiJobsPage", "Dashboard: the caller's jobs (303 to sign in)",
          ui=True, redirect=True, content_type="text/html"),
    Route("GET", UI_JOB_PAGE, ui_handlers.job_page, "uiJobPage", "Dashboard: one job (303 to sign in)",
          ui=True, redirect=True, content_type="text/html"),
    Route("GET", "/ui/login", ui_handlers.login, "uiLogin", "Dashboard sign-in: 303 to the OIDC issuer "
          "(authorization code + PKCE), or the user-name prompt with auth.mode none", ui=True, redirect=True,
          content_type="text/html", errors=(502, 503)),
    Route("POST", "/ui/login", ui_handlers.login_submit, "uiLoginSubmit", "Dashboard sign-in with a user name "
          "(auth.mode none only)", ui=True, redirect=True, content_type="text/html",
          form=("user", "csrfToken", "next"), errors=(400, 403, 405, 408, 413)),
    Route("GET", "/ui/callback", ui_handlers.callback, "uiCallback", "Dashboard sign-in: the issuer's redirect "
          "back with the authorization code", ui=True, redirect=True, content_type="text/html",
          errors=(400, 401, 404, 502, 503)),
    Route("POST", "/ui/logout", ui_handlers.logout, "uiLogout", "Dashboard sign-out", ui=True, redirect=True,
          content_type="text/html", form=("csrfToken",), errors=(400, 403, 408, 413)),
    Route("GET", "/ui/static/app.js", ui_handlers.asset, "uiScript", "The dashboard's script", ui=True,
          content_type="application/javascript"),
    Route("GET", "/ui/static/app.css", ui_handlers.asset, "uiStyle", "The dashboard's style sheet", ui=True,
          content_type="text/css"),
    Route("GET", "/ui/api/session", ui_handlers.session_info, "uiSession", "The signed-in user and the CSRF "
          "token for writes", schemas.UiSession, ui=True, session=True, errors=(401,)),
    Route("GET", "/ui/api/jobs", ui_handlers.my_jobs, "uiJobs", "The caller's jobs across clusters and "
          "partitions, newest first", schemas.UiJobList, ui=True, session=True, errors=(400, 401, 503),
          query=(QueryParameter("user", "Admins: whose jobs (`*`: everyone's); default: the caller's.",
                                {"type": "string"}),)),
    Route("GET", UI_ITEM, ui_handlers.get_job, "uiGetJob", "One job (as GET of the API)", schemas.Job, ui=True,
          session=True, errors=(*_JOB_ERRORS, 401)),
    Route("DELETE", UI_ITEM, ui_handlers.delete_job, "uiDeleteJob", "Delete a job (as DELETE of the API)",
          schemas.Job, ui=True, session=True, errors=(*_WRITE_ERRORS, 401)),
    Route("GET", UI_ITEM + "/logs", ui_handlers.job_logs, "uiGetJobLogs", "A replica's container log (as the "
          "API's)", ui=True, session=True, errors=(*_LOG_ERRORS, 401), content_type="text/plain", query=_LOG_QUERY),
    Route("GET", UI_ITEM + "/events", ui_handlers.job_events, "uiGetJobEvents", "The job's events (as the "
          "API's)", schemas.EventList, ui=True, session=True, errors=(*_DIAGNOSTIC_ERRORS, 401)),
)


def served_routes(*, ui: bool) -> tuple[Route, ...]:
    """The routes a gateway serves: the dashboard's only when it is enabled."""
    return tuple(route for route in ROUTES if ui or not route.ui)


def add_routes(app: web.Application, *, ui: bool = False) -> None:
    """Register every served route on `app` (HEAD beside each GET)."""
    resources: dict[str, web.Resource] = {}
    for route in served_routes(ui=ui):
        resource = resources.get(route.path)
        if resource is None:
            resource = resources[route.path] = app.router.add_resource(route.path, name=route.operation)
        resource.add_route(route.method, route.handler)
        if route.method == "GET":
            resource.add_route("HEAD", route.handler)
