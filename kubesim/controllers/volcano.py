"""Simulated Volcano job controller (volcano v1.15.1) for batch.volcano.sh/v1alpha1 Jobs.

Contract: a `Reconciler` keyed ("job", namespace, name) for Volcano Jobs and ("podgroup", namespace, name)
for PodGroups of other controllers. A change to a Volcano Job, to a pod or PodGroup it controls, or a
Command aimed at it queues the job; `reconcile_key` reads the job, its pods (owner index), PodGroup and the
pending bus.volcano.sh Commands of its namespace, and writes what Volcano's controller would:
- pods `<job>-<task>-<i>` with Volcano's labels and annotations (KUBERNETES-FACTS §2.4), a
  controller ownerReference to the Job and `schedulerName` = the job's (default `volcano`);
- PodGroup `<job>-<job uid>` (minMember, minTaskMember, queue) whose phase gates scheduling:
  Pending → Inqueue → Running once minAvailable pods exist, unless the job's scenario is
  `unschedulable` (then it stays Pending with an Unschedulable condition);
- plugins: `svc` (headless Service `<job>`, ConfigMap `<job>-svc` with `<task>.host`, pod
  hostname/subdomain, env `VC_<TASK>_HOSTS`/`VC_<TASK>_NUM`), `env` (`VK_TASK_INDEX`,
  `VC_TASK_INDEX`), `tensorflow` (TF_CONFIG in every container; implies `svc` as the webhook would);
- status: `state.phase` Pending → Running → Completing → Completed, or Failed, Restarting
  (retryCount++; Failed once retryCount ≥ maxRetry), Aborting → Aborted (AbortJob command) and back
  through Restarting on ResumeJob, Terminating → Terminated; pod counters, `taskStatusCount`,
  `conditions` ({status: <phase>, lastTransitionTime}), `runningDuration`, `controlledResources`;
- lifecycle policies (task-level before job-level) on PodFailed, PodEvicted, TaskCompleted and
  exit codes; `ttlSecondsAfterFinished` deletes the Job.
Commands are deleted once handled. A reconcile returns the job's next simulated deadline (ttl), if any.
`reconcile()` is a full pass over every job and PodGroup.

It also plays the Volcano scheduler for PodGroups no Volcano Job controls (those training-operator makes
for gang-scheduled TFJobs): an unset or `Pending` phase becomes `Inqueue` at once (enqueue; queues have no
capacity limit here); `Inqueue` becomes `Running` once at least minMember live pods with
`schedulerName: volcano` and the annotation `scheduling.k8s.io/group-name=<PodGroup>` exist and none is
unschedulable by its scenario; while one is, the PodGroup stays `Inqueue` with the same `Unschedulable`
condition and Warning event as a Volcano Job's. `Running` becomes `Completed` once no member is live and
at least minMember succeeded. The scheduler+kubelet binds the members once the PodGroup is `Running`.
Such a PodGroup is queued when it changes or when one of its members does (a pod whose group-name
annotation names it, found through the store's gang index `podgroup-members`): the scheduler never rescans
every pod.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubesim.controllers.clock import SimClock, go_duration
from kubesim.controllers.reconciler import Reconciler, controller_of
from kubesim.controllers.scenarios import Scenario
from kubesim.errors import ApiError
from kubesim.store import (
    COMMANDS,
    CONFIGMAPS,
    PODGROUPS,
    PODS,
    SERVICES,
    VCJOBS,
    Resource,
    Store,
    WatchEvent,
    clone,
)

log = logging.getLogger(__name__)

TERMINAL = ("Completed", "Failed", "Terminated")
RESTART_ACTIONS = ("RestartJob", "RestartTask", "RestartPod", "RestartPartition")
JOB_NAME = "volcano.sh/job-name"
JOB_NAMESPACE = "volcano.sh/job-namespace"
TASK_SPEC = "volcano.sh/task-spec"
TASK_INDEX = "volcano.sh/task-index"
QUEUE_NAME = "volcano.sh/queue-name"
GROUP_NAME = "scheduling.k8s.io/group-name"
JOB_VERSION = "volcano.sh/job-version"
TEMPLATE_UID = "volcano.sh/template-uid"
RETRY_COUNT = "volcano.sh/job-retry-count"
TF_ROLES = ("ps", "worker", "chief", "evaluator")
GANG_INDEX = "podgroup-members"  # the store index of pods by <namespace>/<group-name annotation>

Obj = Mapping[str, Any]  # a stored object as the store's views hand it out: read-only
JobScenario = Callable[[str, str], Scenario]
PodScenario = Callable[[Obj], Scenario]


def task_names(spec: dict[str, Any]) -> list[str]:
    """Task names with the webhook's `default<idx>` default."""
    return [t.get("name") or f"default{i}" for i, t in enumerate(spec.get("tasks") or []) if isinstance(t, dict)]


