"""`/api/openapi.json`: the OpenAPI 3.1 document of the API, generated from the route table and models.

Contract: `openapi_document(settings)` builds the document from `gateway.web.routes.ROUTES` (every served
route and alias, with HEAD beside each GET; the dashboard's only with `ui.enabled`, under its cookie scheme) and the pydantic models of `gateway.web.schemas` (components), with
the legacy error body on every error code a route may give, the `X-User` header, and the security
scheme of the configured auth mode (a bearer token from the OIDC issuer; none in the demo). Nothing in
it is written by hand but the prose.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.config import Settings
from gateway.version import VERSION
from gateway.web import schemas
from gateway.web.routes import Route, served_routes
from gateway.web.ui.session import CSRF_HEADER, SESSION_COOKIE

_REF = "#/components/schemas/{model}"
_REASONS = {400: "Bad request: invalid body, header or field (details.fields lists the paths)",
            401: "A valid bearer token (the dashboard: a session) is required", 403: "Not allowed", 404: "No such cluster, job or path",
            405: "Method not allowed here", 408: "The body did not arrive in time",
            409: "Name taken, or the change is not allowed now (a log: the replica has no pod yet)",
            410: "Gone: the replica's pod was removed (the message gives its last state)", 413: "Body too large",
            415: "Body is not JSON", 429: "Too many writes (Retry-After)", 502: "The cluster failed",
            503: "Redis, the cluster or the identity provider is away (Retry-After)",
            504: "The cluster did not answer in time"}
_PATH_PARAMETERS = {
    "cid": "The cluster id (from the configuration).",
    "partition": "The partition (a Kubernetes namespace, possibly mapped per cluster).",
    "id": "The job id (12 hex digits).",
}


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The API document for a gateway configured with `settings`."""
    models: list[type[BaseModel]] = [schemas.Job, schemas.JobList, schemas.JobRequest, schemas.ErrorBody,
                                     schemas.Version, schemas.Health, schemas.Ping, schemas.EventList]
    if settings.ui.enabled:
        models += [schemas.UiSession, schemas.UiJobList]
    _, definitions = models_json_schema([(m, "validation" if m is schemas.JobRequest else "serialization")
                                         for m in models], ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in served_routes(ui=settings.ui.enabled):
        for path in route.documented_paths():
            item = paths.setdefault(path, {})
            operation = _operation(route, path, settings, alias=path != route.documented_paths()[0])
            item[route.method.lower()] = operation
            if route.method == "GET":
                item["head"] = {**operation, "operationId": operation["operationId"] + "Head",
                                "summary": operation["summary"] + " (headers only)",
                                "responses": {code: {"description": answer["description"]}
                                              for code, answer in operation["responses"].items()}}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "clever-gateway: Clever tfjob-admin API", "version": VERSION,
                 "description": "The legacy tfjob-admin API (flat JSON jobs) served over Kubernetes training "
                                "operators. Every success is 200; every error has one body (ErrorBody)."},
        "paths": paths,
        "components": {"schemas": definitions.get("$defs", {})},
    }
    schemes: dict[str, Any] = {}
    if settings.auth.mode == "oidc":
        issuer = settings.auth.oidc.issuer if settings.auth.oidc is not None else ""
        schemes["bearer"] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                             "description": f"An ID or access token from the OIDC issuer {issuer}."}
    if settings.ui.enabled:
        schemes["session"] = {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                              "description": "The dashboard's session (sign in at /ui/login); writes also send "
                                             f"its CSRF token (GET /ui/api/session) in {CSRF_HEADER}."}
    if schemes:
        document["components"]["securitySchemes"] = schemes
    return document


def _operation(route: Route, path: str, settings: Settings, *, alias: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation + (_alias_suffix(path) if alias else ""),
        "summary": route.summary,
        "tags": ["dashboard" if route.ui else "jobs" if route.authenticated else "service"],
        "parameters": [{"name": name, "in": "path", "required": True, "description": text,
                        "schema": {"type": "string", "pattern": r"^[^/]+$"}}
                       for name, text in _PATH_PARAMETERS.items() if "{" + name + "}" in path],
        "responses": {"200": _success(route)},
    }
    operation["parameters"] += [{"name": q.name, "in": "query", "required": False, "description": q.description,
                                 "schema": q.schema} for q in route.query]
    if route.session:
        operation["security"] = [{"session": []}]
        if route.method not in ("GET", "HEAD"):
            operation["parameters"].append({"name": CSRF_HEADER, "in": "header", "required": True,
                                            "description": "The session's CSRF token (GET /ui/api/session).",
                                            "schema": {"type": "string"}})
    if route.form:
        operation["requestBody"] = {"required": True, "content": {"application/x-www-form-urlencoded": {
            "schema": {"type": "object", "properties": {name: {"type": "string"} for name in route.form}}}}}
    if route.redirect:
        operation["responses"]["303"] = {"description": "See Other: to the sign-in, the issuer or the page "
                                                        "asked for (Location)"}
    if route.authenticated:
        operation["parameters"].append({
            "name": "X-User", "in": "header", "required": settings.auth.mode == "none",
            "description": "The acting user. With OIDC: omit it, or give the token's user (admins may name "
                           "another user).", "schema": {"type": "string"}})
        if route.operation == "listJobs":
            operation["parameters"].append({"name": "user", "in": "query", "required": False,
                                            "description": "Admins and partition readers: whose jobs (`*` all).",
                                            "schema": {"type": "string"}})
        if settings.auth.mode == "oidc":
            operation["security"] = [{"bearer": []}]
    if route.request is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": _REF.format(model=route.request.__name__)}}}}
    for code in route.errors:
        operation["responses"][str(code)] = {"description": _REASONS[code], "content": {"application/json": {
            "schema": {"$ref": _REF.format(model="ErrorBody")}}}}
    if route.authenticated:
        operation["responses"]["405"] = {"description": _REASONS[405], "content": {"application/json": {
            "schema": {"$ref": _REF.format(model="ErrorBody")}}}}
    return operation


def _success(route: Route) -> dict[str, Any]:
    if route.content_type != "application/json":
        return {"description": route.summary, "content": {route.content_type: {"schema": {"type": "string"}}}}
    if route.answer is None:
        return {"description": "The answer", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {"description": route.summary, "content": {"application/json": {
        "schema": {"$ref": _REF.format(model=route.answer.__name__)}}}}


def _alias_suffix(path: str) -> str:
    version = "V1alpha2" if "/v1alpha2/" in path else ""
    singular = "Singular" if path.endswith("/tfjob") or "/tfjob/" in path else ""
    return version + singular
