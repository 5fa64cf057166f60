"""Simulated kube-controller-manager Job controller (batch/v1, Kubernetes 1.33 semantics) plus the
TTL-after-finished controller for Jobs.

Contract: a `Reconciler` keyed by Job (namespace, name). A change to a Job, or to a pod it controls
(controller ownerReference; only changes to what the controller reads of a pod: phase, deletion,
readiness, restart counts, completion index) queues that Job, and `reconcile_key` reads it and its pods
(the store's owner index, read-only views) and writes what the real controllers would, returning the next
simulated time a time-based rule becomes due (pod re-creation backoff, activeDeadlineSeconds, TTL): the
work queue's timer for that Job, never a rescan. Its own status writes and the ADDED events of the pods it
created do not queue the Job again. `reconcile()` is a full pass over every Job.
- Pods from `spec.template`, at most `parallelism` active and never more than the completions left. An
  Indexed Job's pod for index i is `<job>-<i>-<5 random chars>` (generateName `<job>-<i>-`) with hostname
  `<job>-<i>` (the template's subdomain kept), the annotation and label
  `batch.kubernetes.io/job-completion-index=i`, and `JOB_COMPLETION_INDEX` appended to every
  container's env from the downward API; a NonIndexed Job's pods are `<job>-<5 chars>`. Pods carry the
  template's labels (the registry added `batch.kubernetes.io/job-name`, `controller-uid`, ...). Events
  SuccessfulCreate / SuccessfulDelete ("Created pod: <name>").
- A failed pod is counted once in `status.failed` and replaced after the Job's backoff (10 s doubling, at
  most 10 min, simulated); so is an active pod that disappeared without this controller removing it.
  The Job fails (`FailureTarget`, then `Failed`; Warning event with the reason) with
  `BackoffLimitExceeded` "Job has reached the specified backoff limit" when failures exceed
  `backoffLimit` or, with restartPolicy OnFailure, when the restartCounts of its running/pending pods
  reach it (any restart when it is 0); `DeadlineExceeded` "Job was active longer than specified deadline"
  after `activeDeadlineSeconds` from `startTime`; `PodFailurePolicy` when a `podFailurePolicy` FailJob
  rule matches a failed pod (`onExitCodes` In/NotIn over non-zero exit codes, `onPodConditions`; Ignore
  rules leave the failure uncounted). Active pods are then deleted and counted as failed.
- It succeeds (`SuccessCriteriaMet`, then `Complete`, `completionTime`, event Completed "Job completed")
  with reason `CompletionsReached` "Reached expected number of succeeded pods" once `completions` pods (or
  indexes) succeeded, or - Indexed Jobs - with reason `SuccessPolicy` "Matched rules at index <r>" when a
  `successPolicy.rules[r]` (`succeededIndexes`, `succeededCount`) is met, after deleting the pods still
  running (not counted as failed).
- `spec.suspend` deletes active pods and sets `Suspended` (JobSuspended "Job suspended", event Suspended);
  resuming sets it False (JobResumed "Job resumed"), resets `startTime` and creates pods again.
- Status: `startTime`, `active`, `ready`, `terminating` (0: kubesim deletes pods at once), `succeeded`,
  `failed`, `completedIndexes` (Indexed, "0-2,4" form), `uncountedTerminatedPods: {}`, conditions
  with `lastProbeTime`/`lastTransitionTime`; zero counts omitted as the API does. Written with the
  resourceVersion read (a conflict is followed by the other writer's event, which queues the Job again).
- `ttlSecondsAfterFinished` deletes a finished Job (Foreground) that many simulated seconds after it
  finished.
Not simulated: the `batch.kubernetes.io/job-tracking` pod finalizer (pods are counted from this
controller's memory instead), `backoffLimitPerIndex`/`maxFailedIndexes`, `podReplacementPolicy: Failed`,
`managedBy`, elastic Indexed Jobs.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesim import batch
from kubesim.controllers.clock import SimClock
from kubesim.controllers.reconciler import Reconciler, UpdatePredicate, controller_of
from kubesim.errors import ApiError
from kubesim.store import BATCH_JOBS, PODS, Store, WatchEvent, clone

log = logging.getLogger(__name__)

COMPONENT = "job-controller"
BACKOFF_BASE = 10.0  # simulated seconds before the first replacement of a failed pod
BACKOFF_MAX = 600.0
MAX_GENERATED_NAME = 58  # 63 minus the 5 random characters
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery utilrand: no vowels, no look-alikes
BACKOFF_MESSAGE = "Job has reached the specified backoff limit"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"
COMPLETIONS_MESSAGE = "Reached expected number of succeeded pods"
TERMINAL = ("Succeeded", "Failed")

# Stored objects as the store's views hand them out: read-only (build a new dict to change one).
Obj = Mapping[str, Any]


@dataclass
class _Tracking:
    """What the controller remembers about one Job (by uid): the counting the tracking finalizer does."""

    counted_failed: set[str] = field(default_factory=set)
    counted_succeeded: set[str] = field(default_factory=set)
    active: set[str] = field(default_factory=set)  # pods active at the last pass
    removed: set[str] = field(default_factory=set)  # pods this controller deleted without it being a failure
    consecutive_failures: int = 0
    last_failure: float | None = None
    started: float | None = None
    finished: float | None = None


@dataclass
class _Finish:
    """A decision to end the Job: the interim and the final condition type, reason and message."""

    interim: str
    final: str
    reason: str
    message: str


def record_event(store: Store, obj: Obj, reason: str, message: str, *, component: str,
                 type: str = "Normal") -> None:
    """An Event about `obj` reported by `component` (best effort)."""
    try:
        store.record_event(obj, reason=reason, message=message, type=type, component=component)
    except ApiError as e:  # events are best effort, like in Kubernetes
        log.debug("event %s for %s: %s", reason, obj.get("metadata", {}).get("name"), e)


def controller_uid(obj: Obj, *, api_version: str, kind: str) -> str | None:
    """The uid of `obj`'s controller ownerReference if it is of that apiVersion and kind."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller") and ref.get("apiVersion") == api_version and ref.get("kind") == kind:
            return str(ref.get("uid"))
    return None