def job_min_available(spec: dict[str, Any]) -> int:
    """spec.minAvailable, defaulting to the sum of the tasks' minAvailable/replicas."""
    if isinstance(spec.get("minAvailable"), int) and spec["minAvailable"] > 0:
        return int(spec["minAvailable"])
    return sum(int(t.get("minAvailable", t.get("replicas", 0)) or 0) for t in spec.get("tasks") or [])


def plugins(spec: dict[str, Any]) -> dict[str, list[str]]:
    """Plugins, with `svc` added when a distributed-framework plugin needs it (mutating webhook)."""
    result = {k: list(v or []) for k, v in (spec.get("plugins") or {}).items()}
    if any(p in result for p in ("tensorflow", "mpi", "pytorch", "ray")):
        result.setdefault("svc", [])
    return result


def tf_plugin_config(args: list[str]) -> tuple[dict[str, str], int]:
    """Task name for each TF role and the port, from the tensorflow plugin's arguments."""
    roles = {role: role for role in TF_ROLES}
    port = 2222
    for arg in args:
        key, _, value = arg.lstrip("-").partition("=")
        if key in roles and value:
            roles[key] = value
        elif key == "port" and value.isdigit():
            port = int(value)
    return roles, port


def tf_config(job_name: str, tasks: dict[str, int], args: list[str], task: str, index: int) -> str | None:
    """TF_CONFIG Volcano's tensorflow plugin injects (no `environment` key); None when not distributed."""
    if len(tasks) == 1 and sum(tasks.values()) == 1:
        return None
    roles, port = tf_plugin_config(args)
    cluster: dict[str, list[str]] = {}
    task_type = task
    for role in TF_ROLES:
        name = roles[role]
        if name in tasks and tasks[name] > 0:
            cluster[role] = [f"{job_name}-{name}-{i}.{job_name}:{port}" for i in range(tasks[name])]
        if name == task:
            task_type = role
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}, separators=(",", ":"))


def env_name(task: str) -> str:
    """Task name as it appears in svc plugin env names (VC_<TASK>_HOSTS)."""
    return task.upper().replace("-", "_")


def match_policy(job_spec: dict[str, Any], task: str | None, event: str, exit_code: int | None) -> str | None:
    """Volcano's applyPolicies: task-level policies first, then job-level; the matched action."""
    groups: list[list[Any]] = []
    if task:
        for i, t in enumerate(job_spec.get("tasks") or []):
            if (t.get("name") or f"default{i}") == task:
                groups.append(t.get("policies") or [])
    groups.append(job_spec.get("policies") or [])
    for policies in groups:
        for policy in policies:
            if not isinstance(policy, dict):
                continue
            events = list(policy.get("events") or []) + ([policy["event"]] if policy.get("event") else [])
            if events and event and (event in events or "*" in events):
                return str(policy.get("action"))
            if policy.get("exitCode") is not None and exit_code is not None and policy["exitCode"] == exit_code:
                return str(policy.get("action"))
    return None


def _exit_code(pod: Obj) -> int | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated and terminated.get("exitCode"):
            return int(terminated["exitCode"])
    return None


