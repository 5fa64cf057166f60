"""URL table of the legacy API (DESIGN §1).

Canonical: `/api/v1alpha1/clusters/{cid}/partitions/{partition}/tfjobs[/{id}]`; `v1alpha2` and the
singular `tfjob` are aliases served by the same handlers. Plus `/api/version`, `/api/ping` (readiness),
`/healthz` (liveness) and `/metrics`. HEAD is answered wherever GET is (headers only). Other methods on
these paths answer 405 (legacy error body).
"""

from __future__ import annotations

from aiohttp import web

from gateway.web import handlers

API_VERSION_PATTERN = "{version:v1alpha[12]}"
KIND_PATTERN = "{kind:tfjobs?}"
COLLECTION = f"/api/{API_VERSION_PATTERN}/clusters/{{cid}}/partitions/{{partition}}/{KIND_PATTERN}"
ITEM = COLLECTION + "/{id}"


def add_routes(app: web.Application) -> None:
    """Register every route on `app`."""
    app.router.add_get("/api/version", handlers.version)
    app.router.add_get("/api/ping", handlers.ping)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/metrics", handlers.metrics)
    collection = app.router.add_resource(COLLECTION, name="tfjobs")
    collection.add_route("GET", handlers.list_jobs)
    collection.add_route("HEAD", handlers.list_jobs)
    collection.add_route("POST", handlers.create_job)
    item = app.router.add_resource(ITEM, name="tfjob")
    item.add_route("GET", handlers.get_job)
    item.add_route("HEAD", handlers.get_job)
    item.add_route("PATCH", handlers.update_job)
    item.add_route("DELETE", handlers.delete_job)
