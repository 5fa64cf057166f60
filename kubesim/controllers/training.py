"""Simulated Kubeflow TFJob operator, in two dialects.

`training-operator` (kubeflow/training-operator v1.9.0): run policy under `spec.runPolicy`, pod
labels `training.kubeflow.org/*`, condition messages `TFJob <ns>/<name> is running.` etc.
`tf-operator` (the older kubeflow.org/v1 tf-operator of seeds 000–002): run policy fields directly
under `spec`, unprefixed pod labels (`group-name=kubeflow.org`, `job-name`, `tf-job-name`,
`replica-type`, `replica-index`, `job-role`), messages `TFJob <name> is running.`, default
cleanPodPolicy Running, no suspend.

Contract: a `Reconciler` keyed by TFJob (namespace, name): a change to a TFJob, or to a pod, service or
PodGroup it controls, queues that TFJob, and `reconcile_key` reads it and its pods (through the store's
owner index) and writes what the operator would: pods `<job>-<rtype>-<i>` (owner-referenced, labelled, TF_CONFIG in
container `tensorflow` when distributed), one headless Service per replica, `/status` (conditions,
replicaStatuses, startTime, completionTime, lastReconcileTime) and events. Defaults are applied in
memory only (once per spec generation), never persisted. It returns the next simulated time at which a
time-based rule (activeDeadlineSeconds, ttlSecondsAfterFinished) becomes due, and the job is queued again
then. `reconcile()` is a full pass over every TFJob.

Gang scheduling (`gang_scheduler="volcano"`, the operator's `--gang-scheduler-name=volcano`; training-operator
dialect only, the old tf-operator's kube-batch mode is not simulated and the option is ignored there): before
any pod the operator keeps a `scheduling.volcano.sh/v1beta1` PodGroup named after the job (controller
ownerReference, the job's annotations; spec minMember = runPolicy.schedulingPolicy.minAvailable or the total
replicas, queue = schedulingPolicy.queue or `default`, priorityClassName / minResources when set; minResources
is not computed from the pods' requests as the operator does when it is unset) and creates
neither pods nor services while its phase is unset or `Pending`. Pods get `schedulerName: volcano` when their
template names none (a Warning event when it names another) and the annotations
`scheduling.k8s.io/group-name=<job>` and `volcano.sh/task-spec=<lowercase replica type>`. The PodGroup is left
deleted when the job finishes (events JobTerminated, SuccessfulDeletePodGroup), like the operator does, and
garbage-collected with the job otherwise; Volcano (kubesim.controllers.volcano) admits it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kubesim.controllers.clock import SimClock
from kubesim.controllers.reconciler import Reconciler, UpdatePredicate, controller_of
from kubesim.controllers.volcano import GROUP_NAME, TASK_SPEC
from kubesim.errors import ApiError
from kubesim.store import PODGROUPS, PODS, SERVICES, TFJOBS, Store, WatchEvent, clone

log = logging.getLogger(__name__)

Dialect = Literal["training-operator", "tf-operator"]
# Stored objects as the store's views hand them out: read-only (build a new dict to change one).
Job = Mapping[str, Any]
Pod = Mapping[str, Any]
REPLICA_TYPES = ("Chief", "Master", "PS", "Worker", "Evaluator")
CONTAINER_NAME = "tensorflow"
PORT_NAME = "tfjob-port"
DEFAULT_PORT = 2222
RESTARTING_POLICIES = ("OnFailure", "Always", "ExitCode")
GANG_SCHEDULERS = ("volcano",)
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class ReplicaSpec:
    """One replica type after in-memory defaulting."""

    rtype: str  # CamelCase: Chief, Master, PS, Worker, Evaluator
    replicas: int
    restart_policy: str
    template: dict[str, Any]


@dataclass(frozen=True)
class RunPolicy:
    """Run policy fields, wherever the dialect keeps them."""

    clean_pod_policy: str
    backoff_limit: int | None
    active_deadline_seconds: float | None
    ttl_seconds_after_finished: float | None
    suspend: bool


def normalize_replica_type(key: str) -> str:
    """Case-insensitive replica key → CamelCase (`ps` → `PS`, `worker` → `Worker`)."""
    for known in REPLICA_TYPES:
        if key.lower() == known.lower():
            return known
    return key


def default_replicas(spec: Mapping[str, Any]) -> dict[str, ReplicaSpec]:
    """`spec.tfReplicaSpecs` with the operator's in-memory defaults applied.

    The templates share what the defaults leave alone with `spec` (only the path to the added port is
    copied): treat them as read-only."""
    result: dict[str, ReplicaSpec] = {}
    for key, raw in (spec.get("tfReplicaSpecs") or {}).items():
        raw = raw if isinstance(raw, dict) else {}
        rtype = normalize_replica_type(str(key))
        template = dict(raw.get("template") or {})
        template_spec = template["spec"] = dict(template.get("spec") or {})
        containers = template_spec["containers"] = list(template_spec.get("containers") or [])
        main = _main_container(containers)
        if main is not None:
            ports = main.get("ports") or []
            if not any(isinstance(p, dict) and p.get("name") == PORT_NAME for p in ports):
                position = next(i for i, c in enumerate(containers) if c is main)
                containers[position] = {**main, "ports": [*ports, {"name": PORT_NAME, "containerPort": DEFAULT_PORT}]}
        replicas = raw.get("replicas")
        result[rtype] = ReplicaSpec(rtype=rtype, replicas=int(replicas) if replicas is not None else 1,
                                    restart_policy=raw.get("restartPolicy") or "Never", template=template)
    return result


def run_policy(spec: dict[str, Any], dialect: Dialect) -> RunPolicy:
    """Run policy of a TFJob; tf-operator keeps the fields under spec and cleans Running pods by default."""
    source = spec if dialect == "tf-operator" else (spec.get("runPolicy") or {})

    def number(key: str) -> float | None:
        value = source.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    backoff = number("backoffLimit")
    default_clean = "Running" if dialect == "tf-operator" else "None"
    return RunPolicy(
        clean_pod_policy=source.get("cleanPodPolicy") or default_clean,
        backoff_limit=int(backoff) if backoff is not None else None,
        active_deadline_seconds=number("activeDeadlineSeconds"),
        ttl_seconds_after_finished=number("ttlSecondsAfterFinished"),
        suspend=dialect == "training-operator" and bool(source.get("suspend")),
    )


def podgroup_spec(spec: dict[str, Any], replicas: dict[str, ReplicaSpec]) -> dict[str, Any]:
    """The PodGroup spec training-operator derives from `runPolicy.schedulingPolicy`."""
    scheduling = (spec.get("runPolicy") or {}).get("schedulingPolicy") or {}
    min_available = scheduling.get("minAvailable")
    explicit = isinstance(min_available, int) and not isinstance(min_available, bool)
    # the operator leaves an unset queue empty and Volcano's PodGroup webhook defaults it
    result: dict[str, Any] = {"minMember": min_available if explicit else sum(r.replicas for r in replicas.values()),
                              "queue": scheduling.get("queue") or DEFAULT_QUEUE}
    if scheduling.get("priorityClass"):
        result["priorityClassName"] = scheduling["priorityClass"]
    if scheduling.get("minResources"):
        result["minResources"] = clone(scheduling["minResources"])
    return result


def is_distributed(replicas: dict[str, ReplicaSpec]) -> bool:
    """TF_CONFIG is set only when the job has more than one replica in total."""
    return sum(r.replicas for r in replicas.values()) != 1


def tf_config(job_name: str, namespace: str, replicas: dict[str, ReplicaSpec], rtype: str, index: int) -> str:
    """The exact TF_CONFIG JSON training-operator injects."""
    cluster: dict[str, list[str]] = {}
    for spec in replicas.values():
        port = _port(spec.template)
        lower = spec.rtype.lower()
        cluster[lower] = [f"{job_name}-{lower}-{i}.{namespace}.svc:{port}" for i in range(spec.replicas)]
    body = {"cluster": cluster, "task": {"type": rtype.lower(), "index": index}, "environment": "cloud"}
    return json.dumps(body, separators=(",", ":"))


def master_role(replicas: dict[str, ReplicaSpec], rtype: str, index: int) -> bool:
    """Chief/Master pods, or worker-0 when the job has no chief, carry job-role=master."""
    if any(t in replicas for t in ("Chief", "Master")):
        return rtype in ("Chief", "Master")
    return rtype == "Worker" and index == 0


def set_condition(status: dict[str, Any], ctype: str, cstatus: str, reason: str, message: str, now: str) -> bool:
    """training-operator's setCondition/filterOutCondition; returns True when something changed."""
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    if any(c.get("type") == "Failed" and c.get("status") == "True" for c in conditions):
        return False
    current = next((c for c in conditions if c.get("type") == ctype), None)
    if current is not None and current.get("status") == cstatus and current.get("reason") == reason:
        return False
    transition = current["lastTransitionTime"] if current is not None and current.get("status") == cstatus else now
    kept = []
    for c in conditions:
        if c.get("type") == ctype:
            continue
        if {ctype, c.get("type")} == {"Running", "Restarting"}:
            continue
        if ctype in ("Failed", "Succeeded") and c.get("type") == "Running":
            c = {**c, "status": "False"}
        kept.append(c)
    kept.append({"type": ctype, "status": cstatus, "reason": reason, "message": message,
                 "lastUpdateTime": now, "lastTransitionTime": transition})
    status["conditions"] = kept
    return True