class VolcanoController(Reconciler[tuple[str, str, str]]):
    """Reconciles the batch.volcano.sh Jobs of the store, keyed ("job", namespace, name), and schedules the
    PodGroups no Volcano Job controls, keyed ("podgroup", namespace, name)."""

    name = "volcano"

    def __init__(self, store: Store, clock: SimClock, scenario_for_job: JobScenario,
                 scenario_for_pod: PodScenario) -> None:
        super().__init__(clock)
        self._store = store
        ensure_gang_index(store)
        self._scenario_for_job = scenario_for_job
        self._scenario_for_pod = scenario_for_pod
        self._handled: dict[str, set[str]] = {}  # job uid -> policy triggers already acted on
        self._running_since: dict[str, float] = {}
        self._finished: dict[str, float] = {}

    def observe(self, event: WatchEvent) -> None:
        """Queue the Volcano Job an event concerns (its own change, a pod or PodGroup it controls, a Command
        aimed at it), or the foreign PodGroup whose own state or member pods changed."""
        obj = event.object
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        res = event.resource
        if res is VCJOBS:
            self.queue.add(("job", namespace, meta["name"]))
            if event.type == "DELETED":
                for table in (self._handled, self._running_since, self._finished):
                    table.pop(meta.get("uid", ""), None)
        elif res is COMMANDS:
            for target in [obj.get("target") or {}, *(meta.get("ownerReferences") or [])]:
                name = self._command_target(target)
                if name is not None:
                    self.queue.add(("job", namespace, name))
        elif res in (PODS, PODGROUPS):
            owner = _volcano_job_owner(obj)
            self.track_owner(event, ("job", namespace, owner.get("name", "")) if owner is not None else None)
            if owner is not None:
                self.queue.add(("job", namespace, owner.get("name", "")))
            elif res is PODGROUPS:
                self.queue.add(("podgroup", namespace, meta["name"]))
            else:
                group = (meta.get("annotations") or {}).get(GROUP_NAME)
                if group and (obj.get("spec") or {}).get("schedulerName") == "volcano":
                    self.queue.add(("podgroup", namespace, group))

    def _command_target(self, target: Mapping[str, Any]) -> str | None:
        """The name of the Volcano Job a Command target (an ownerReference) names, by uid or by kind and name."""
        if target.get("uid"):
            found = self._store.find_uid(target["uid"])
            return found[1]["metadata"]["name"] if found is not None and found[0] is VCJOBS else None
        return str(target["name"]) if target.get("kind") == "Job" and target.get("name") else None

    def all_keys(self) -> list[tuple[str, str, str]]:
        """Every Volcano Job and every PodGroup (those of Volcano Jobs are skipped when reconciled)."""
        keys = [("job", job["metadata"]["namespace"], job["metadata"]["name"]) for job in self._store.select(VCJOBS)]
        return keys + [("podgroup", group["metadata"]["namespace"], group["metadata"]["name"])
                       for group in self._store.select(PODGROUPS)]

    def reconcile_key(self, key: tuple[str, str, str]) -> float | None:
        """Reconcile one Volcano Job or schedule one foreign PodGroup; the next simulated deadline, if any."""
        kind, namespace, name = key
        if kind == "podgroup":
            self._schedule_foreign_podgroup(namespace, name)
            return None
        job = self._store.peek(VCJOBS, namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return None
        try:
            return self._reconcile_job(job, self._store.select(COMMANDS, namespace))
        except Exception as e:  # noqa: BLE001 - logged like the controller logs a failed sync
            log.warning("vcjob %s/%s: reconcile failed: %s", namespace, name, e)
            return None

    # -- PodGroups of other controllers ---------------------------------------------------------

    def _schedule_foreign_podgroup(self, namespace: str, name: str) -> None:
        """The Volcano scheduler's enqueue and gang admission for a PodGroup no Volcano Job controls."""
        podgroup = self._store.peek(PODGROUPS, namespace, name)
        if podgroup is None or podgroup["metadata"].get("deletionTimestamp") \
                or _controlled_by_volcano_job(podgroup):
            return
        members = [pod for pod in gang_members(self._store, namespace, name)
                   if (pod.get("spec") or {}).get("schedulerName") == "volcano"
                   and not pod["metadata"].get("deletionTimestamp")]
        try:
            self._schedule_podgroup(podgroup, members)
        except ApiError as e:  # deleted or changed meanwhile: its next event brings it back
            log.debug("podgroup %s: %s", name, e)

    def _schedule_podgroup(self, podgroup: Obj, members: list[Obj]) -> None:
        meta = podgroup["metadata"]
        phase = (podgroup.get("status") or {}).get("phase") or "Pending"
        min_member = int((podgroup.get("spec") or {}).get("minMember") or 0)
        live = [p for p in members if _alive(p)]
        if phase == "Running":
            succeeded = _phase_counts(members)["Succeeded"]
            if not live and succeeded >= min_member > 0:
                self._set_podgroup_status(podgroup, "Completed")
        elif phase in ("Pending", "Inqueue"):
            if any(self._scenario_for_pod(p).name == "unschedulable" for p in live):
                self._set_podgroup_status(podgroup, "Inqueue", unschedulable=len(live), transition_id=meta["uid"])
            elif live and len(live) >= min_member:
                self._set_podgroup_status(podgroup, "Running")
            else:
                self._set_podgroup_status(podgroup, "Inqueue")

    # -- one job ------------------------------------------------------------------------------

    def _reconcile_job(self, job: Obj, commands: Sequence[Obj]) -> float | None:
        meta = job["metadata"]
        uid = meta["uid"]
        spec = job.get("spec") or {}
        old_status = job.get("status") or {}
        status = clone(dict(old_status))
        now = self._clock.now()
        if not (status.get("state") or {}).get("phase"):
            self._initialize(job, status)
        for command in commands:
            if self._targets(command, job):
                self._apply_command(job, status, command)

        pods = self._pods(job)
        phase = status["state"]["phase"]
        if phase in ("Pending", "Running"):
            pods = self._run(job, status, pods)
        elif phase == "Restarting":
            self._kill(job, pods, soft=False)
            pods = []
            retries = int(status.get("retryCount", 0))
            if retries >= int(spec.get("maxRetry", 3) or 3):
                self._set_phase(job, status, "Failed", reason="MaxRetryExceeded",
                                message=f"job restarted {retries} times, maxRetry {spec.get('maxRetry', 3)}")
            else:
                self._set_phase(job, status, "Pending")
                self._handled.pop(uid, None)
                pods = self._run(job, status, [])
        elif phase in ("Aborting", "Completing", "Terminating"):
            pods = self._kill(job, pods, soft=True)
            if not any(_alive(p) for p in pods):
                self._set_phase(job, status, {"Aborting": "Aborted", "Completing": "Completed",
                                              "Terminating": "Terminated"}[phase])
        self._count(job, status, pods)
        phase = status["state"]["phase"]
        if phase in TERMINAL or phase == "Aborted":
            self._podgroup_phase(job, "Completed" if phase in TERMINAL else "Pending")
        if phase in TERMINAL:
            self._finished.setdefault(uid, now)
        self._running_duration(job, status, now)
        if status != old_status:
            try:
                self._store.update_status(VCJOBS, meta["namespace"], meta["name"], status, shared=True)
            except ApiError as e:  # deleted meanwhile
                log.debug("vcjob %s: status update: %s", meta["name"], e)
        ttl = spec.get("ttlSecondsAfterFinished")
        if phase in TERMINAL and isinstance(ttl, (int, float)):
            due = self._finished[uid] + float(ttl)
            if due <= now:
                self._delete(VCJOBS, job, meta["name"])
                return None
            return due
        return None

    def _initialize(self, job: Obj, status: dict[str, Any]) -> None:
        spec = job.get("spec") or {}
        status.update({"minAvailable": job_min_available(spec), "version": 0, "retryCount": 0,
                       "pending": 0, "running": 0, "succeeded": 0, "failed": 0, "terminating": 0,
                       "unknown": 0})
        self._set_phase(job, status, "Pending")
        self._ensure_podgroup(job)
        enabled = plugins(spec)
        resources: dict[str, str] = {}
        for name in enabled:
            resources[f"plugin-{name}"] = name
        if "svc" in enabled:
            self._ensure_svc(job)
        if resources:
            status["controlledResources"] = resources

    def _run(self, job: Obj, status: dict[str, Any], pods: list[Obj]) -> list[Obj]:
        """Pending/Running: create missing pods, gate the gang, act on pod events, move the phase."""
        meta, spec = job["metadata"], job.get("spec") or {}
        existing = {p["metadata"]["name"]: p for p in pods}
        wanted: set[str] = set()
        changed = False
        for i, task in enumerate(spec.get("tasks") or []):
            tname = task.get("name") or f"default{i}"
            for index in range(int(task.get("replicas", 0) or 0)):
                name = f"{meta['name']}-{tname}-{index}"
                wanted.add(name)
                if name not in existing:
                    changed = self._create_pod(job, status, task, tname, index) or changed
        for name in set(existing) - wanted:  # tasks scaled down (the only spec change Volcano allows)
            self._delete(PODS, job, name)
            changed = True
        if changed:
            pods = self._pods(job)
        min_available = job_min_available(spec)
        scenario = self._scenario_for_job(meta["namespace"], meta["name"])
        if scenario.name == "unschedulable":
            self._podgroup_phase(job, "Pending", unschedulable=len([p for p in pods if _alive(p)]))
        elif len([p for p in pods if _alive(p)]) >= min_available:
            self._podgroup_phase(job, "Running")
        else:
            self._podgroup_phase(job, "Inqueue")
        counts = _phase_counts(pods)
        if status["state"]["phase"] == "Pending" and \
                counts["Running"] + counts["Succeeded"] + counts["Failed"] >= min_available > 0:
            self._set_phase(job, status, "Running")
        action = self._policy_action(job, pods)
        if action is not None:
            self._event(job, "ExecuteAction", f"Start to execute action {action[0]}")
            self._perform(job, status, action[0], pods, task=action[1])
            return self._pods(job)
        if status["state"]["phase"] == "Running":
            total = sum(int(t.get("replicas", 0) or 0) for t in spec.get("tasks") or [])
            min_success = spec.get("minSuccess")
            if isinstance(min_success, int) and counts["Succeeded"] >= min_success:
                self._set_phase(job, status, "Completing")
                return self._run_completing(job, status, pods)
            if total and counts["Succeeded"] + counts["Failed"] >= total:
                if counts["Succeeded"] >= min_available and self._tasks_min_available_met(spec, pods):
                    self._set_phase(job, status, "Completed")
                else:
                    self._set_phase(job, status, "Failed")
        return pods

    def _run_completing(self, job: Obj, status: dict[str, Any],
                        pods: list[Obj]) -> list[Obj]:
        pods = self._kill(job, pods, soft=True)
        if not any(_alive(p) for p in pods):
            self._set_phase(job, status, "Completed")
        return pods

    def _tasks_min_available_met(self, spec: dict[str, Any], pods: list[Obj]) -> bool:
        for i, task in enumerate(spec.get("tasks") or []):
            if task.get("minAvailable") is None:
                continue
            tname = task.get("name") or f"default{i}"
            done = [p for p in pods if _task_of(p) == tname and (p.get("status") or {}).get("phase") == "Succeeded"]
            if len(done) < int(task["minAvailable"]):
                return False
        return True

    def _policy_action(self, job: Obj, pods: list[Obj]) -> tuple[str, str | None] | None:
        """The first policy action triggered by a pod event not acted on before."""
        spec = job.get("spec") or {}
        handled = self._handled.setdefault(job["metadata"]["uid"], set())
        for pod in pods:
            pod_status = pod.get("status") or {}
            if pod_status.get("phase") != "Failed":
                continue
            key = f"{pod['metadata']['uid']}/failed"
            if key in handled:
                continue
            handled.add(key)
            event = "PodEvicted" if pod_status.get("reason") == "Evicted" else "PodFailed"
            action = match_policy(spec, _task_of(pod), event, _exit_code(pod))
            if action is not None:
                return action, _task_of(pod)
        for i, task in enumerate(spec.get("tasks") or []):
            tname = task.get("name") or f"default{i}"
            replicas = int(task.get("replicas", 0) or 0)
            done = [p for p in pods if _task_of(p) == tname and (p.get("status") or {}).get("phase") == "Succeeded"]
            key = f"task/{tname}/completed"
            if replicas and len(done) >= replicas and key not in handled:
                handled.add(key)
                action = match_policy(spec, tname, "TaskCompleted", None)
                if action is not None:
                    return action, tname
        return None

    def _perform(self, job: Obj, status: dict[str, Any], action: str, pods: list[Obj],
                 *, task: str | None = None) -> None:
        if action in RESTART_ACTIONS:
            targets = pods if action == "RestartJob" or task is None else [p for p in pods if _task_of(p) == task]
            self._kill(job, targets, soft=False)
            status["retryCount"] = int(status.get("retryCount", 0)) + 1
            status["version"] = int(status.get("version", 0)) + 1
            self._set_phase(job, status, "Restarting", reason=action)
        elif action == "AbortJob":
            self._set_phase(job, status, "Aborting", reason=action)
            self._kill(job, pods, soft=True)
        elif action == "TerminateJob":
            self._set_phase(job, status, "Terminating", reason=action)
            self._kill(job, pods, soft=True)
        elif action == "CompleteJob":
            self._set_phase(job, status, "Completing", reason=action)
            self._kill(job, pods, soft=True)
        if status["state"]["phase"] in ("Aborting", "Completing", "Terminating"):
            remaining = [p for p in self._pods(job) if _alive(p)]
            if not remaining:
                self._set_phase(job, status, {"Aborting": "Aborted", "Completing": "Completed",
                                              "Terminating": "Terminated"}[status["state"]["phase"]])

    # -- commands ----------------------------------------------------------------------------------

    @staticmethod
    def _targets(command: Obj, job: Obj) -> bool:
        if command["metadata"].get("namespace") != job["metadata"]["namespace"]:
            return False
        targets = [command.get("target") or {}] + list(command["metadata"].get("ownerReferences") or [])
        for target in targets:
            if target.get("uid") == job["metadata"]["uid"] or (
                    not target.get("uid") and target.get("kind") == "Job" and target.get("name") == job["metadata"]["name"]):
                return True
        return False

    def _apply_command(self, job: Obj, status: dict[str, Any], command: Obj) -> None:
        action = str(command.get("action") or "")
        self._event(job, "CommandIssued", f"Start to execute action {action}")
        phase = status["state"]["phase"]
        if action == "ResumeJob":
            if phase == "Aborted":
                status["retryCount"] = int(status.get("retryCount", 0)) + 1
                status["version"] = int(status.get("version", 0)) + 1
                self._set_phase(job, status, "Restarting", reason=action)
        elif phase not in TERMINAL and phase != "Aborted":
            self._perform(job, status, action, self._pods(job))
        try:
            self._store.delete(COMMANDS, command["metadata"]["namespace"], command["metadata"]["name"], shared=True)
        except ApiError as e:  # already handled by another pass
            log.debug("vcjob %s: delete command: %s", job["metadata"]["name"], e)

    # -- children ------------------------------------------------------------------------------------

    def _pods(self, job: Obj) -> list[Obj]:
        """The job's pods: owned by it and labelled with its name (read-only, from the owner index)."""
        meta = job["metadata"]
        return [pod for pod in self._store.owned(PODS, meta["uid"])
                if (pod["metadata"].get("labels") or {}).get(JOB_NAME) == meta["name"]]

    def _owner_ref(self, job: Obj) -> dict[str, Any]:
        return {"apiVersion": VCJOBS.api_version, "kind": "Job", "name": job["metadata"]["name"],
                "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    def podgroup_name(self, job: Obj) -> str:
        """`<job>-<uid>`, the PodGroup Volcano makes for a job."""
        return f"{job['metadata']['name']}-{job['metadata']['uid']}"

    def _create_pod(self, job: Obj, status: dict[str, Any], task: dict[str, Any], tname: str,
                    index: int) -> bool:
        meta, spec = job["metadata"], job.get("spec") or {}
        name = f"{meta['name']}-{tname}-{index}"
        queue = spec.get("queue") or "default"
        template = clone(task.get("template") or {})
        tmeta = template.get("metadata") or {}
        pod_spec = template.get("spec") or {}
        labels = {**(tmeta.get("labels") or {}), TASK_INDEX: str(index), JOB_NAME: meta["name"],
                  TASK_SPEC: tname, JOB_NAMESPACE: meta["namespace"], QUEUE_NAME: queue}
        annotations = {**(tmeta.get("annotations") or {}), TASK_INDEX: str(index), TASK_SPEC: tname,
                       GROUP_NAME: self.podgroup_name(job), JOB_NAME: meta["name"], QUEUE_NAME: queue,
                       JOB_VERSION: str(status.get("version", 0)), TEMPLATE_UID: f"{meta['name']}-{tname}",
                       RETRY_COUNT: str(status.get("retryCount", 0))}
        pod_spec["schedulerName"] = pod_spec.get("schedulerName") or spec.get("schedulerName") or "volcano"
        if spec.get("priorityClassName") and not pod_spec.get("priorityClassName"):
            pod_spec["priorityClassName"] = spec["priorityClassName"]
        self._apply_plugins(job, pod_spec, name, tname, index)
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels,
                             "annotations": annotations, "ownerReferences": [self._owner_ref(job)]},
                "spec": pod_spec}
        try:
            self._store.create(PODS, body, shared=True)
        except ApiError as e:  # AlreadyExists while an old pod is still going away: next pass
            log.debug("vcjob %s: create pod %s: %s", meta["name"], name, e)
            return False
        return True

    def _apply_plugins(self, job: Obj, pod_spec: dict[str, Any], pod_name: str, tname: str,
                       index: int) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        enabled = plugins(spec)
        task_sizes = {t.get("name") or f"default{i}": int(t.get("replicas", 0) or 0)
                      for i, t in enumerate(spec.get("tasks") or [])}
        extra_env: list[dict[str, Any]] = []
        if "env" in enabled:
            extra_env += [{"name": "VK_TASK_INDEX", "value": str(index)},
                          {"name": "VC_TASK_INDEX", "value": str(index)}]
        if "svc" in enabled:
            pod_spec["hostname"] = pod_name
            pod_spec["subdomain"] = meta["name"]
            for task, size in task_sizes.items():
                hosts = ",".join(f"{meta['name']}-{task}-{i}.{meta['name']}" for i in range(size))
                extra_env += [{"name": f"VC_{env_name(task)}_HOSTS", "value": hosts},
                              {"name": f"VC_{env_name(task)}_NUM", "value": str(size)}]
            volume = f"{meta['name']}-svc"
            pod_spec.setdefault("volumes", []).append({"name": volume, "configMap": {"name": volume}})
        tf_env: list[dict[str, Any]] = []
        if "tensorflow" in enabled:
            config = tf_config(meta["name"], task_sizes, enabled["tensorflow"], tname, index)
            if config is not None:
                tf_env = [{"name": "TF_CONFIG", "value": config}]
        for key in ("containers", "initContainers"):
            for container in pod_spec.get(key) or []:
                if not isinstance(container, dict):
                    continue
                env = container.setdefault("env", [])
                env.extend(clone(extra_env))
                if key == "containers":
                    env.extend(clone(tf_env))
                if "svc" in enabled:
                    container.setdefault("volumeMounts", []).append(
                        {"name": f"{meta['name']}-svc", "mountPath": "/etc/volcano"})

    def _ensure_svc(self, job: Obj) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        owner = [self._owner_ref(job)]
        service = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": meta["name"], "namespace": meta["namespace"], "ownerReferences": owner},
                   "spec": {"clusterIP": "None",
                            "selector": {JOB_NAME: meta["name"], JOB_NAMESPACE: meta["namespace"]},
                            "ports": [{"name": "placeholder-volcano", "port": 1000, "protocol": "TCP",
                                       "targetPort": 1000}],
                            "publishNotReadyAddresses": "--publish-not-ready-addresses"
                            in plugins(spec).get("svc", [])}}
        data = {}
        for i, task in enumerate(spec.get("tasks") or []):
            tname = task.get("name") or f"default{i}"
            data[f"{tname}.host"] = "\n".join(f"{meta['name']}-{tname}-{j}.{meta['name']}"
                                             for j in range(int(task.get("replicas", 0) or 0)))
        config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": f"{meta['name']}-svc", "namespace": meta["namespace"],
                                   "ownerReferences": owner},
                      "data": data}
        children: tuple[tuple[Resource, dict[str, Any]], ...] = ((SERVICES, service), (CONFIGMAPS, config_map))
        for res, body in children:
            if self._store.peek(res, meta["namespace"], body["metadata"]["name"]) is None:
                try:
                    self._store.create(res, body, shared=True)
                except ApiError as e:
                    log.debug("vcjob %s: create %s: %s", meta["name"], res.plural, e)

    def _ensure_podgroup(self, job: Obj) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        name = self.podgroup_name(job)
        if self._store.peek(PODGROUPS, meta["namespace"], name) is not None:
            return
        min_task = {t.get("name") or f"default{i}": int(t.get("minAvailable", t.get("replicas", 0)) or 0)
                    for i, t in enumerate(spec.get("tasks") or [])}
        body = {"apiVersion": PODGROUPS.api_version, "kind": "PodGroup",
                "metadata": {"name": name, "namespace": meta["namespace"], "ownerReferences": [self._owner_ref(job)]},
                "spec": {"minMember": job_min_available(spec), "minTaskMember": min_task,
                         "queue": spec.get("queue") or "default",
                         **({"priorityClassName": spec["priorityClassName"]} if spec.get("priorityClassName") else {})}}
        try:
            self._store.create(PODGROUPS, body, shared=True)
            self._store.update_status(PODGROUPS, meta["namespace"], name, {"phase": "Pending"}, shared=True)
        except ApiError as e:
            log.debug("vcjob %s: create podgroup: %s", meta["name"], e)

    def _podgroup_phase(self, job: Obj, phase: str, *, unschedulable: int = 0) -> None:
        podgroup = self._store.peek(PODGROUPS, job["metadata"]["namespace"], self.podgroup_name(job))
        if podgroup is not None:
            self._set_podgroup_status(podgroup, phase, unschedulable=unschedulable,
                                      transition_id=job["metadata"]["uid"])

    def _set_podgroup_status(self, podgroup: Obj, phase: str, *, unschedulable: int = 0,
                             transition_id: str = "") -> None:
        """Write the phase; `unschedulable` pods add the gang's Unschedulable condition (event once)."""
        meta = podgroup["metadata"]
        old = podgroup.get("status") or {}
        status = dict(old, phase=phase)
        if unschedulable:
            min_member = (podgroup.get("spec") or {}).get("minMember", unschedulable)
            message = (f"{unschedulable}/{unschedulable} tasks in gang unschedulable: pod group is not ready, "
                       f"{unschedulable} Pending, {min_member} minAvailable; Pending: {unschedulable} Unschedulable")
            status["conditions"] = [{"type": "Unschedulable", "status": "True", "reason": "NotEnoughResources",
                                     "message": message, "transitionID": transition_id,
                                     "lastTransitionTime": (old.get("conditions") or [{}])[0].get(
                                         "lastTransitionTime") or self._clock.timestamp()}]
            if not old.get("conditions"):
                self._event(podgroup, "Unschedulable", message, type="Warning")
        elif phase == "Running":
            status.pop("conditions", None)
        if status != old:
            self._store.update_status(PODGROUPS, meta["namespace"], meta["name"], status, shared=True)

    def _kill(self, job: Obj, pods: list[Obj], *, soft: bool) -> list[Obj]:
        """Delete the job's pods; soft keeps Succeeded/Failed ones (PodRetainPhaseSoft)."""
        kept = []
        for pod in pods:
            if soft and not _alive(pod):
                kept.append(pod)
                continue
            self._delete(PODS, job, pod["metadata"]["name"])
        return kept

    def _delete(self, res: Any, job: Obj, name: str) -> None:
        try:
            self._store.delete(res, job["metadata"]["namespace"], name, shared=True)
        except ApiError as e:  # already gone
            log.debug("vcjob %s: delete %s %s: %s", job["metadata"]["name"], res.plural, name, e)

    # -- status --------------------------------------------------------------------------------------

    def _set_phase(self, job: Obj, status: dict[str, Any], phase: str, *, reason: str = "",
                   message: str = "") -> None:
        state = status.setdefault("state", {})
        if state.get("phase") == phase:
            return
        ts = self._clock.timestamp()
        status["state"] = {"phase": phase, "lastTransitionTime": ts,
                           **({"reason": reason} if reason else {}), **({"message": message} if message else {})}
        status.setdefault("conditions", []).append({"status": phase, "lastTransitionTime": ts})
        if phase == "Running":
            self._running_since.setdefault(job["metadata"]["uid"], self._clock.now())
        if phase in ("Failed", "Aborted", "Terminated"):
            self._event(job, phase, message or f"Job {job['metadata']['name']} is {phase.lower()}",
                        type="Warning" if phase == "Failed" else "Normal")

    def _count(self, job: Obj, status: dict[str, Any], pods: list[Obj]) -> None:
        counts = {"pending": 0, "running": 0, "succeeded": 0, "failed": 0, "terminating": 0, "unknown": 0}
        per_task: dict[str, dict[str, dict[str, int]]] = {}
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase") or "Pending"
            if pod["metadata"].get("deletionTimestamp"):
                counts["terminating"] += 1
            elif phase.lower() in counts:
                counts[phase.lower()] += 1
            task = _task_of(pod) or ""
            bucket = per_task.setdefault(task, {"phase": {}})["phase"]
            bucket[phase] = bucket.get(phase, 0) + 1
        status.update(counts)
        status["minAvailable"] = job_min_available(job.get("spec") or {})
        if per_task:
            status["taskStatusCount"] = per_task
        else:
            status.pop("taskStatusCount", None)

    def _running_duration(self, job: Obj, status: dict[str, Any], now: float) -> None:
        since = self._running_since.get(job["metadata"]["uid"])
        if since is None:
            return
        # written once the job stops running: refreshing it every pass would make every pass a write
        if status["state"]["phase"] in (*TERMINAL, "Aborted") and "runningDuration" not in status:
            status["runningDuration"] = go_duration(now - since)

    def _event(self, obj: Obj, reason: str, message: str, *, type: str = "Normal") -> None:
        try:
            self._store.record_event(obj, reason=reason, message=message, type=type)
        except ApiError as e:
            log.debug("vcjob: event %s: %s", reason, e)


