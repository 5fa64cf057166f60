"""Simulated JobSet controller (kubernetes-sigs/jobset v0.12.0, default feature gates).

Contract: a `Reconciler` keyed by JobSet (namespace, name), watching what upstream's controller watches
(`For(JobSet).Owns(Job)`): a change to a JobSet, or to a batch/v1 Job it controls (found by its controller
ownerReference; only changes to what the reconcile reads of a Job: labels, deletion, suspend, parallelism
and completions, the ready/active/succeeded counts, startTime, the Complete/Failed conditions), queues that
JobSet. Pods are not watched: the reconcile never reads them, their changes reach it through their Job's
status. Its own status writes and the ADDED events of the Jobs it created do not queue it again.
`reconcile_key` reads the JobSet and its Jobs (the store's owner index, read-only views) and does what
upstream's reconcile does, in its order, returning the next simulated time it must look again: at once
after a status write that finished or restarted the JobSet (upstream does the rest in the reconcile its
own update triggers), the TTL after finishing, or a retry after an error (Job creation refused), backing
off exponentially like controller-runtime's rate limiter. `reconcile()` is a full pass over every JobSet.
- Child Jobs are classified by `jobset.sigs.k8s.io/restart-attempt` (below `status.restarts`: from an
  earlier attempt, deleted with Foreground propagation) and by their Complete/Failed conditions;
  `status.replicatedJobsStatus[]` {name, ready, succeeded, failed, active, suspended} is recounted (a Job is
  ready when its succeeded plus ready pods reach min(parallelism, completions)).
- A finished JobSet (Completed or Failed) has its still-active Jobs deleted; `ttlSecondsAfterFinished`
  simulated seconds after it finished the JobSet itself is deleted (Foreground).
- Any failed Job runs the failure policy: none → Failed `FailedJobs`; otherwise the first rule whose
  targetReplicatedJobs / onJobFailureReasons / onJobFailureMessagePatterns match the earliest-failed Job
  (no match → RestartJobSet): `FailJobSet` → Failed `FailJobSetFailurePolicyAction`; `RestartJobSet` →
  Failed `ReachedMaxRestarts` once restartsCountTowardsMax reached maxRestarts, else `restarts` and
  `restartsCountTowardsMax` +1 and condition RestartingJobSet (reason `DefaultFailurePolicy` or
  `FailurePolicy_<rule>`); `RestartJobSetAndIgnoreMaxRestarts` → `restarts` +1 only. Every message ends
  "(first failed job: <name>)"; `terminalState` follows the terminal condition. With restartStrategy
  BlockingRecreate no Job of the new attempt is created while one of the old attempt remains.
- Succeeded Jobs run the success policy: operator All needs every Job of the targeted replicated jobs (all
  of them when none are named), Any needs one → Completed `AllJobsCompleted`.
- Otherwise: the headless Service `<subdomain>` (no ports, clusterIP None, selector jobset-name,
  publishNotReadyAddresses) when DNS hostnames are on, reused if it exists; the missing Jobs
  `<js>-<rjob>-<i>` (dependsOn and StartupPolicy InOrder respected, conditions StartupPolicyInProgress /
  StartupPolicyCompleted), built from the template with the JobSet labels and annotations on the Job and
  its pod template (user labels kept), the pod subdomain, `suspend` = the JobSet's, the Job registry's
  defaults and selector; a Job the Job API refuses becomes a Warning event `JobCreationFailed`. Suspend
  sets every active Job's suspend and condition Suspended (SuspendedJobs); resuming clears startTime and
  suspend of the Jobs and sets Suspended False (ResumeJobs).
- Status goes through the status subresource with the resourceVersion read (a conflict is followed by the
  other writer's event, which queues the JobSet again), and the events of the conditions it sets are recorded only after that write succeeded, as the
  controller's statusUpdateOpts does (reporting component `jobset`).
Not simulated: PVCs of volumeClaimPolicies, in-place restart, RestartJob actions (their feature gates are
off in v0.12.0; the webhook refuses them), exclusive-placement pod affinities, the pod webhook.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesim import batch, jobset
from kubesim.controllers.batchjob import controller_uid, finished_type, has_condition, record_event
from kubesim.controllers.clock import SimClock
from kubesim.controllers.reconciler import Reconciler, UpdatePredicate, controller_of
from kubesim.errors import ApiError, invalid
from kubesim.store import BATCH_JOBS, JOBSETS, SERVICES, Store, WatchEvent, clone, new_uid

log = logging.getLogger(__name__)

COMPONENT = "jobset"
RESTARTING = "RestartingJobSet"
ALL_COMPLETED = ("AllJobsCompleted", "jobset completed successfully")
FAILED_JOBS = ("FailedJobs", "jobset failed due to one or more job failures")
REACHED_MAX_RESTARTS = ("ReachedMaxRestarts", "jobset failed due to reaching max number of restarts")
FAIL_JOBSET_ACTION = ("FailJobSetFailurePolicyAction", "applying FailJobSet failure policy action")
RESTART_ACTION = ("RestartJobSetFailurePolicyAction", "applying RestartJobSet failure policy action")
RESTART_IGNORE_MAX_ACTION = ("RestartJobSetAndIgnoreMaxRestartsFailurePolicyAction",
                             "applying RestartJobSetAndIgnoreMaxRestarts failure policy action")
SUSPENDED = ("SuspendedJobs", "jobset is suspended")
RESUMED = ("ResumeJobs", "jobset is resumed")
IN_ORDER_PROGRESS = ("InOrderStartupPolicyInProgress", "in order startup policy is in progress")
IN_ORDER_DONE = ("InOrderStartupPolicyCompleted", "in order startup policy has completed")
_COUNTS = ("ready", "succeeded", "failed", "active", "suspended")

# Stored objects as the store's views hand them out: read-only (build a new dict to change one).
Obj = Mapping[str, Any]


@dataclass
class _Children:
    """getChildJobs: the Jobs of the current attempt by outcome, and those of earlier attempts."""

    active: list[Obj] = field(default_factory=list)
    successful: list[Obj] = field(default_factory=list)
    failed: list[Obj] = field(default_factory=list)
    previous: list[Obj] = field(default_factory=list)

    def names(self) -> set[str]:
        return {j["metadata"]["name"] for j in self.active + self.successful + self.failed + self.previous}


@dataclass
class _Pass:
    """One reconcile of one JobSet: the status being built and the events to record once it is written."""

    js: Obj
    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)

    @property
    def spec(self) -> Obj:
        spec: Obj = self.js.get("spec") or {}
        return spec

    @property
    def suspended(self) -> bool:
        return bool(self.spec.get("suspend"))

    @property
    def replicated_jobs(self) -> list[Obj]:
        return [r for r in self.spec.get("replicatedJobs") or [] if isinstance(r, dict)]


class JobSetController(Reconciler[tuple[str, str]]):
    """Reconciles the JobSets of the store, keyed by (namespace, name)."""

    name = "jobset"

    def __init__(self, store: Store, clock: SimClock) -> None:
        super().__init__(clock)
        self._store = store
        self._finished: dict[str, float] = {}  # simulated time each finished JobSet (uid) was first seen so
        # Job events that change nothing a JobSet reconcile reads wake none.
        self._job_changes = UpdatePredicate(_job_digest)

    def observe(self, event: WatchEvent) -> None:
        """A JobSet, or a Job it controls, changed: that JobSet is dirty."""
        obj = event.object
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        if event.resource is JOBSETS:
            key = (namespace, meta["name"])
            if event.type == "DELETED":
                self._finished.pop(meta.get("uid", ""), None)
                self.forget(key)
            elif self.own_write(key, event):
                return
            self.queue.add(key)
        elif event.resource is BATCH_JOBS:
            owner = controller_of(obj)
            jobset_key = (namespace, str(owner.get("name", ""))) if owner is not None \
                and owner.get("kind") == JOBSETS.kind and owner.get("apiVersion") == JOBSETS.api_version else None
            self.track_owner(event, jobset_key)
            if jobset_key is None or not self._job_changes.changed(event) or self.own_create(event):
                return
            self.queue.add(jobset_key)

    def all_keys(self) -> list[tuple[str, str]]:
        """Every JobSet."""
        return [(js["metadata"]["namespace"], js["metadata"]["name"]) for js in self._store.select(JOBSETS)]

    def reconcile_key(self, key: tuple[str, str]) -> float | None:
        """Reconcile one JobSet (gone or being deleted: nothing to do); when to look at it again, if ever."""
        js = self._store.peek(JOBSETS, *key)
        if js is None or js["metadata"].get("deletionTimestamp"):
            self.succeeded(key)
            return None
        uid = js["metadata"]["uid"]
        jobs = [job for job in self._store.owned(BATCH_JOBS, uid)
                if controller_uid(job, api_version=JOBSETS.api_version, kind=JOBSETS.kind) == uid]
        try:
            due, ok = self._reconcile(js, jobs)
        except ApiError as e:  # changed under us (that write's event may well queue it first)
            log.debug("jobset %s: %s", key[1], e)
            ok = False
        except Exception:  # logged like the controller logs a failed reconcile
            log.warning("jobset %s/%s: reconcile failed", *key, exc_info=True)
            ok = False
        if not ok:
            return self.retry_after(key)
        self.succeeded(key)
        return due

    # -- reconcile --------------------------------------------------------------------------------

    def _reconcile(self, js: Obj, jobs: list[Obj]) -> tuple[float | None, bool]:
        """One reconcile: when the TTL is due, if it is pending; False when it failed (retried later)."""
        meta = js["metadata"]
        spec = js.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return None, True
        if spec.get("managedBy") not in (None, jobset.CONTROLLER_NAME):
            return None, True  # another controller (e.g. MultiKueue) runs this JobSet
        step = _Pass(js, clone(dict(js.get("status") or {})))
        step.status.setdefault("restarts", 0)
        children = _classify(jobs, int(step.status["restarts"]))
        counts = _replicated_job_statuses(step, children)
        if _sorted_by_name(step.status.get("replicatedJobsStatus") or []) != _sorted_by_name(counts):
            step.status["replicatedJobsStatus"] = counts
        due: float | None = None
        if _finished(step.status):
            self._delete_jobs(children.active)
            due = self._expire(js, step.status)
        else:
            self._delete_jobs(children.previous)
            if not step.suspended and _all_jobs_ready(step, counts):
                self._set_restarting_false(step, "JobsReady", "all jobs are ready")
            if children.failed:
                self._execute_failure_policy(step, children)
            elif not (children.successful and self._execute_success_policy(step, children)) \
                    and not self._run(step, children, counts):
                return None, False  # upstream returns the error before writing status
        if self._write(step) and _next_phase(js.get("status") or {}, step.status):
            # Upstream acts on a JobSet it has just finished or restarted (deleting the active Jobs or those of
            # the earlier attempt, starting the TTL) in the reconcile its own status update triggers; this
            # controller is not woken by its own writes, so it asks for that reconcile itself.
            due = self._clock.now()
        return due, True

    def _run(self, step: _Pass, children: _Children, counts: list[dict[str, Any]]) -> bool:
        """The rest of a healthy reconcile; False when creating Jobs failed (no status write then)."""
        self._ensure_headless_service(step.js)
        if not self._reconcile_replicated_jobs(step, children, counts):
            return False
        if step.suspended:
            self._suspend_jobs(step, children.active)
        else:
            self._resume_jobs_if_necessary(step, children.active, counts)
        return True

    # -- policies ---------------------------------------------------------------------------------

    def _execute_failure_policy(self, step: _Pass, children: _Children) -> None:
        policy = step.spec.get("failurePolicy")
        if policy is None:
            first = _first_failed(children.failed)
            self._fail(step, *FAILED_JOBS, first)
            return
        rule, failed_job = _first_matching_rule(policy.get("rules") or [], children.failed)
        action = str(rule.get("action")) if rule is not None else "RestartJobSet"
        if failed_job is None:
            failed_job = _first_failed(children.failed)
        name = failed_job["metadata"]["name"]
        if action == "FailJobSet":
            self._fail(step, *FAIL_JOBSET_ACTION, failed_job)
            return
        counts_toward_max = action == "RestartJobSet"
        counted = int(step.status.get("restartsCountTowardsMax") or 0)
        if counts_toward_max and counted >= int(policy.get("maxRestarts") or 0):
            self._fail(step, *REACHED_MAX_RESTARTS, failed_job)
            return
        event_reason, base = RESTART_ACTION if counts_toward_max else RESTART_IGNORE_MAX_ACTION
        message = f"{base} (first failed job: {name})"
        step.status["restarts"] = int(step.status.get("restarts") or 0) + 1
        if counts_toward_max:
            step.status["restartsCountTowardsMax"] = int(step.status.get("restartsCountTowardsMax") or 0) + 1
        reason = f"FailurePolicy_{rule['name']}" if rule is not None else "DefaultFailurePolicy"
        self._set_condition(step, RESTARTING, "True", reason, message, event_type="Warning")
        step.events.append(("Warning", event_reason, message))

    def _execute_success_policy(self, step: _Pass, children: _Children) -> bool:
        policy = step.spec.get("successPolicy") or {}
        targets = policy.get("targetReplicatedJobs") or []
        matching = sum(1 for job in children.successful
                       if not targets or (job["metadata"].get("labels") or {}).get(jobset.REPLICATED_JOB_NAME)
                       in targets)
        if policy.get("operator") == "Any":
            expected = 1
        else:
            expected = sum(int(r.get("replicas", 1)) for r in step.replicated_jobs
                           if not targets or r.get("name") in targets)
        if matching < expected:
            return False
        self._set_condition(step, "Completed", "True", *ALL_COMPLETED)
        self._set_restarting_false(step, "JobSetCompleted", ALL_COMPLETED[1])
        step.status["terminalState"] = "Completed"
        return True

    def _fail(self, step: _Pass, reason: str, base: str, failed_job: Obj) -> None:
        message = f"{base} (first failed job: {failed_job['metadata']['name']})"
        self._set_condition(step, "Failed", "True", reason, message, event_type="Warning")
        self._set_restarting_false(step, "JobSetFailed", "jobset failed")
        step.status["terminalState"] = "Failed"

    def _expire(self, js: Obj, status: dict[str, Any]) -> float | None:
        ttl = (js.get("spec") or {}).get("ttlSecondsAfterFinished")
        if not isinstance(ttl, int):
            return None
        now = self._clock.now()
        due = self._finished.setdefault(js["metadata"]["uid"], now) + ttl
        if due > now:
            return due
        meta = js["metadata"]
        try:
            self._store.delete(JOBSETS, meta["namespace"], meta["name"], propagation="Foreground", shared=True)
        except ApiError as e:
            log.debug("jobset %s: ttl delete: %s", meta["name"], e)
        return None

    # -- children ---------------------------------------------------------------------------------

    def _reconcile_replicated_jobs(self, step: _Pass, children: _Children,
                                   counts: list[dict[str, Any]]) -> bool:
        in_order = (step.spec.get("startupPolicy") or {}).get("startupPolicyOrder") == "InOrder"
        blocking = (step.spec.get("failurePolicy") or {}).get("restartStrategy") == "BlockingRecreate"
        replicas: dict[str, int] = {}
        for rjob in step.replicated_jobs:
            rname = str(rjob.get("name"))
            replicas[rname] = int(rjob.get("replicas", 1))
            if not _dependencies_reached(rjob, replicas, counts):
                continue
            started = _all_replicas_started(replicas[rname], _count_of(counts, rname))
            if not step.suspended and in_order and started:
                continue
            if not (blocking and children.previous):
                names = children.names()
                wanted = [i for i in range(replicas[rname])
                          if jobset.job_name(step.js["metadata"]["name"], rname, i) not in names]
                if not self._create_jobs(step, rjob, wanted):
                    return False
            if not step.suspended and in_order:
                self._set_condition(step, "StartupPolicyInProgress", "True", *IN_ORDER_PROGRESS)
                return True
        if not step.suspended and in_order:
            self._set_condition(step, "StartupPolicyCompleted", "True", *IN_ORDER_DONE)
        return True

    def _create_jobs(self, step: _Pass, rjob: Obj, indexes: list[int]) -> bool:
        problems: list[str] = []
        for index in indexes:
            job = _construct_job(step.js, rjob, index)
            name = job["metadata"]["name"]
            uid = job["metadata"]["uid"] = new_uid()
            batch.prepare_for_create(job)
            causes = batch.validation_causes(job)
            try:
                if causes:
                    raise invalid(BATCH_JOBS, name, causes)
                # built for this create alone (nothing shared with the JobSet), so the store may keep it
                self.created(BATCH_JOBS, self._store.create(BATCH_JOBS, job, uid=uid, shared=True))
            except ApiError as e:
                problems.append(f'job "{name}" creation failed with error: {e.message}')
        if problems:
            record_event(self._store, step.js, "JobCreationFailed", "\n".join(problems), component=COMPONENT,
                         type="Warning")
            return False
        return True

    def _delete_jobs(self, jobs: list[Obj]) -> None:
        for job in jobs:
            meta = job["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            try:
                self._store.delete(BATCH_JOBS, meta["namespace"], meta["name"], propagation="Foreground",
                                   shared=True)
            except ApiError as e:
                log.debug("jobset: delete job %s: %s", meta["name"], e)

    def _ensure_headless_service(self, js: Obj) -> None:
        network = (js.get("spec") or {}).get("network") or {}
        if not network.get("enableDNSHostnames"):
            return
        meta, name = js["metadata"], jobset.subdomain(js)
        if self._store.peek(SERVICES, meta["namespace"], name) is not None:
            return  # an existing Service of that name is reused as it is
        publish = network.get("publishNotReadyAddresses")
        # the API server's Service defaults are written here, kubesim has no Service registry
        service = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": name, "namespace": meta["namespace"],
                                "ownerReferences": [_owner(js)]},
                   "spec": {"clusterIP": "None", "clusterIPs": ["None"], "type": "ClusterIP",
                            "selector": {jobset.JOBSET_NAME: meta["name"]},
                            "publishNotReadyAddresses": True if publish is None else bool(publish),
                            "sessionAffinity": "None", "ipFamilies": ["IPv4"],
                            "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"},
                   "status": {"loadBalancer": {}}}
        try:
            self._store.create(SERVICES, service, shared=True)
        except ApiError as e:
            record_event(self._store, js, "HeadlessServiceCreationFailed", e.message, component=COMPONENT,
                         type="Warning")

    def _suspend_jobs(self, step: _Pass, active: list[Obj]) -> None:
        for job in active:
            if not (job.get("spec") or {}).get("suspend"):
                self._store.update(BATCH_JOBS, {**job, "spec": {**job["spec"], "suspend": True}}, shared=True)
        self._set_condition(step, "Suspended", "True", *SUSPENDED)
        self._set_restarting_false(step, "JobSetSuspended", SUSPENDED[1])

    def _resume_jobs_if_necessary(self, step: _Pass, active: list[Obj], counts: list[dict[str, Any]]) -> None:
        in_order = (step.spec.get("startupPolicy") or {}).get("startupPolicyOrder") == "InOrder"
        replicas: dict[str, int] = {}
        for rjob in step.replicated_jobs:
            rname = str(rjob.get("name"))
            replicas[rname] = int(rjob.get("replicas", 1))
            if not _dependencies_reached(rjob, replicas, counts):
                continue
            if in_order and _all_replicas_started(replicas[rname], _count_of(counts, rname)):
                continue
            for job in active:
                if (job["metadata"].get("labels") or {}).get(jobset.REPLICATED_JOB_NAME) == rname \
                        and (job.get("spec") or {}).get("suspend"):
                    self._resume_job(job, rjob)
            if in_order:
                self._set_condition(step, "StartupPolicyInProgress", "True", *IN_ORDER_PROGRESS)
                return
        self._set_condition(step, "Suspended", "False", *RESUMED)

    def _resume_job(self, stored: Obj, rjob: Obj) -> None:
        meta = stored["metadata"]
        if (stored.get("status") or {}).get("startTime"):
            # the Job API lets a suspended Job's pod template change only while it has no startTime
            status = {k: v for k, v in stored["status"].items() if k != "startTime"}
            stored = self._store.update_status(BATCH_JOBS, meta["namespace"], meta["name"], status, shared=True)
        job = clone(dict(stored))  # the merge below edits the pod template in place
        wanted = ((rjob.get("template") or {}).get("spec") or {}).get("template") or {}
        pod_template = job["spec"].setdefault("template", {})
        pod_meta = pod_template.setdefault("metadata", {})
        pod_spec = pod_template.setdefault("spec", {})
        for key in ("labels", "annotations"):
            merged = {**(pod_meta.get(key) or {}), **((wanted.get("metadata") or {}).get(key) or {})}
            if merged:
                pod_meta[key] = merged
        wanted_spec = wanted.get("spec") or {}
        node_selector = {**(pod_spec.get("nodeSelector") or {}), **(wanted_spec.get("nodeSelector") or {})}
        if node_selector:
            pod_spec["nodeSelector"] = node_selector
        for key in ("tolerations", "schedulingGates"):
            merged_list = list(pod_spec.get(key) or [])
            merged_list += [item for item in wanted_spec.get(key) or [] if item not in merged_list]
            if merged_list:
                pod_spec[key] = merged_list
        job["spec"]["suspend"] = False
        self._store.update(BATCH_JOBS, job, shared=True)

    # -- status -----------------------------------------------------------------------------------

    def _set_condition(self, step: _Pass, ctype: str, cstatus: str, reason: str, message: str, *,
                       event_type: str = "Normal") -> None:
        """setCondition: updateCondition, then the event queued for after the status write."""
        conditions: list[dict[str, Any]] = list(step.status.get("conditions") or [])
        fresh = {"type": ctype, "status": cstatus, "lastTransitionTime": self._clock.timestamp(),
                 "reason": reason, "message": message}
        found = changed = False
        for i, current in enumerate(conditions):
            if current.get("type") == ctype:
                found = True
                if current.get("status") != cstatus:
                    conditions[i], changed = fresh, True
                elif current.get("reason") != reason or current.get("message") != message:
                    conditions[i] = {**fresh, "lastTransitionTime": current.get("lastTransitionTime")}
                    changed = True
            elif {current.get("type"), ctype} == {"StartupPolicyInProgress", "StartupPolicyCompleted"} \
                    and current.get("status") == "True" and cstatus == "True":
                conditions[i], changed = {**current, "status": "False"}, True
        if not found and cstatus == "True":
            conditions.append(fresh)
            changed = True
        if changed:
            step.status["conditions"] = conditions
            step.events.append((event_type, reason, message))

    def _set_restarting_false(self, step: _Pass, reason: str, message: str) -> None:
        self._set_condition(step, RESTARTING, "False", reason, message)

    def _write(self, step: _Pass) -> bool:
        """Write the status if it changed, then record its events; whether a new status was written."""
        meta = step.js["metadata"]
        if step.status == (step.js.get("status") or {}):
            return False
        key = (meta["namespace"], meta["name"])
        try:
            self.wrote(key, self._store.update_status(JOBSETS, *key, step.status,
                                                      resource_version=meta["resourceVersion"], shared=True))
        except ApiError as e:  # a conflict: the other write's event queues the JobSet again
            log.debug("jobset %s: status: %s", meta["name"], e)
            return False
        for event_type, reason, message in step.events:
            record_event(self._store, step.js, reason, message, component=COMPONENT, type=event_type)
        return True


# -- pure helpers ---------------------------------------------------------------------------------


def _owner(js: Obj) -> dict[str, Any]:
    return {"apiVersion": JOBSETS.api_version, "kind": JOBSETS.kind, "name": js["metadata"]["name"],
            "uid": js["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _classify(jobs: list[Obj], restarts: int) -> _Children:
    children = _Children()
    for job in jobs:
        attempt = (job["metadata"].get("labels") or {}).get(jobset.RESTART_ATTEMPT, "")
        if not attempt.isdigit() or int(attempt) < restarts:
            children.previous.append(job)
            continue
        outcome = finished_type(job)
        if outcome == "Complete":
            children.successful.append(job)
        elif outcome == "Failed":
            children.failed.append(job)
        else:
            children.active.append(job)
    return children


def _replicated_job_statuses(step: _Pass, children: _Children) -> list[dict[str, Any]]:
    counts = {str(r.get("name")): dict.fromkeys(_COUNTS, 0) for r in step.replicated_jobs}

    def bucket(job: Obj) -> dict[str, int] | None:
        return counts.get((job["metadata"].get("labels") or {}).get(jobset.REPLICATED_JOB_NAME, ""))

    for job in children.active:
        entry, spec, status = bucket(job), job.get("spec") or {}, job.get("status") or {}
        if entry is None:
            continue
        pods = int(spec.get("parallelism") or 1)
        if spec.get("completions") is not None and int(spec["completions"]) < pods:
            pods = int(spec["completions"])
        if int(status.get("succeeded") or 0) + int(status.get("ready") or 0) >= pods:
            entry["ready"] += 1
        if int(status.get("active") or 0) > 0:
            entry["active"] += 1
        if spec.get("suspend"):
            entry["suspended"] += 1
    for jobs, key in ((children.successful, "succeeded"), (children.failed, "failed")):
        for job in jobs:
            entry = bucket(job)
            if entry is not None:
                entry[key] += 1
    return [{"name": name, **values} for name, values in counts.items()]


def _job_digest(job: Obj) -> tuple[Any, ...]:
    """What a JobSet reconcile reads of a Job, as one value to compare (the labels dict itself: versions that
    keep their labels share it, and == settles that by identity)."""
    meta, spec, status = job["metadata"], job.get("spec") or {}, job.get("status") or {}
    return (meta.get("labels"), meta.get("deletionTimestamp"), spec.get("suspend"), spec.get("parallelism"),
            spec.get("completions"), status.get("ready"), status.get("active"), status.get("succeeded"),
            status.get("startTime"), finished_type(job), _failure_condition(job))


def _sorted_by_name(statuses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(statuses, key=lambda s: str(s.get("name")))


def _count_of(counts: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next((c for c in counts if c.get("name") == name), dict.fromkeys(_COUNTS, 0))


def _finished(status: Mapping[str, Any]) -> bool:
    return has_condition(status, "Completed") or has_condition(status, "Failed")


def _next_phase(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether a status write finished the JobSet or started a new attempt."""
    return _finished(after) != _finished(before) or int(after.get("restarts") or 0) != int(before.get("restarts") or 0)


