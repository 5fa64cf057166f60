"""JobService: the legacy job operations (create/list/get/update/delete), orchestrated.

Contract (handlers call exactly these; each returns the legacy JSON object to send with 200):
- `create(principal, cluster_id=, partition=, body=)`: parse + validate (translators) → claim the name
  in Redis → create on the cluster (idempotent: deterministic name + job-id label) → record. A cluster
  4xx releases the claim and keeps nothing; an unreachable cluster (or 5xx) queues the create in the
  outbox and records the job with phase `queued`.
- `list(...)`, `get(...)`: from Redis; a status older than `limits.statusStalenessSeconds` is refreshed
  from the cluster unless that cluster's watch is live (heartbeat younger than
  `sync.fallbackAfterSeconds`). A job missing from Redis but present on the cluster is rebuilt.
- `update(...)` (DESIGN §4): unchanged → same object; description/run policy → merge patch; shape
  change → delete + create under the same id when the job is not active (pending with no running pod,
  succeeded, failed), else 409.
- `delete(...)`: delete on the cluster (already gone is fine) → drop record, indexes, name claim.
Authorization: `gateway.auth.policy`: partition access for every operation; a job the caller may not
read is reported as 404 (its existence is not revealed); readable but not writable → 403.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog

from gateway.auth import Principal
from gateway.auth.policy import PartitionAccess, can_access_job, list_owner_filter
from gateway.auth.settings import AuthSettings
from gateway.clusters import (
    PODS,
    ClusterAlreadyExists,
    ClusterClient,
    ClusterNotFound,
    ClusterRegistry,
    ObjectRef,
    is_transient,
)
from gateway.config import Settings
from gateway.errors import Conflict, Forbidden, GatewayError, NotFound, TooManyRequests
from gateway.outbox import Outbox
from gateway.store import JobChanged, JobFence, JobRecord, JobStore, ObservedStatus
from translators.backends import (
    MANAGED_SELECTOR,
    from_cluster_object,
    in_place_patch,
    job_status,
    pod_selector,
    to_cluster_object,
)
from translators.clever import (
    changed_fields,
    classify_update,
    parse_create,
    parse_update,
    render_job,
    render_list,
)
from translators.errors import NotTranslatable
from translators.labels import LABEL_JOB_ID, job_id_of, label_value
from translators.naming import namespace_for, object_name
from translators.spec import FINISHED_PHASES, JobIdentity, JobSpec, JobStatus

log = structlog.get_logger(__name__)

# Ids are made by `new_job_id` (and come back from the job-id label): a label-safe token.
JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_GONE_POLL_SECONDS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
_GONE_WAIT_LIMIT_SECONDS = 15.0


def utc_now() -> str:
    """Current time as an RFC 3339 UTC string with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_job_id() -> str:
    """A fresh job id: 12 lowercase hex digits (readable back from the object name)."""
    return uuid.uuid4().hex[:12]


def queued_status(cluster: str) -> JobStatus:
    """Status of a job accepted by the gateway but not yet by the cluster."""
    return JobStatus(phase="queued", reason="ClusterUnavailable",
                     message=f"accepted; waiting for cluster {cluster} to be reachable")


def deleting_status(cluster: str) -> JobStatus:
    """Status of a job whose delete is waiting for the cluster."""
    return JobStatus(phase="terminating", reason="DeletePending",
                     message=f"delete accepted; waiting for cluster {cluster} to be reachable")