def _volcano_job_owner(obj: Obj) -> Obj | None:
    owner = controller_of(obj)
    if owner is not None and owner.get("kind") == "Job" and owner.get("apiVersion") == VCJOBS.api_version:
        return owner
    return None


def _controlled_by_volcano_job(obj: Obj) -> bool:
    return _volcano_job_owner(obj) is not None


def _gang_index(pod: Obj) -> list[str]:
    group = (pod["metadata"].get("annotations") or {}).get(GROUP_NAME)
    return [f"{pod['metadata'].get('namespace', '')}/{group}"] if group else []


def ensure_gang_index(store: Store) -> None:
    """Index pods by `<namespace>/<PodGroup>` (their group-name annotation), once per store."""
    if not store.has_index(PODS, GANG_INDEX):
        store.add_index(PODS, GANG_INDEX, _gang_index)


def gang_members(store: Store, namespace: str, group: str) -> list[Obj]:
    """The pods (read-only) whose group-name annotation names this PodGroup; needs `ensure_gang_index`."""
    return store.by_index(PODS, GANG_INDEX, f"{namespace}/{group}")


def _alive(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") \
        and not pod["metadata"].get("deletionTimestamp")


def _task_of(pod: Obj) -> str | None:
    return (pod["metadata"].get("labels") or {}).get(TASK_SPEC) \
        or (pod["metadata"].get("annotations") or {}).get(TASK_SPEC)


def _phase_counts(pods: list[Obj]) -> dict[str, int]:
    counts = {"Pending": 0, "Running": 0, "Succeeded": 0, "Failed": 0, "Unknown": 0}
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        counts[phase] = counts.get(phase, 0) + 1
    return counts
