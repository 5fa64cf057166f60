"""The read model: each job stored as the bytes a legacy client is sent, rendered once when it changes.

A job's Redis hash (`Keys.job`) holds:

    v   the legacy object without its status and closing brace: b'{"metadata":{…},"spec":{…}'
    s   the legacy `status` object: b'{"phase":…,"replicas":[…]}'
    o   the owner (for the access check, without parsing anything)
    p   the pending outbox operation: "", "create" or "delete"
    t   when the status was observed (epoch seconds; the sync and API reads keep the newest)
    r   the rest of the record: b'{"ns":<namespace>,"obj":<object name>}'

A GET answers `v + b',"status":' + s + b'}'`; a LIST joins those (one script call per batch reads the
pairs, the replica joins them).
Writes render with the translators' renderer (`translators.clever.render_*`) and encode with orjson;
nothing on the read path parses or renders. The record a write needs is decoded back from `v` and
`r` (`translators.clever.spec_from_view` is the exact inverse of the renderer), so the spec is stored
once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson
import structlog

from translators.backends import from_cluster_object
from translators.clever import identity_from_view, render_metadata, render_spec, render_status, spec_from_view
from translators.errors import NotTranslatable
from translators.spec import JobIdentity, JobSpec, JobStatus

log = structlog.get_logger(__name__)

STATUS_JOIN = b',"status":'
FIELDS = ("v", "s", "o", "p", "t", "r")


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as the gateway knows it. `pending` is the operation waiting in the outbox, if any."""

    spec: JobSpec
    identity: JobIdentity
    namespace: str
    object_name: str
    pending: str | None = None  # "create" | "delete" | None

    def with_pending(self, pending: str | None) -> JobRecord:
        """The same record with another pending operation."""
        return replace(self, pending=pending)


@dataclass(frozen=True, slots=True)
class StoredJob:
    """What a read finds in a job's hash: the answer's bytes and what the gateway checks before sending it."""

    owner: str
    pending: str | None
    observed_at: float
    body: bytes


def view_prefix(spec: JobSpec, identity: JobIdentity) -> bytes:
    """`{"metadata":…,"spec":…` (no status, no closing brace)."""
    return orjson.dumps({"metadata": render_metadata(spec, identity),
                         "spec": render_spec(spec, partition=identity.partition)})[:-1]


def status_bytes(status: JobStatus) -> bytes:
    """The legacy status object."""
    return orjson.dumps(render_status(status))


def job_bytes(prefix: bytes, status: bytes) -> bytes:
    """A whole legacy job object from its two stored parts."""
    return prefix + STATUS_JOIN + status + b"}"


def render(record: JobRecord, status: JobStatus) -> bytes:
    """A whole legacy job object for a record and status (answers of writes)."""
    return job_bytes(view_prefix(record.spec, record.identity), status_bytes(status))


def join_views(parts: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Whole legacy job objects joined with commas, from their stored (prefix, status) parts."""
    return b",".join(job_bytes(prefix, status) for prefix, status in parts)


def list_bytes(count: int, joined_items: bytes) -> bytes:
    """The legacy list object around items already joined with commas."""
    return b'{"metadata":{"total":%d},"items":[%s]}' % (count, joined_items)


def record_fields(record: JobRecord) -> dict[str, bytes | str]:
    """The hash fields of a record (not its status)."""
    return {"v": view_prefix(record.spec, record.identity), "o": record.identity.owner,
            "p": record.pending or "", "r": orjson.dumps({"ns": record.namespace, "obj": record.object_name})}


def status_fields(status: JobStatus, observed_at: float) -> dict[str, bytes | str]:
    """The hash fields of a status."""
    return {"s": status_bytes(status), "t": repr(observed_at)}


def decode_record(fields: list[Any]) -> JobRecord:
    """A record from its hash fields in `FIELDS` order; NotTranslatable when damaged."""
    prefix, _status, _owner, pending, _observed, rest = fields
    if prefix is None or rest is None:
        raise NotTranslatable("incomplete job record")
    try:
        view = orjson.loads(bytes(prefix) + b"}")
        extra = orjson.loads(rest)
        return JobRecord(spec=spec_from_view(view["spec"]), identity=identity_from_view(view["metadata"]),
                         namespace=str(extra["ns"]), object_name=str(extra["obj"]),
                         pending=_text(pending) or None)
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise NotTranslatable(f"damaged job record: {e}") from e


def decode_stored(fields: list[Any]) -> StoredJob | None:
    """What a GET needs from the hash fields `v s o p t` (None when the job has no record)."""
    prefix, status, owner, pending, observed = fields
    if prefix is None or status is None or owner is None:
        return None
    try:
        observed_at = float(observed) if observed is not None else 0.0
    except ValueError:
        observed_at = 0.0
    return StoredJob(owner=_text(owner), pending=_text(pending) or None, observed_at=observed_at,
                     body=job_bytes(bytes(prefix), bytes(status)))


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def record_from_object(obj: dict[str, Any], cluster_id: str) -> JobRecord | None:
    """The record a managed cluster object describes (from its labels and annotations), or None when it
    is not ours or damaged (logged)."""
    try:
        spec, identity = from_cluster_object(obj)
    except NotTranslatable as e:
        log.warning("cluster object not translatable, ignored", cluster=cluster_id, error=str(e))
        return None
    metadata = obj.get("metadata") or {}
    namespace, name = metadata.get("namespace"), metadata.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        return None
    if identity.cluster != cluster_id:
        identity = replace(identity, cluster=cluster_id)
    return JobRecord(spec=spec, identity=identity, namespace=namespace, object_name=name)