def _all_jobs_ready(step: _Pass, counts: list[dict[str, Any]]) -> bool:
    total = sum(int(r.get("replicas", 1)) for r in step.replicated_jobs)
    return total == sum(int(c["ready"]) + int(c["succeeded"]) for c in counts)


def _all_replicas_started(replicas: int, count: dict[str, Any]) -> bool:
    return replicas == int(count["failed"]) + int(count["ready"]) + int(count["succeeded"])


def _dependencies_reached(rjob: Obj, replicas: dict[str, int],
                          counts: list[dict[str, Any]]) -> bool:
    for dependency in rjob.get("dependsOn") or []:
        name = str((dependency or {}).get("name"))
        count = next((c for c in counts if c.get("name") == name), None)
        if count is None:
            return False
        if dependency.get("status") == "Complete" and replicas.get(name) != count["succeeded"]:
            return False
        if dependency.get("status") == "Ready" and replicas.get(name) != count["failed"] + count["ready"] \
                + count["succeeded"]:
            return False
    return True


def _failure_condition(job: Obj) -> Obj | None:
    return next((c for c in (job.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Failed" and c.get("status") == "True"), None)


def _first_failed(jobs: list[Obj]) -> Obj:
    """The Job whose Failed condition is the oldest (RFC 3339 strings order like the times they name)."""
    return min(jobs, key=lambda j: str((_failure_condition(j) or {}).get("lastTransitionTime") or "~"))


def _first_matching_rule(rules: list[Obj], failed: list[Obj]) -> tuple[Obj | None, Obj | None]:
    """findFirstFailedPolicyRuleAndJob: rules in order; for the first that any failed Job matches, the
    earliest-failed such Job."""
    for rule in rules:
        matched = [job for job in failed if _rule_applies(rule, job)]
        if matched:
            return rule, _first_failed(matched)
    return None, None


def _rule_applies(rule: Obj, job: Obj) -> bool:
    condition = _failure_condition(job)
    if condition is None:
        return False
    reasons = rule.get("onJobFailureReasons") or []
    if reasons and condition.get("reason") not in reasons:
        return False
    patterns = rule.get("onJobFailureMessagePatterns") or []
    if patterns and not any(_search(p, str(condition.get("message") or "")) for p in patterns):
        return False
    parent = (job["metadata"].get("labels") or {}).get(jobset.REPLICATED_JOB_NAME)
    if not parent:
        return False
    targets = rule.get("targetReplicatedJobs") or []
    return not targets or parent in targets


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:  # upstream logs an invalid pattern and goes on
        return False


def _construct_job(js: Obj, rjob: Obj, index: int) -> dict[str, Any]:
    """constructJob: the Job for one index of a replicated job (before the Job registry's defaults)."""
    meta = js["metadata"]
    template = rjob.get("template") or {}
    template_meta = template.get("metadata") or {}
    job_meta: dict[str, Any] = {"name": jobset.job_name(meta["name"], str(rjob.get("name")), index),
                                "namespace": meta["namespace"], "ownerReferences": [_owner(js)]}
    for key in ("labels", "annotations"):
        if template_meta.get(key):
            job_meta[key] = dict(template_meta[key])
    spec = clone(dict(template.get("spec") or {}))
    pod_template = spec.setdefault("template", {})
    _label_and_annotate(job_meta, js, rjob, index)
    _label_and_annotate(pod_template.setdefault("metadata", {}), js, rjob, index)
    pod_spec = pod_template.setdefault("spec", {})
    if ((js.get("spec") or {}).get("network") or {}).get("enableDNSHostnames"):
        pod_spec["subdomain"] = jobset.subdomain(js)
    annotations = job_meta["annotations"]
    if jobset.EXCLUSIVE_TOPOLOGY in annotations and jobset.NODE_SELECTOR_STRATEGY in annotations:
        namespaced = f"{meta['namespace']}_{job_meta['name']}"
        pod_spec.setdefault("nodeSelector", {})[jobset.NAMESPACED_JOB] = namespaced
        pod_spec.setdefault("tolerations", []).append({"key": jobset.NO_SCHEDULE_TAINT, "operator": "Exists",
                                                       "effect": "NoSchedule"})
    spec["suspend"] = bool((js.get("spec") or {}).get("suspend"))
    return {"apiVersion": BATCH_JOBS.api_version, "kind": BATCH_JOBS.kind, "metadata": job_meta, "spec": spec}


def _label_and_annotate(target: dict[str, Any], js: Obj, rjob: Obj, index: int) -> None:
    """labelAndAnnotateObject: the same JobSet keys as labels and as annotations."""
    meta, spec = js["metadata"], js.get("spec") or {}
    rjobs = [r for r in spec.get("replicatedJobs") or [] if isinstance(r, dict)]
    rname, group = str(rjob.get("name")), str(rjob.get("groupName") or "default")
    job = jobset.job_name(meta["name"], rname, index)
    global_index = group_index = 0
    for other in rjobs:
        if other.get("name") == rname:
            break
        global_index += int(other.get("replicas", 1))
    for other in rjobs:
        if str(other.get("groupName") or "default") != group:
            continue
        if other.get("name") == rname:
            break
        group_index += int(other.get("replicas", 1))
    values = {
        jobset.JOBSET_NAME: meta["name"],
        jobset.JOBSET_UID: meta["uid"],
        jobset.REPLICATED_JOB_NAME: rname,
        jobset.RESTART_ATTEMPT: str(int((js.get("status") or {}).get("restarts") or 0)),
        jobset.REPLICATED_JOB_REPLICAS: str(int(rjob.get("replicas", 1))),
        jobset.GLOBAL_REPLICAS: str(sum(int(r.get("replicas", 1)) for r in rjobs)),
        jobset.JOB_INDEX: str(index),
        jobset.JOB_KEY: hashlib.sha1(f"{meta['namespace']}/{job}".encode()).hexdigest(),
        jobset.JOB_GLOBAL_INDEX: str(global_index + index),
        jobset.GROUP_NAME: group,
        jobset.GROUP_REPLICAS: str(sum(int(r.get("replicas", 1)) for r in rjobs
                                       if str(r.get("groupName") or "default") == group)),
        jobset.JOB_GROUP_INDEX: str(group_index + index),
    }
    if spec.get("coordinator") is not None:
        values[jobset.COORDINATOR] = jobset.coordinator_endpoint(js)
    target["labels"] = {**(target.get("labels") or {}), **values}
    annotations = {**(target.get("annotations") or {}), **values}
    rjob_annotations = ((rjob.get("template") or {}).get("metadata") or {}).get("annotations") or {}
    for source in (meta.get("annotations") or {}, rjob_annotations):
        if jobset.EXCLUSIVE_TOPOLOGY in source:
            annotations[jobset.EXCLUSIVE_TOPOLOGY] = source[jobset.EXCLUSIVE_TOPOLOGY]
            if jobset.NODE_SELECTOR_STRATEGY in source:
                annotations[jobset.NODE_SELECTOR_STRATEGY] = source[jobset.NODE_SELECTOR_STRATEGY]
    target["annotations"] = annotations


__all__ = ["COMPONENT", "JobSetController"]