def has_condition(status: Mapping[str, Any], ctype: str) -> bool:
    """A condition of that type with status True."""
    return any(c.get("type") == ctype and c.get("status") == "True" for c in status.get("conditions") or [])


def finished_type(job: Obj) -> str | None:
    """`Complete` or `Failed` when the Job has that condition True (what JobSet calls JobFinished)."""
    status = job.get("status") or {}
    return next((t for t in ("Complete", "Failed") if has_condition(status, t)), None)


class JobController(Reconciler[tuple[str, str]]):
    """Reconciles the batch/v1 Jobs of the store, keyed by (namespace, name)."""

    name = "job"

    def __init__(self, store: Store, clock: SimClock) -> None:
        super().__init__(clock)
        self._store = store
        self._tracks: dict[str, _Tracking] = {}  # by Job uid
        # Pod events that change nothing a Job sync reads (the kubelet's binding and ContainerCreating
        # steps) wake no reconcile.
        self._pod_changes = UpdatePredicate(_pod_digest)

    def observe(self, event: WatchEvent) -> None:
        """A Job, or a pod it controls, changed: that Job is dirty."""
        obj = event.object
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        if event.resource is BATCH_JOBS:
            key = (namespace, meta["name"])
            if event.type == "DELETED":
                self._tracks.pop(meta.get("uid", ""), None)
                self.forget(key)
            elif self.own_write(key, event):
                return
            self.queue.add(key)
        elif event.resource is PODS:
            owner = controller_of(obj)
            job = (namespace, str(owner.get("name", ""))) if owner is not None \
                and owner.get("kind") == BATCH_JOBS.kind and owner.get("apiVersion") == BATCH_JOBS.api_version \
                else None
            self.track_owner(event, job)
            if job is None or not self._pod_changes.changed(event) or self.own_create(event):
                return
            self.queue.add(job)

    def all_keys(self) -> list[tuple[str, str]]:
        """Every Job."""
        return [(job["metadata"]["namespace"], job["metadata"]["name"]) for job in self._store.select(BATCH_JOBS)]

    def reconcile_key(self, key: tuple[str, str]) -> float | None:
        """Sync one Job (gone or being deleted: nothing to do); the next simulated deadline, if any."""
        job = self._store.peek(BATCH_JOBS, *key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return None
        uid = job["metadata"]["uid"]
        pods = [pod for pod in self._store.owned(PODS, uid)
                if controller_uid(pod, api_version=BATCH_JOBS.api_version, kind=BATCH_JOBS.kind) == uid]
        try:
            due = self._sync(job, pods)
        except ApiError as e:  # changed or deleted under us (that write's event may well queue it first)
            log.debug("job %s: %s", key[1], e)
            return self.retry_after(key)
        except Exception:  # logged like the controller logs a failed sync
            log.warning("job %s/%s: sync failed", *key, exc_info=True)
            return self.retry_after(key)
        self.succeeded(key)
        return due

    # -- one Job ---------------------------------------------------------------------------------

    def _sync(self, job: Obj, pods: list[Obj]) -> float | None:
        meta, spec = job["metadata"], job.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return None
        now = self._clock.now()
        track = self._tracks.get(meta["uid"])
        if track is None:
            track = self._tracks[meta["uid"]] = self._first_sight(job, pods)
        status = clone(dict(job.get("status") or {}))
        if finished_type(job) is not None:
            return self._expire(job, track, now)
        suspended = bool(spec.get("suspend"))
        indexed = batch.is_indexed(job)
        completions = spec.get("completions")
        active = [p for p in pods if _active(p)]
        ts = self._clock.timestamp()

        failed, fail_job = self._count_failures(job, pods, track, status, now)
        succeeded, succeeded_indexes = self._count_successes(job, pods, track, status)
        if not suspended and not status.get("startTime"):
            status["startTime"] = ts
            track.started = now
        elif track.started is None and status.get("startTime"):
            track.started = now

        finish: _Finish | None = None
        if not suspended:
            finish = self._failure(job, active, failed, fail_job, track, now)
            if finish is None and indexed and completions is not None:
                policy = spec.get("successPolicy")
                matched = _match_success_policy(policy, int(completions), succeeded_indexes)
                if matched is not None:
                    finish = _Finish("SuccessCriteriaMet", "Complete", "SuccessPolicy", matched)
        if finish is not None:
            failed += self._delete_pods(job, active, track, counted_as_failure=finish.final == "Failed")
            self._set_counts(status, active=0, ready=0, succeeded=succeeded, failed=failed,
                             completed_indexes=succeeded_indexes if indexed else None)
            return self._finish(job, status, finish, track, now)

        due: float | None = None
        if suspended:
            self._delete_pods(job, active, track, counted_as_failure=False)
            active = []
            self._set_condition(job, status, "Suspended", "True", "JobSuspended", "Job suspended",
                                event="Suspended")
        else:
            active, due = self._manage(job, active, succeeded, succeeded_indexes, track, now)
            if self._set_condition(job, status, "Suspended", "False", "JobResumed", "Job resumed",
                                   event="Resumed"):
                status["startTime"] = ts  # the active deadline counts from the resume
                track.started = now
        ready = sum(1 for p in active if _ready(p))
        self._set_counts(status, active=len(active), ready=ready, succeeded=succeeded, failed=failed,
                         completed_indexes=succeeded_indexes if indexed else None)
        done = succeeded >= int(completions) if completions is not None else succeeded > 0
        if not suspended and done and not active:
            return self._finish(job, status, _Finish("SuccessCriteriaMet", "Complete", "CompletionsReached",
                                                     COMPLETIONS_MESSAGE), track, now)
        self._write(job, status)
        deadline = spec.get("activeDeadlineSeconds")
        if not suspended and isinstance(deadline, int) and track.started is not None:
            due = min(d for d in (due, track.started + deadline) if d is not None)
        return due

    def _first_sight(self, job: Obj, pods: list[Obj]) -> _Tracking:
        """Tracking for a Job this controller has not seen (kubesim restarted its controllers): pods the
        status already accounts for must not be counted again."""
        track = _Tracking()
        if (job.get("status") or {}).get("startTime"):
            track.counted_failed = {p["metadata"]["uid"] for p in pods if _phase(p) == "Failed"}
            track.counted_succeeded = {p["metadata"]["uid"] for p in pods if _phase(p) == "Succeeded"}
        track.active = {p["metadata"]["uid"] for p in pods if _active(p)}
        return track

    def _count_failures(self, job: Obj, pods: list[Obj], track: _Tracking,
                        status: dict[str, Any], now: float) -> tuple[int, str | None]:
        """status.failed plus the failures not counted yet; the message of a matching FailJob rule."""
        policy = (job.get("spec") or {}).get("podFailurePolicy")
        new = 0
        fail_job: str | None = None
        present = {p["metadata"]["uid"] for p in pods}
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if _phase(pod) != "Failed" or uid in track.counted_failed:
                continue
            track.counted_failed.add(uid)
            action, message = _match_pod_failure_policy(policy, pod)
            if action == "FailJob" and fail_job is None:
                fail_job = message
            if action != "Ignore":
                new += 1
        for uid in track.active - present - track.removed - track.counted_failed:
            track.counted_failed.add(uid)  # an active pod deleted by someone else is a failed pod
            new += 1
        track.active = {p["metadata"]["uid"] for p in pods if _active(p)}
        if new:
            track.consecutive_failures += new
            track.last_failure = now
        return int(status.get("failed") or 0) + new, fail_job

    def _count_successes(self, job: Obj, pods: list[Obj], track: _Tracking,
                         status: dict[str, Any]) -> tuple[int, set[int]]:
        """The succeeded count and, for Indexed Jobs, the succeeded indexes (status plus new pods)."""
        spec = job.get("spec") or {}
        succeeded_pods = [p for p in pods if _phase(p) == "Succeeded"]
        if any(p["metadata"]["uid"] not in track.counted_succeeded for p in succeeded_pods):
            track.consecutive_failures = 0
        if batch.is_indexed(job) and spec.get("completions") is not None:
            completions = int(spec["completions"])
            indexes = batch.parse_intervals(status.get("completedIndexes"), completions)
            for pod in succeeded_pods:
                index = _completion_index(pod)
                if index is not None and index < completions:
                    indexes.add(index)
            track.counted_succeeded.update(p["metadata"]["uid"] for p in succeeded_pods)
            return len(indexes), indexes
        new = [p for p in succeeded_pods if p["metadata"]["uid"] not in track.counted_succeeded]
        track.counted_succeeded.update(p["metadata"]["uid"] for p in new)
        return int(status.get("succeeded") or 0) + len(new), set()

    def _failure(self, job: Obj, active: list[Obj], failed: int, fail_job: str | None,
                 track: _Tracking, now: float) -> _Finish | None:
        spec = job.get("spec") or {}
        if fail_job is not None:
            return _Finish("FailureTarget", "Failed", "PodFailurePolicy", fail_job)
        configured = spec.get("backoffLimit")
        limit = int(configured) if configured is not None else batch.DEFAULT_BACKOFF_LIMIT
        if failed > limit or _past_backoff_on_failure(job, active, limit):
            return _Finish("FailureTarget", "Failed", "BackoffLimitExceeded", BACKOFF_MESSAGE)
        deadline = spec.get("activeDeadlineSeconds")
        if isinstance(deadline, int) and track.started is not None and now - track.started >= deadline:
            return _Finish("FailureTarget", "Failed", "DeadlineExceeded", DEADLINE_MESSAGE)
        return None

    def _manage(self, job: Obj, active: list[Obj], succeeded: int, succeeded_indexes: set[int],
                track: _Tracking, now: float) -> tuple[list[Obj], float | None]:
        """manageJob: delete surplus pods or create missing ones; the active pods after it, and when to
        come back if the creation backoff holds pods back."""
        spec = job.get("spec") or {}
        parallelism = int(spec.get("parallelism") or 0)
        completions = spec.get("completions")
        if completions is None:
            want = len(active) if succeeded > 0 else parallelism
        else:
            want = max(0, min(int(completions) - succeeded, parallelism))
        indexed = batch.is_indexed(job) and completions is not None
        surplus = _surplus_indexed(active, succeeded_indexes, int(completions or 0), want) if indexed \
            else _newest_first(active)[:max(0, len(active) - want)]
        if surplus:
            self._delete_pods(job, surplus, track, counted_as_failure=False)
            return [p for p in active if p not in surplus], None
        missing = want - len(active)
        if missing <= 0:
            return active, None
        if track.last_failure is not None and track.consecutive_failures > 0:
            backoff = min(BACKOFF_BASE * 2 ** (track.consecutive_failures - 1), BACKOFF_MAX)
            ready_at = track.last_failure + backoff
            if ready_at > now:
                return active, ready_at
        indexes: list[int | None] = [None] * missing
        if indexed:
            taken = succeeded_indexes | {i for p in active if (i := _completion_index(p)) is not None}
            free: list[int | None] = [i for i in range(int(completions or 0)) if i not in taken]
            indexes = free[:missing]
        created = [pod for index in indexes if (pod := self._create_pod(job, index)) is not None]
        track.active.update(p["metadata"]["uid"] for p in created)
        return active + created, None

    # -- writes ----------------------------------------------------------------------------------

    def _create_pod(self, job: Obj, index: int | None) -> Obj | None:
        meta = job["metadata"]
        template = clone(dict((job.get("spec") or {}).get("template") or {}))
        template_meta = template.get("metadata") or {}
        labels = dict(template_meta.get("labels") or {})
        annotations = dict(template_meta.get("annotations") or {})
        pod_spec: dict[str, Any] = template.get("spec") or {}
        if index is not None:
            for kind in ("initContainers", "containers"):
                for container in pod_spec.get(kind) or []:
                    _add_completion_index_env(container)
            annotations[batch.COMPLETION_INDEX] = str(index)
            labels[batch.COMPLETION_INDEX] = str(index)
            pod_spec["hostname"] = f"{meta['name']}-{index}"
            suffix = f"-{index}-"
            generate_name = meta["name"][:MAX_GENERATED_NAME - len(suffix)] + suffix
        else:
            generate_name = (meta["name"] + "-")[:MAX_GENERATED_NAME]
        owner = {"apiVersion": BATCH_JOBS.api_version, "kind": "Job", "name": meta["name"],
                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}
        pod_meta: dict[str, Any] = {"generateName": generate_name, "namespace": meta["namespace"],
                                    "labels": labels, "ownerReferences": [owner]}
        if annotations:
            pod_meta["annotations"] = annotations
        for _ in range(5):  # a taken random name is simply drawn again, as the API server's generator does
            pod_meta["name"] = generate_name + "".join(random.choices(NAME_ALPHABET, k=5))
            try:
                created = self._store.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": dict(pod_meta),
                                                    "spec": pod_spec}, shared=True)
            except ApiError as e:
                if e.code == 409:
                    continue
                raise
            self.created(PODS, created)
            self._event(job, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
            return created
        return None

    def _delete_pods(self, job: Obj, pods: list[Obj], track: _Tracking, *,
                     counted_as_failure: bool) -> int:
        """Delete pods; returns how many of them count as failures now."""
        counted = 0
        for pod in pods:
            uid, name = pod["metadata"]["uid"], pod["metadata"]["name"]
            try:
                self._store.delete(PODS, pod["metadata"]["namespace"], name, shared=True)
            except ApiError as e:
                log.debug("job %s: delete pod %s: %s", job["metadata"]["name"], name, e)
                continue
            self._event(job, "SuccessfulDelete", f"Deleted pod: {name}")
            if counted_as_failure and uid not in track.counted_failed:
                track.counted_failed.add(uid)
                counted += 1
            else:
                track.removed.add(uid)
            track.active.discard(uid)
        return counted

    def _finish(self, job: Obj, status: dict[str, Any], finish: _Finish, track: _Tracking,
                now: float) -> float | None:
        """The interim condition first, then the terminal one, as two status writes; then the TTL, if due."""
        ts = self._clock.timestamp()
        conditions = status.setdefault("conditions", [])
        if not has_condition(status, finish.interim):
            conditions.append(_condition(finish.interim, "True", finish.reason, finish.message, ts))
        written = self._write(job, status)
        if written is None:
            return None
        status = clone(dict(written.get("status") or {}))
        final = _condition(finish.final, "True", finish.reason, finish.message, ts)
        status.setdefault("conditions", []).append(final)
        if finish.final == "Complete":
            status["completionTime"] = ts
        finished = self._write(written, status)
        if finished is None:
            return None
        track.finished = now
        if finish.final == "Complete":
            self._event(job, "Completed", "Job completed")
        else:
            self._event(job, finish.reason, finish.message, type="Warning")
        return self._expire(finished, track, now)

    def _expire(self, job: Obj, track: _Tracking, now: float) -> float | None:
        """ttlSecondsAfterFinished: delete the finished Job when its time has come, else say when."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if not isinstance(ttl, int) or finished_type(job) is None:
            return None
        if track.finished is None:
            track.finished = now
        due = track.finished + ttl
        if due > now:
            return due
        meta = job["metadata"]
        try:
            self._store.delete(BATCH_JOBS, meta["namespace"], meta["name"], propagation="Foreground",
                               shared=True)
        except ApiError as e:
            log.debug("job %s: ttl delete: %s", meta["name"], e)
        return None

    def _set_condition(self, job: Obj, status: dict[str, Any], ctype: str, cstatus: str,
                       reason: str, message: str, *, event: str) -> bool:
        """ensureJobConditionStatus: added when True and absent, replaced when its status changes."""
        conditions: list[dict[str, Any]] = status.get("conditions") or []
        current = next((c for c in conditions if c.get("type") == ctype), None)
        if current is None and cstatus != "True":
            return False
        if current is not None and current.get("status") == cstatus:
            return False
        fresh = _condition(ctype, cstatus, reason, message, self._clock.timestamp())
        status["conditions"] = [fresh if c is current else c for c in conditions]
        if current is None:
            status["conditions"].append(fresh)
        self._event(job, event, message)
        return True

    @staticmethod
    def _set_counts(status: dict[str, Any], *, active: int, ready: int, succeeded: int, failed: int,
                    completed_indexes: set[int] | None) -> None:
        for key, value in (("active", active), ("succeeded", succeeded), ("failed", failed)):
            if value:
                status[key] = value
            else:
                status.pop(key, None)  # omitempty
        status["ready"] = ready
        status["terminating"] = 0
        if completed_indexes:
            status["completedIndexes"] = batch.format_intervals(completed_indexes)
        else:
            status.pop("completedIndexes", None)
        status["uncountedTerminatedPods"] = {}

    def _write(self, job: Obj, status: dict[str, Any]) -> Obj | None:
        if status == (job.get("status") or {}):
            return job
        meta = job["metadata"]
        key = (meta["namespace"], meta["name"])
        try:
            written = self._store.update_status(BATCH_JOBS, *key, status, resource_version=meta["resourceVersion"],
                                                shared=True)
        except ApiError as e:  # a conflict or a deleted Job: the other write's event queues it again
            log.debug("job %s: status: %s", meta["name"], e)
            return None
        self.wrote(key, written)
        return written

    def _event(self, job: Obj, reason: str, message: str, *, type: str = "Normal") -> None:
        record_event(self._store, job, reason, message, component=COMPONENT, type=type)


# -- pure helpers ---------------------------------------------------------------------------------


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _active(pod: Obj) -> bool:
    return _phase(pod) not in TERMINAL and not pod["metadata"].get("deletionTimestamp")


def _ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _completion_index(pod: Obj) -> int | None:
    value = (pod["metadata"].get("annotations") or {}).get(batch.COMPLETION_INDEX)
    try:
        index = int(value) if value is not None else -1
    except ValueError:
        return None
    return index if index >= 0 else None


def _newest_first(pods: list[Obj]) -> list[Obj]:
    return sorted(pods, key=lambda p: int(p["metadata"].get("resourceVersion") or 0), reverse=True)


def _surplus_indexed(active: list[Obj], succeeded: set[int], completions: int, want: int) -> list[Obj]:
    """Active pods an Indexed Job removes: no or an out-of-range index, an index already succeeded, a
    second pod for an index; then the highest indexes beyond `want`."""
    surplus: list[Obj] = []
    kept: dict[int, Obj] = {}
    for pod in _newest_first(active):
        index = _completion_index(pod)
        if index is None or index >= completions or index in succeeded or index in kept:
            surplus.append(pod)
        else:
            kept[index] = pod
    surplus += [kept[i] for i in sorted(kept, reverse=True)[:max(0, len(kept) - want)]]
    return surplus


def _pod_digest(pod: Obj) -> tuple[Any, ...]:
    """What a Job sync reads of a pod, as one value to compare: phase, deletion, readiness, the restart
    count (OnFailure backoff; the sum is all it reads, and the kubelet's first container statuses, restart
    count 0, leave it alone) and the annotations (completion index; a version that keeps them shares the
    dict, so == settles it by identity). A failed pod's exit codes and conditions come with its phase."""
    meta, status = pod["metadata"], pod.get("status") or {}
    restarts = sum(int(cs.get("restartCount") or 0) for cs in (status.get("initContainerStatuses") or [])
                   + (status.get("containerStatuses") or []))
    return (status.get("phase"), meta.get("deletionTimestamp"), _ready(pod), restarts, meta.get("annotations"))


def _condition(ctype: str, cstatus: str, reason: str, message: str, ts: str) -> dict[str, Any]:
    return {"type": ctype, "status": cstatus, "lastProbeTime": ts, "lastTransitionTime": ts, "reason": reason,
            "message": message}


def _add_completion_index_env(container: dict[str, Any]) -> None:
    """Appended last, so no earlier variable can refer to it with $(JOB_COMPLETION_INDEX)."""
    env = container.setdefault("env", [])
    if any(isinstance(var, dict) and var.get("name") == batch.COMPLETION_INDEX_ENV for var in env):
        return
    env.append({"name": batch.COMPLETION_INDEX_ENV, "valueFrom": {"fieldRef": {
        "fieldPath": f"metadata.labels['{batch.COMPLETION_INDEX}']"}}})


def _past_backoff_on_failure(job: Obj, active: list[Obj], limit: int) -> bool:
    """restartPolicy OnFailure: the restarts of running/pending containers count as failures."""
    template_spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    if template_spec.get("restartPolicy") != "OnFailure":
        return False
    restarts = 0
    for pod in active:
        status = pod.get("status") or {}
        if _phase(pod) not in ("Running", "Pending"):
            continue
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
    return restarts > 0 if limit == 0 else restarts >= limit


def _match_success_policy(policy: Mapping[str, Any] | None, completions: int, succeeded: set[int]) -> str | None:
    """matchSuccessPolicy: the message of the first rule the succeeded indexes meet, else None."""
    if not policy or not succeeded:
        return None
    for index, rule in enumerate(policy.get("rules") or []):
        rule = rule or {}
        count = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            required = batch.parse_intervals(str(rule["succeededIndexes"]), completions)
            if not required:
                continue
            contained = len(required & succeeded)
            if contained == len(required) or (count is not None and contained >= int(count)):
                return f"Matched rules at index {index}"
        elif count is not None and len(succeeded) >= int(count):
            return f"Matched rules at index {index}"
    return None


def _match_pod_failure_policy(policy: Mapping[str, Any] | None, pod: Obj) -> tuple[str | None, str]:
    """The action of the first podFailurePolicy rule matching a failed pod, and the FailJob message."""
    if not policy:
        return None, ""
    meta, status = pod["metadata"], pod.get("status") or {}
    ref = f"{meta.get('namespace')}/{meta.get('name')}"
    for index, rule in enumerate(policy.get("rules") or []):
        rule = rule or {}
        action = str(rule.get("action") or "")
        exit_rule = rule.get("onExitCodes")
        if exit_rule:
            values = set(exit_rule.get("values") or [])
            wanted = exit_rule.get("containerName")
            for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
                code = int(((cs.get("state") or {}).get("terminated") or {}).get("exitCode", 0))
                if code == 0 or (wanted and cs.get("name") != wanted):
                    continue
                if (code in values) == (exit_rule.get("operator") == "In"):
                    return action, (f"Container {cs.get('name')} for pod {ref} failed with exit code {code} "
                                    f"matching {action} rule at index {index}")
        for pattern in rule.get("onPodConditions") or []:
            for cond in status.get("conditions") or []:
                wanted_status = pattern.get("status", "True")
                if cond.get("type") == pattern.get("type") and cond.get("status") == wanted_status:
                    return action, (f"Pod {ref} has condition {cond['type']} matching {action} rule at index "
                                    f"{index}")
    return None, ""


__all__ = ["COMPONENT", "JobController", "controller_uid", "finished_type", "has_condition", "record_event"]