def has_condition(status: dict[str, Any], ctype: str) -> bool:
    """True when a condition of that type has status True."""
    return any(c.get("type") == ctype and c.get("status") == "True" for c in status.get("conditions") or [])


def container_exit_code(pod: Pod) -> int | None:
    """Exit code of the `tensorflow` container (terminated state), like the operator reads it."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == CONTAINER_NAME:
            terminated = (cs.get("state") or {}).get("terminated")
            if terminated:
                return int(terminated.get("exitCode", 0))
    return None


def _pod_digest(pod: Pod) -> tuple[Any, ...]:
    """The parts of a pod a TFJob reconcile reads, as one value to compare (the labels dict itself: versions
    that keep their labels share it, and == settles that by identity)."""
    meta, status = pod["metadata"], pod.get("status") or {}
    containers = []
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        restarts, code = cs.get("restartCount"), ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
        if restarts or code is not None:  # a container that never restarted nor exited reads as no container
            containers.append((cs.get("name"), restarts, code))
    return (meta.get("labels"), status.get("phase"), meta.get("deletionTimestamp"), tuple(containers))


def _main_container(containers: list[Any]) -> dict[str, Any] | None:
    dicts = [c for c in containers if isinstance(c, dict)]
    return next((c for c in dicts if c.get("name") == CONTAINER_NAME), dicts[0] if dicts else None)


def _port(template: dict[str, Any]) -> int:
    main = _main_container(template.get("spec", {}).get("containers", []))
    for port in (main or {}).get("ports") or []:
        if isinstance(port, dict) and port.get("name") == PORT_NAME:
            return int(port.get("containerPort", DEFAULT_PORT))
    return DEFAULT_PORT


class TFJobController(Reconciler[tuple[str, str]]):
    """Reconciles the TFJobs of the store, keyed by (namespace, name); one instance per dialect."""

    name = "tfjob"

    def __init__(self, store: Store, clock: SimClock, *, dialect: Dialect = "training-operator",
                 gang_scheduler: str | None = None) -> None:
        super().__init__(clock)
        self._store = store
        self.dialect = dialect
        # tf-operator's gang mode (kube-batch PodGroups of another API group) is not simulated
        self.gang_scheduler = gang_scheduler if dialect == "training-operator" else None
        # simulated times keyed by job uid: wall-clock second-precision stamps are too coarse when
        # 1 simulated second is 10 ms
        self._started: dict[str, float] = {}
        self._finished: dict[str, float] = {}
        self._restarts: dict[str, int] = {}
        self._replicas: dict[str, tuple[Any, dict[str, ReplicaSpec]]] = {}  # uid → (generation, defaults)
        # Pod events that change nothing a TFJob reconcile reads (the kubelet's binding and ContainerCreating
        # steps) wake no reconcile.
        self._pod_changes = UpdatePredicate(_pod_digest)

    # -- labels and messages ----------------------------------------------------------------------

    def labels(self, job_name: str, rtype: str | None = None, index: int | None = None) -> dict[str, str]:
        """Selector labels of a job's pods and services (without job-role)."""
        name = job_name.replace("/", "-")
        if self.dialect == "tf-operator":
            labels = {"group-name": "kubeflow.org", "job-name": name, "tf-job-name": name}
            prefix = ""
        else:
            labels = {"training.kubeflow.org/operator-name": "tfjob-controller",
                      "training.kubeflow.org/job-name": name}
            prefix = "training.kubeflow.org/"
        if rtype is not None:
            labels[prefix + "replica-type"] = rtype.lower()
        if index is not None:
            labels[prefix + "replica-index"] = str(index)
        return labels

    def _role_label(self) -> str:
        return "job-role" if self.dialect == "tf-operator" else "training.kubeflow.org/job-role"

    def _job_ref(self, job: Job) -> str:
        meta = job["metadata"]
        return meta["name"] if self.dialect == "tf-operator" else f"{meta['namespace']}/{meta['name']}"

    # -- reconcile ------------------------------------------------------------------------------

    def observe(self, event: WatchEvent) -> None:
        """A TFJob, or a pod, service or PodGroup it controls, changed: that TFJob is dirty."""
        obj = event.object
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        if event.resource is TFJOBS:
            key = (namespace, meta["name"])
            if event.type == "DELETED":
                for table in (self._started, self._finished, self._restarts, self._replicas):
                    table.pop(meta.get("uid", ""), None)
                self.forget(key)
            elif self.own_write(key, event):
                return
            self.queue.add(key)
        elif event.resource in (PODS, SERVICES, PODGROUPS):
            owner = controller_of(obj)
            job = (namespace, owner.get("name", "")) if owner is not None and owner.get("kind") == "TFJob" \
                and owner.get("apiVersion") == TFJOBS.api_version else None
            self.track_owner(event, job)
            if job is None or (event.resource is PODS and not self._pod_changes.changed(event)) or self.own_create(event):
                return
            self.queue.add(job)

    def all_keys(self) -> list[tuple[str, str]]:
        """Every TFJob."""
        return [(job["metadata"]["namespace"], job["metadata"]["name"]) for job in self._store.select(TFJOBS)]

    def reconcile_key(self, key: tuple[str, str]) -> float | None:
        """Reconcile one TFJob (gone or being deleted: nothing to do); the next simulated deadline, if any."""
        job = self._store.peek(TFJOBS, *key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return None
        try:
            return self._reconcile_job(job)
        except Exception as e:  # noqa: BLE001 - logged like the operator logs a failed sync
            log.warning("tfjob %s/%s: reconcile failed: %s", key[0], key[1], e)
            return None

    def _defaulted_replicas(self, job: Job) -> dict[str, ReplicaSpec]:
        """default_replicas, computed once per spec generation: the templates are only read afterwards."""
        meta = job["metadata"]
        cached = self._replicas.get(meta["uid"])
        if cached is None or cached[0] != meta.get("generation"):
            cached = self._replicas[meta["uid"]] = (meta.get("generation"), default_replicas(job.get("spec") or {}))
        return cached[1]

    def _reconcile_job(self, job: Job) -> float | None:
        meta = job["metadata"]
        name, uid = meta["name"], meta["uid"]
        spec = job.get("spec") or {}
        replicas = self._defaulted_replicas(job)
        policy = run_policy(spec, self.dialect)
        old_status = job.get("status") or {}
        status = clone(dict(old_status))
        now_ts = self._clock.timestamp()
        now = self._clock.now()
        ref = self._job_ref(job)
        pods = self._pods(job)

        if not status.get("conditions"):
            set_condition(status, "Created", "True", "TFJobCreated", f"TFJob {name} is created.", now_ts)

        if has_condition(status, "Succeeded") or has_condition(status, "Failed"):
            return self._finished_job(job, status, old_status, policy, pods, now)

        if policy.suspend:
            self._delete_pods_and_services(job, pods, policy="All")
            for rs in (status.get("replicaStatuses") or {}).values():
                rs.pop("active", None)
            message = f"TFJob {name} is suspended."
            if has_condition(status, "Running"):
                set_condition(status, "Running", "False", "TFJobSuspended", message, now_ts)
            if not has_condition(status, "Suspended"):
                set_condition(status, "Suspended", "True", "TFJobSuspended", message, now_ts)
                self._event(job, "TFJobSuspended", message)
            self._started.pop(uid, None)
            self._write(job, status, old_status, now_ts)
            return None
        if has_condition(status, "Suspended"):
            message = f"TFJob {name} is resumed."
            set_condition(status, "Suspended", "False", "TFJobResumed", message, now_ts)
            status["startTime"] = now_ts
            self._started[uid] = now
            self._event(job, "TFJobResumed", message)

        # past backoff limit / active deadline: fail before touching pods
        failure = self._exceeds_limits(job, replicas, policy, pods, status, now)
        if failure is not None:
            status.setdefault("completionTime", now_ts)
            self._finished.setdefault(uid, now)
            self._delete_pods_and_services(job, pods, policy=policy.clean_pod_policy)
            self._event(job, "TFJobFailed", failure)
            set_condition(status, "Failed", "True", "TFJobFailed", failure, now_ts)
            self._write(job, status, old_status, now_ts)
            return self._ttl_due(uid, policy)

        # the operator touches no pods or services until the gang scheduler has admitted the PodGroup
        admitted = self.gang_scheduler is None or self._sync_podgroup(job, podgroup_spec(spec, replicas))
        replica_statuses: dict[str, dict[str, int]] = {}
        for rtype, rspec in replicas.items():
            counts = {"active": 0, "succeeded": 0, "failed": 0}
            replica_statuses[rtype] = counts
            if not admitted:
                continue
            by_index = self._pods_by_index(pods, rtype)
            for index in [i for i in by_index if i >= rspec.replicas]:  # scaled down: the operator removes them
                self._delete(PODS, job, by_index[index]["metadata"]["name"])
                self._delete(SERVICES, job, by_index[index]["metadata"]["name"])
            for index in range(rspec.replicas):
                pod = by_index.get(index)
                if pod is None:
                    self._create_pod(job, replicas, rspec, index)
                else:
                    phase = (pod.get("status") or {}).get("phase")
                    if phase == "Running":
                        counts["active"] += 1
                    elif phase == "Succeeded":
                        counts["succeeded"] += 1
                    elif phase == "Failed":
                        counts["failed"] += 1
                        code = container_exit_code(pod)
                        retryable = (rspec.restart_policy in ("OnFailure", "Always")
                                     or (rspec.restart_policy == "ExitCode" and code is not None and code >= 128))
                        if retryable:
                            self._delete(PODS, job, pod["metadata"]["name"])
                            self._restarts[uid] = self._restarts.get(uid, 0) + 1
                            message = f"TFJob {name} is restarting because 1 {rtype} replica(s) failed."
                            self._event(job, "TFJobRestarting", message, type="Warning")
                            set_condition(status, "Restarting", "True", "TFJobRestarting", message, now_ts)
                self._ensure_service(job, rspec, index)
        self._update_job_status(job, status, replicas, replica_statuses, pods, policy, now_ts, ref)
        if has_condition(status, "Succeeded") or has_condition(status, "Failed"):
            return self._finished_job(job, status, old_status, policy, self._pods(job), now)
        self._write(job, status, old_status, now_ts)
        if policy.active_deadline_seconds is not None and uid in self._started:
            return self._started[uid] + policy.active_deadline_seconds
        return None

    def _update_job_status(self, job: Job, status: dict[str, Any], replicas: dict[str, ReplicaSpec],
                           counts: dict[str, dict[str, int]], pods: list[Pod], policy: RunPolicy,
                           now_ts: str, ref: str) -> None:
        uid = job["metadata"]["uid"]
        status["replicaStatuses"] = {rtype: {k: v for k, v in c.items() if v} for rtype, c in counts.items()}
        if not status.get("startTime"):
            status["startTime"] = now_ts
        self._started.setdefault(uid, self._clock.now())
        chief_driven = any(t in replicas for t in ("Chief", "Master"))
        # setting Running drops Restarting (filterOutCondition), so remember it like the operator does
        restarting = next((dict(c) for c in status.get("conditions") or []
                           if c.get("type") == "Restarting" and c.get("status") == "True"), None)
        success_policy = (job.get("spec") or {}).get("successPolicy") or ""
        for rtype, rspec in replicas.items():
            c = counts[rtype]
            expected = rspec.replicas - c["succeeded"]
            running_msg = f"TFJob {ref} is running."
            done_msg = f"TFJob {ref} successfully completed."
            if chief_driven:
                if rtype in ("Chief", "Master"):
                    if c["active"] > 0:
                        set_condition(status, "Running", "True", "TFJobRunning", running_msg, now_ts)
                    if expected == 0:
                        self._succeed(job, status, done_msg, now_ts)
            elif rtype == "Worker":
                worker0_done = self._worker0_completed(pods)
                if expected == 0 or (worker0_done and success_policy != "AllWorkers"):
                    self._succeed(job, status, done_msg, now_ts)
                elif c["active"] > 0:
                    set_condition(status, "Running", "True", "TFJobRunning", running_msg, now_ts)
            if c["failed"] > 0:
                if restarting is not None:
                    set_condition(status, "Restarting", "True", restarting["reason"], restarting["message"], now_ts)
                    continue
                if (job.get("spec") or {}).get("enableDynamicWorker") and rtype == "Worker":
                    continue
                message = f"TFJob {ref} has failed because {c['failed']} {rtype} replica(s) failed."
                if not has_condition(status, "Failed"):
                    self._event(job, "TFJobFailed", message)
                status.setdefault("completionTime", now_ts)
                set_condition(status, "Failed", "True", "TFJobFailed", message, now_ts)

    def _succeed(self, job: Job, status: dict[str, Any], message: str, now_ts: str) -> None:
        if has_condition(status, "Succeeded") or has_condition(status, "Failed"):
            return
        self._event(job, "TFJobSucceeded", message)
        status.setdefault("completionTime", now_ts)
        set_condition(status, "Succeeded", "True", "TFJobSucceeded", message, now_ts)

    def _worker0_completed(self, pods: list[Pod]) -> bool:
        pod = self._pods_by_index(pods, "Worker").get(0)
        if pod is None:
            return False
        return (pod.get("status") or {}).get("phase") == "Succeeded" and container_exit_code(pod) == 0

    def _exceeds_limits(self, job: Job, replicas: dict[str, ReplicaSpec], policy: RunPolicy,
                        pods: list[Pod], status: dict[str, Any], now: float) -> str | None:
        name, uid = job["metadata"]["name"], job["metadata"]["uid"]
        if policy.backoff_limit is not None:
            restarts = 0
            for rtype, rspec in replicas.items():
                if rspec.restart_policy not in RESTARTING_POLICIES:
                    continue
                for pod in self._pods_by_index(pods, rtype).values():
                    if (pod.get("status") or {}).get("phase") != "Running":
                        continue
                    pod_status = pod.get("status") or {}
                    for cs in (pod_status.get("containerStatuses") or []) + (
                            pod_status.get("initContainerStatuses") or []):
                        restarts += int(cs.get("restartCount", 0))
            limit = policy.backoff_limit
            if (limit == 0 and restarts > 0) or (limit > 0 and restarts >= limit) \
                    or self._restarts.get(uid, 0) > limit:
                return f"Job {name} has failed because it has reached the specified backoff limit"
        if policy.active_deadline_seconds is not None and uid in self._started \
                and now - self._started[uid] >= policy.active_deadline_seconds:
            return f"Job {name} has failed because it was active longer than specified deadline"
        return None

    def _finished_job(self, job: Job, status: dict[str, Any], old_status: dict[str, Any],
                      policy: RunPolicy, pods: list[Pod], now: float) -> float | None:
        uid = job["metadata"]["uid"]
        self._finished.setdefault(uid, now)
        self._delete_pods_and_services(job, pods, policy=policy.clean_pod_policy)
        self._delete_podgroup(job)
        if has_condition(status, "Succeeded"):
            for rs in (status.get("replicaStatuses") or {}).values():
                active = rs.pop("active", 0)
                if active:
                    rs["succeeded"] = rs.get("succeeded", 0) + active
        self._write(job, status, old_status, self._clock.timestamp())
        due = self._ttl_due(uid, policy)
        if due is not None and due <= now:
            self._delete(TFJOBS, job, job["metadata"]["name"])
            return None
        return due

    def _delete_podgroup(self, job: Job) -> None:
        """A finished gang job gives its PodGroup back, with the operator's events."""
        meta = job["metadata"]
        if self.gang_scheduler is None or self._store.peek(PODGROUPS, meta["namespace"], meta["name"]) is None:
            return
        self._event(job, "JobTerminated", "Job has been terminated. Deleting PodGroup")
        if self._delete(PODGROUPS, job, meta["name"]):
            self._event(job, "SuccessfulDeletePodGroup", f"Deleted PodGroup: {meta['name']}")

    def _ttl_due(self, uid: str, policy: RunPolicy) -> float | None:
        if policy.ttl_seconds_after_finished is None:
            return None
        return self._finished.get(uid, self._clock.now()) + policy.ttl_seconds_after_finished

    # -- children --------------------------------------------------------------------------------

    def _pods(self, job: Job) -> list[Pod]:
        """The job's pods: owned by it and carrying its selector labels (read-only, from the owner index)."""
        wanted = self.labels(job["metadata"]["name"]).items()
        return [pod for pod in self._store.owned(PODS, job["metadata"]["uid"])
                if (pod["metadata"].get("labels") or {}).items() >= wanted]

    def _pods_by_index(self, pods: list[Pod], rtype: str) -> dict[int, Pod]:
        prefix = "" if self.dialect == "tf-operator" else "training.kubeflow.org/"
        result: dict[int, Pod] = {}
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            if labels.get(prefix + "replica-type") != rtype.lower():
                continue
            try:
                result[int(labels.get(prefix + "replica-index", ""))] = pod
            except ValueError:
                continue
        return result

    def _owner_ref(self, job: Job) -> dict[str, Any]:
        return {"apiVersion": TFJOBS.api_version, "kind": "TFJob", "name": job["metadata"]["name"],
                "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    def _sync_podgroup(self, job: Job, wanted: dict[str, Any]) -> bool:
        """Create the job's PodGroup or bring its spec up to date; True once it is past `Pending`."""
        meta = job["metadata"]
        podgroup = self._store.peek(PODGROUPS, meta["namespace"], meta["name"])
        try:
            if podgroup is None:
                group_meta: dict[str, Any] = {"name": meta["name"], "namespace": meta["namespace"],
                                              "ownerReferences": [self._owner_ref(job)]}
                if meta.get("annotations"):
                    group_meta["annotations"] = dict(meta["annotations"])
                self.created(PODGROUPS, self._store.create(
                    PODGROUPS, {"apiVersion": PODGROUPS.api_version, "kind": "PodGroup", "metadata": group_meta,
                                "spec": wanted}, shared=True))
                return False  # nobody has given it a phase yet
            if podgroup.get("spec") != wanted:
                self._store.update(PODGROUPS, {**podgroup, "spec": wanted}, shared=True)
        except ApiError as e:  # AlreadyExists / Conflict with a concurrent writer: next pass
            log.debug("tfjob %s: sync podgroup: %s", meta["name"], e)
            return False
        return (podgroup.get("status") or {}).get("phase") not in (None, "", "Pending")

    def _create_pod(self, job: Job, replicas: dict[str, ReplicaSpec], rspec: ReplicaSpec,
                    index: int) -> None:
        meta = job["metadata"]
        name = f"{meta['name']}-{rspec.rtype.lower()}-{index}"
        # the template is shared and read-only: copy only what the pod changes
        template = rspec.template
        tmeta = template.get("metadata") or {}
        labels = {**(tmeta.get("labels") or {}), **self.labels(meta["name"], rspec.rtype, index)}
        if master_role(replicas, rspec.rtype, index):
            labels[self._role_label()] = "master"
        pod_spec = dict(template.get("spec") or {})
        if rspec.template.get("spec", {}).get("restartPolicy") and \
                rspec.template["spec"]["restartPolicy"] != rspec.restart_policy:
            self._event(job, "SettedPodTemplateRestartPolicy",
                        "Restart policy in pod template will be overwritten by restart policy in replica spec",
                        type="Warning")
        pod_spec["restartPolicy"] = "Never" if rspec.restart_policy == "ExitCode" else rspec.restart_policy
        if is_distributed(replicas):
            config = tf_config(meta["name"], meta["namespace"], replicas, rspec.rtype, index)
            containers = list(pod_spec.get("containers") or [])
            for position, container in enumerate(containers):
                if isinstance(container, dict) and container.get("name") == CONTAINER_NAME:
                    env = [e for e in container.get("env") or [] if not (isinstance(e, dict)
                                                                        and e.get("name") == "TF_CONFIG")]
                    env.append({"name": "TF_CONFIG", "value": config})
                    containers[position] = {**container, "env": env}
            pod_spec["containers"] = containers
        annotations = dict(tmeta.get("annotations") or {})
        if self.gang_scheduler is not None:
            if not pod_spec.get("schedulerName"):
                pod_spec["schedulerName"] = self.gang_scheduler
            elif pod_spec["schedulerName"] != self.gang_scheduler:
                self._event(job, "SettedPodTemplateSchedulerName", "Another scheduler is specified when "
                            "gang-scheduling is enabled and it will not be overwritten", type="Warning")
            annotations.update({GROUP_NAME: meta["name"], TASK_SPEC: rspec.rtype.lower()})
        pod_meta: dict[str, Any] = {"name": name, "namespace": meta["namespace"], "labels": labels,
                                    "ownerReferences": [self._owner_ref(job)]}
        if annotations:
            pod_meta["annotations"] = annotations
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}
        try:
            self.created(PODS, self._store.create(PODS, body, shared=True))
        except ApiError as e:  # AlreadyExists from a pod still being deleted: retry next pass
            log.debug("tfjob %s: create pod %s: %s", meta["name"], name, e)
            return
        self._event(job, "SuccessfulCreatePod", f"Created pod: {name}")

    def _ensure_service(self, job: Job, rspec: ReplicaSpec, index: int) -> None:
        meta = job["metadata"]
        name = f"{meta['name']}-{rspec.rtype.lower()}-{index}"
        if self._store.peek(SERVICES, meta["namespace"], name) is not None:
            return
        main = _main_container(rspec.template.get("spec", {}).get("containers", [])) or {}
        ports = [{"name": p.get("name"), "port": p.get("containerPort"), "targetPort": p.get("containerPort"),
                  "protocol": p.get("protocol", "TCP")}
                 for p in main.get("ports") or [] if isinstance(p, dict)]
        labels = self.labels(meta["name"], rspec.rtype, index)
        body = {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels,
                             "ownerReferences": [self._owner_ref(job)]},
                "spec": {"clusterIP": "None", "selector": labels, "ports": ports, "type": "ClusterIP"}}
        try:
            self.created(SERVICES, self._store.create(SERVICES, body, shared=True))
        except ApiError as e:
            log.debug("tfjob %s: create service %s: %s", meta["name"], name, e)
            return
        self._event(job, "SuccessfulCreateService", f"Created service: {name}")

    def _delete_pods_and_services(self, job: Job, pods: list[Pod], *, policy: str) -> None:
        if policy == "None":
            return
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase")
            if policy == "Running" and phase not in ("Running", "Pending", None):
                continue
            name = pod["metadata"]["name"]
            if self._delete(PODS, job, name):
                self._event(job, "SuccessfulDeletePod", f"Deleted pod: {name}")
            if self._delete(SERVICES, job, name):
                self._event(job, "SuccessfulDeleteService", f"Deleted service: {name}")

    def _delete(self, res: Any, job: Job, name: str) -> bool:
        try:
            self._store.delete(res, job["metadata"]["namespace"], name, shared=True)
        except ApiError as e:  # already gone
            log.debug("tfjob %s: delete %s %s: %s", job["metadata"]["name"], res.plural, name, e)
            return False
        return True

    def _write(self, job: Job, status: dict[str, Any], old_status: dict[str, Any], now_ts: str) -> None:
        if status == old_status:
            return
        status["lastReconcileTime"] = now_ts
        try:
            key = (job["metadata"]["namespace"], job["metadata"]["name"])
            self.wrote(key, self._store.update_status(TFJOBS, *key, status, shared=True))
        except ApiError as e:  # deleted meanwhile
            log.debug("tfjob %s: status update: %s", job["metadata"]["name"], e)

    def _event(self, job: Job, reason: str, message: str, *, type: str = "Normal") -> None:
        try:
            # the store names training-operator's component; the older operator reported as tf-operator
            self._store.record_event(job, reason=reason, message=message, type=type,
                                     component="tf-operator" if self.dialect == "tf-operator" else None)
        except ApiError as e:
            log.debug("tfjob %s: event %s: %s", job["metadata"]["name"], reason, e)
