"""Watch streams: one watch request's events, as typed values.

Contract: `watch_events(transport, ref, resource_version=, label_selector=, timeout_seconds=)` is an async
generator over one watch request from `resource_version` (bookmarks allowed): it yields `WatchEvent`s
(ADDED, MODIFIED, DELETED, BOOKMARK) until the server ends the stream, and raises `WatchExpired` when the
resourceVersion is too old (HTTP 410 or a 410 ERROR event: relist, then watch again) and
`ClusterApiError` for any other ERROR event. List-then-watch, resume and relist are the caller's loop
(`gateway.workers.sync`). The stream is always released, also when the consumer stops early.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from gateway.kube.errors import ClusterApiError, KubeStatus, WatchExpired
from gateway.kube.refs import ObjectRef
from gateway.kube.transport import Transport

log = structlog.get_logger(__name__)

_EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")
# A watch the server ends after timeoutSeconds may stay silent until then; allow it that long and a margin.
_READ_MARGIN_SECONDS = 30


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch line: ADDED / MODIFIED / DELETED / BOOKMARK with its object."""

    type: str
    object: dict[str, Any]

    @property
    def resource_version(self) -> str | None:
        """The object's resourceVersion (bookmarks carry only this)."""
        meta = self.object.get("metadata")
        return meta.get("resourceVersion") if isinstance(meta, dict) else None


async def watch_events(transport: Transport, ref: ObjectRef, *, resource_version: str,
                       label_selector: str | None = None,
                       timeout_seconds: int = 300) -> AsyncGenerator[WatchEvent, None]:
    """The events of one watch request (see module docstring)."""
    cluster = transport.cluster
    query = {"watch": "1", "allowWatchBookmarks": "true", "resourceVersion": resource_version,
             "timeoutSeconds": str(timeout_seconds)}
    if label_selector:
        query["labelSelector"] = label_selector
    lines = transport.stream_lines(ref.collection().path, verb="watch", query=query,
                                   read_timeout=timeout_seconds + _READ_MARGIN_SECONDS)
    try:
        async for line in lines:
            try:
                event = orjson.loads(line)
            except ValueError:
                log.warning("undecodable watch line skipped", cluster=cluster, path=ref.path)
                continue
            kind = event.get("type") if isinstance(event, dict) else None
            obj = event.get("object") if isinstance(event, dict) else None
            if not isinstance(obj, dict):
                continue
            if kind == "ERROR":
                status = KubeStatus.from_object(500, obj)
                if status.code == 410:
                    raise WatchExpired(cluster, status)
                raise ClusterApiError(cluster, status)
            if kind in _EVENT_TYPES:
                yield WatchEvent(type=str(kind), object=obj)
    except WatchExpired:
        raise
    except ClusterApiError as e:
        if e.status.code == 410:  # the watch request itself answered 410
            raise WatchExpired(cluster, e.status) from e
        raise
    finally:
        await lines.aclose()


__all__ = ["WatchEvent", "watch_events"]