class JobService:
    """The legacy job operations over Redis and the clusters (see module docstring)."""

    def __init__(self, *, settings: Settings, store: JobStore, clusters: ClusterRegistry, outbox: Outbox,
                 access: PartitionAccess, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._auth: AuthSettings = settings.auth
        self._store = store
        self._clusters = clusters
        self._outbox = outbox
        self._access = access
        self._clock = clock

    # ----- create

    async def create(self, principal: Principal, *, cluster_id: str, partition: str, body: object) -> dict[str, Any]:
        """Create a job; returns the legacy object (phase `pending`, or `queued` when the cluster is away)."""
        await self._admit_write(principal)
        cluster = self._clusters.get(cluster_id)
        profile = cluster.profile
        spec = parse_create(body, partition=partition, profile=profile)
        namespace = namespace_for(partition, profile)
        await self._check_partition(principal, cluster, partition, namespace, verb="create")
        now = utc_now()
        identity = JobIdentity(id=new_job_id(), owner=principal.user, cluster=cluster.id, partition=partition,
                               created=now, updated=now)
        body_object = to_cluster_object(spec, identity, profile)
        record = JobRecord(spec=spec, identity=identity, namespace=namespace,
                           object_name=object_name(spec.name, identity.id))
        await self._store.claim_name(cluster.id, partition, spec.name, identity.id)
        ref = self._job_ref(cluster, record)
        try:
            created = await cluster.create(ref, body_object, same_if_label=(LABEL_JOB_ID, label_value(identity.id)),
                                           impersonate=principal)
        except GatewayError as e:
            if is_transient(e):
                return await self._queue_create(record, principal, error=e)
            await self._store.release_name(cluster.id, partition, spec.name, identity.id)
            if isinstance(e, ClusterNotFound):  # a create finds nothing only when the namespace is missing
                raise NotFound(f"partition {partition!r} does not exist on cluster {cluster.id!r} (the cluster has "
                               f"no namespace {namespace!r})",
                               details={**e.details, "partition": partition, "namespace": namespace}) from e
            raise
        except BaseException:
            await self._store.release_name(cluster.id, partition, spec.name, identity.id)
            raise
        status = job_status(created, [], profile=profile)
        await self._store.put(record, status=status, observed_at=self._clock())
        log.info("job created", cluster=cluster.id, partition=partition, job=identity.id, owner=identity.owner,
                 object=record.object_name)
        return render_job(spec, identity, status)

    async def _queue_create(self, record: JobRecord, principal: Principal, *, error: GatewayError,
                            fence: JobFence | None = None) -> dict[str, Any]:
        queued = record.with_pending("create")
        status = queued_status(record.identity.cluster)
        await self._store.put(queued, status=status, observed_at=self._clock(), fence=fence)
        await self._outbox.enqueue("create", queued.identity, principal=principal)
        log.warning("cluster unavailable, create queued", cluster=record.identity.cluster,
                    job=record.identity.id, error=type(error).__name__)
        return render_job(record.spec, record.identity, status)

    # ----- read

    async def list(self, principal: Principal, *, cluster_id: str, partition: str,
                   requested_user: str | None = None) -> dict[str, Any]:
        """The partition's jobs the caller may see, oldest first."""
        cluster = self._clusters.get(cluster_id)
        namespace = namespace_for(partition, cluster.profile)
        await self._check_partition(principal, cluster, partition, namespace, verb="list")
        owner = list_owner_filter(principal, cluster=cluster.id, partition=partition,
                                  requested_user=requested_user, settings=self._auth)
        records = await self._store.list(cluster.id, partition, owner=owner)
        records = [r for r in records if can_access_job(
            principal, owner=r.identity.owner, cluster=cluster.id, partition=partition, write=False,
            settings=self._auth)]
        statuses = await self._store.get_statuses(cluster.id, [r.identity.id for r in records])
        if await self._needs_refresh(cluster, [statuses.get(r.identity.id) for r in records
                                               if r.pending is None]):
            statuses.update(await self._refresh_namespace(cluster, namespace, records))
        items = [render_job(r.spec, r.identity, self._visible_status(r, statuses.get(r.identity.id)))
                 for r in records]
        return render_list(items)

    async def get(self, principal: Principal, *, cluster_id: str, partition: str, job_id: str) -> dict[str, Any]:
        """One job."""
        cluster = self._clusters.get(cluster_id)
        record = await self._readable(principal, cluster, partition, job_id, verb="get")
        status = await self._current_status(cluster, record)
        return render_job(record.spec, record.identity, status)

    # ----- update

    async def update(self, principal: Principal, *, cluster_id: str, partition: str, job_id: str,
                     body: object) -> dict[str, Any]:
        """Apply a PATCH body (DESIGN §4), as the job's one writer (see `_changing`)."""
        await self._admit_write(principal)
        cluster = self._clusters.get(cluster_id)
        profile = cluster.profile
        await self._writable(principal, cluster, partition, job_id, verb="update")
        async with self._changing(cluster, job_id) as fence:
            record = await self._writable(principal, cluster, partition, job_id, verb="update")
            if record.pending is not None:
                raise Conflict(f"job {job_id} is waiting for cluster {cluster.id} ({record.pending} pending); "
                               "try again once it reached the cluster")
            new_spec = parse_update(body, current=record.spec, profile=profile)
            kind = classify_update(record.spec, new_spec, profile=profile)
            if kind == "unchanged":
                return render_job(record.spec, record.identity, await self._current_status(cluster, record))
            identity = replace(record.identity, updated=utc_now())
            if kind == "in-place":
                patch = in_place_patch(record.spec, new_spec, identity, profile)
                patched = await cluster.merge_patch(self._job_ref(cluster, record), patch, impersonate=principal)
                updated = replace(record, spec=new_spec, identity=identity)
                status = await self._status_from(cluster, job_id, patched, await self._pods(cluster, record))
                await self._store.put(updated, status=status, observed_at=self._clock(), fence=fence)
                log.info("job updated in place", cluster=cluster.id, job=job_id)
                return render_job(new_spec, identity, status)
            return await self._recreate(principal, cluster, record, new_spec, identity, fence=fence)

    def _changing(self, cluster: ClusterClient, job_id: str) -> contextlib.AbstractAsyncContextManager[JobFence]:
        """Hold the job's lock: PATCH, DELETE and the outbox change a job one at a time, so a DELETE that
        answered 200 is never undone by a recreate that was under way (it waits for it, then deletes
        what it made)."""
        return self._store.job_lock(cluster.id, job_id, wait_seconds=self._settings.limits.job_lock_wait_seconds)

    async def _recreate(self, principal: Principal, cluster: ClusterClient, record: JobRecord, new_spec: JobSpec,
                        identity: JobIdentity, *, fence: JobFence) -> dict[str, Any]:
        profile = cluster.profile
        ref = self._job_ref(cluster, record)
        current = await cluster.try_get(ref, impersonate=principal)
        pods = await self._pods(cluster, record)
        status = job_status(current, pods, profile=profile)
        running_pod = any((p.get("status") or {}).get("phase") == "Running" for p in pods)
        inactive = status.phase in FINISHED_PHASES or (status.phase == "pending" and not running_pod)
        if not inactive:
            changed = changed_fields(record.spec, new_spec)
            raise Conflict(
                f"job {record.identity.id} is {status.phase}: changing {', '.join(changed)} needs a new job object "
                "on the cluster, which is allowed only while the job is not active (pending with no running pod, "
                "succeeded or failed); wait for it to finish or delete it",
                details={"phase": status.phase, "fields": changed})
        new_body = to_cluster_object(new_spec, identity, profile)
        if current is not None:
            # Let the cluster judge the new object before the old one is gone: a dry-run create runs schema
            # validation and admission, then finds the name taken (AlreadyExists = everything else passed).
            # Any other refusal leaves the job exactly as it was.
            with contextlib.suppress(ClusterAlreadyExists):
                await cluster.create(ref, new_body, dry_run=True, impersonate=principal)
            await cluster.delete(ref, impersonate=principal)
            await self._wait_gone(cluster, ref)
        updated = replace(record, spec=new_spec, identity=identity)
        try:
            created = await cluster.create(ref, new_body, same_if_label=(LABEL_JOB_ID, label_value(identity.id)),
                                           impersonate=principal)
        except GatewayError as e:
            if is_transient(e):
                return await self._queue_create(updated, principal, error=e, fence=fence)
            raise
        new_status = job_status(created, [], profile=profile)
        try:
            await self._store.put(updated, status=new_status, observed_at=self._clock(), fence=fence)
        except JobChanged:
            # The lock lapsed under us and the job changed meanwhile (a DELETE, most likely): what this
            # request created must not outlive it.
            with contextlib.suppress(GatewayError):
                await cluster.delete(ref, impersonate=principal)
            raise
        log.info("job recreated with a new shape", cluster=cluster.id, job=identity.id)
        return render_job(new_spec, identity, new_status)

    async def _wait_gone(self, cluster: ClusterClient, ref: ObjectRef) -> None:
        """Wait until the deleted object is gone, so that the create under the same name succeeds."""
        deadline = time.monotonic() + _GONE_WAIT_LIMIT_SECONDS
        step = 0
        while await cluster.try_get(ref) is not None:
            if time.monotonic() > deadline:
                raise Conflict(f"the previous object {ref.name} is still being deleted; try again shortly")
            await asyncio.sleep(_GONE_POLL_SECONDS[min(step, len(_GONE_POLL_SECONDS) - 1)])
            step += 1

    # ----- delete

    async def delete(self, principal: Principal, *, cluster_id: str, partition: str, job_id: str) -> dict[str, Any]:
        """Delete a job, as its one writer; returns the last known object with phase `terminating`.

        A job whose create is still queued is deleted on the cluster too (its create may have landed
        before the worker that made it could record so): the answer 200 means the job never runs again."""
        await self._admit_write(principal)
        cluster = self._clusters.get(cluster_id)
        await self._writable(principal, cluster, partition, job_id, verb="delete")
        async with self._changing(cluster, job_id) as fence:
            record = await self._writable(principal, cluster, partition, job_id, verb="delete")
            gone = JobStatus(phase="terminating", reason="Deleted", message="the job was deleted")
            try:
                await cluster.delete(self._job_ref(cluster, record), impersonate=principal)
            except GatewayError as e:
                if not is_transient(e):
                    raise
                await self._store.put(record.with_pending("delete"), status=deleting_status(cluster.id),
                                      observed_at=self._clock(), fence=fence)
                await self._outbox.enqueue("delete", record.identity, principal=principal)
                log.warning("cluster unavailable, delete queued", cluster=cluster.id, job=job_id)
                return render_job(record.spec, record.identity, deleting_status(cluster.id))
            await self._store.remove(record, fence=fence)
            log.info("job deleted", cluster=cluster.id, job=job_id)
            return render_job(record.spec, record.identity, gone)

    # ----- helpers

    async def _admit_write(self, principal: Principal) -> None:
        """429 once the user made `limits.writesPerUserPerMinute` changes this minute (on every replica)."""
        limit = self._settings.limits.writes_per_user_per_minute
        if limit <= 0:
            return
        count, window_left = await self._store.count_write(principal.user)
        if count > limit:
            retry_after = max(1, math.ceil(window_left))
            raise TooManyRequests(
                f"user {principal.user!r} made more than {limit} changes in one minute; retry in {retry_after} s",
                details={"limit": limit, "retryAfterSeconds": retry_after}, headers={"Retry-After": str(retry_after)})

    def _job_ref(self, cluster: ClusterClient, record: JobRecord) -> ObjectRef:
        return cluster.ref(cluster.jobs, record.namespace, record.object_name)

    async def _check_partition(self, principal: Principal, cluster: ClusterClient, partition: str, namespace: str,
                               *, verb: str) -> None:
        resource = cluster.jobs
        await self._access.check(principal, cluster=cluster.id, partition=partition, verb=verb, namespace=namespace,
                                 group=resource.group, resource=resource.plural)

    async def _readable(self, principal: Principal, cluster: ClusterClient, partition: str, job_id: str, *,
                        verb: str) -> JobRecord:
        namespace = namespace_for(partition, cluster.profile)
        await self._check_partition(principal, cluster, partition, namespace, verb=verb)
        if not JOB_ID_RE.fullmatch(job_id):  # not an id we make: no Redis key, no cluster call
            raise NotFound(f"job {job_id[:64]!r} not found in partition {partition} of cluster {cluster.id}",
                           details={"id": job_id[:64]})
        record = await self._store.get(cluster.id, job_id)
        if record is None and not await self._store_is_current(cluster):
            record = await self._rebuild_from_cluster(cluster, namespace, job_id)
        if record is None or record.identity.partition != partition or not can_access_job(
                principal, owner=record.identity.owner, cluster=cluster.id, partition=partition, write=False,
                settings=self._auth):
            raise NotFound(f"job {job_id} not found in partition {partition} of cluster {cluster.id}",
                           details={"id": job_id})
        return record

    async def _writable(self, principal: Principal, cluster: ClusterClient, partition: str, job_id: str, *,
                        verb: str) -> JobRecord:
        record = await self._readable(principal, cluster, partition, job_id, verb=verb)
        if not can_access_job(principal, owner=record.identity.owner, cluster=cluster.id, partition=partition,
                              write=True, settings=self._auth):
            raise Forbidden(f"job {job_id} belongs to another user; you may only read it")
        return record

    async def _store_is_current(self, cluster: ClusterClient) -> bool:
        """Redis mirrors the cluster: a live watch is feeding it and its resume point survived (a flushed
        or replaced Redis loses both). Then a missing record is a missing job, and an unknown id costs
        no cluster call, so guessing ids cannot be turned into load on the cluster."""
        if not await self._watch_live(cluster):
            return False
        return await self._store.get_resource_version(cluster.id, "jobs") is not None

    async def _rebuild_from_cluster(self, cluster: ClusterClient, namespace: str, job_id: str) -> JobRecord | None:
        """Redis lost this job? Look for it on the cluster by its id label and restore the record."""
        if not job_id or len(job_id) > 128:
            return None
        try:
            found = await cluster.list(cluster.ref(cluster.jobs, namespace), label_selector=pod_selector(job_id),
                                       page_size=self._settings.limits.list_page_size)
        except (ClusterNotFound, GatewayError) as e:
            if not isinstance(e, ClusterNotFound) and not is_transient(e):
                raise
            return None
        for obj in found.items:
            if job_id_of(obj) != job_id:
                continue
            record = record_from_object(obj, cluster.id)
            if record is None:
                continue
            pods = await self._pods(cluster, record)
            await self._store.put_if_absent(record, status=await self._status_from(cluster, job_id, obj, pods),
                                            observed_at=self._clock())
            log.info("job record rebuilt from the cluster", cluster=cluster.id, job=job_id)
            return await self._store.get(cluster.id, job_id) or record
        return None

    async def _pods(self, cluster: ClusterClient, record: JobRecord) -> builtins.list[dict[str, Any]]:
        result = await cluster.list(cluster.ref(PODS, record.namespace), label_selector=pod_selector(record.identity.id),
                                    page_size=self._settings.limits.list_page_size)
        return result.items

    async def _watch_live(self, cluster: ClusterClient) -> bool:
        if not self._settings.sync.watch:
            return False
        beat = await self._store.watch_heartbeat(cluster.id)
        return beat is not None and self._clock() - beat <= self._settings.sync.fallback_after_seconds

    async def _needs_refresh(self, cluster: ClusterClient, observed: builtins.list[ObservedStatus | None]) -> bool:
        bound = self._settings.limits.status_staleness_seconds
        now = self._clock()
        stale = any(o is None or now - o.observed_at > bound for o in observed)
        return stale and not await self._watch_live(cluster)

    def _visible_status(self, record: JobRecord, observed: ObservedStatus | None) -> JobStatus:
        if record.pending == "create":
            return observed.status if observed is not None else queued_status(record.identity.cluster)
        if record.pending == "delete":
            return deleting_status(record.identity.cluster)
        if observed is None:
            return JobStatus(phase="pending", reason="Unknown", message="status not observed yet")
        return observed.status

    async def _current_status(self, cluster: ClusterClient, record: JobRecord) -> JobStatus:
        observed = await self._store.get_status(cluster.id, record.identity.id)
        if record.pending is not None or not await self._needs_refresh(cluster, [observed]):
            return self._visible_status(record, observed)
        read_at = self._clock()
        try:
            obj = await cluster.try_get(self._job_ref(cluster, record))
            pods = await self._pods(cluster, record)
        except GatewayError as e:
            if not is_transient(e):
                raise
            # The cluster is away: the last observation is better than nothing (it carries its age).
            return self._visible_status(record, observed)
        status = await self._status_from(cluster, record.identity.id, obj, pods)
        if await self._store.set_status_if_older(cluster.id, record.identity.id, status, read_at=read_at):
            return status
        newer = await self._store.get_status(cluster.id, record.identity.id)  # the watch wrote meanwhile
        return newer.status if newer is not None else status

    async def _status_from(self, cluster: ClusterClient, job_id: str, obj: dict[str, Any] | None,
                           pods: builtins.list[dict[str, Any]]) -> JobStatus:
        """A status read straight from the cluster, with the last pod failure the watch kept for the job."""
        return job_status(obj, pods, profile=cluster.profile,
                          last_failure=await self._store.last_failure(cluster.id, job_id))

    async def _refresh_namespace(self, cluster: ClusterClient, namespace: str,
                                 records: builtins.list[JobRecord]) -> dict[str, ObservedStatus]:
        """Statuses of `records` from two LISTs (jobs, pods) of their namespace."""
        wanted = {r.identity.id for r in records if r.pending is None}
        if not wanted:
            return {}
        page = self._settings.limits.list_page_size
        read_at = self._clock()
        try:
            jobs = await cluster.list(cluster.ref(cluster.jobs, namespace), label_selector=MANAGED_SELECTOR,
                                      page_size=page)
            pods = await cluster.list(cluster.ref(PODS, namespace), label_selector=MANAGED_SELECTOR, page_size=page)
        except GatewayError as e:
            if not is_transient(e) and not isinstance(e, ClusterNotFound):
                raise
            return {}
        objects = {job_id_of(o): o for o in jobs.items}
        pods_by_job: dict[str | None, builtins.list[dict[str, Any]]] = {}
        for pod in pods.items:
            pods_by_job.setdefault(job_id_of(pod), []).append(pod)
        failures = await self._store.last_failures(cluster.id)
        result = {}
        overtaken = []
        for job_id in wanted:
            status = job_status(objects.get(job_id), pods_by_job.get(job_id, []), profile=cluster.profile,
                                last_failure=failures.get(job_id))
            if await self._store.set_status_if_older(cluster.id, job_id, status, read_at=read_at):
                result[job_id] = ObservedStatus(status=status, observed_at=read_at)
            else:
                overtaken.append(job_id)  # the watch wrote a newer one meanwhile
        result.update(await self._store.get_statuses(cluster.id, overtaken))
        return result


def record_from_object(obj: dict[str, Any], cluster_id: str) -> JobRecord | None:
    """The record a managed cluster object describes, or None when it is not ours / damaged."""
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
