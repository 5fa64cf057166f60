"""Simulated scheduler + kubelet: moves every pod through the life its job's scenario prescribes.

Contract: a `Reconciler` keyed by pod (namespace, name). `Controllers` queues a pod when it changes (or
when its PodGroup does) and when its own timer is due; `reconcile_key` advances that one pod as far as is
due and returns the simulated time at which its next step becomes due (None when it waits on no time).
`reconcile()` is a full pass over every pod. Everything it writes is
what a real cluster shows: `spec.nodeName` (bind), `status.phase`, `conditions` (PodScheduled with
reason Unschedulable, Initialized, ContainersReady, Ready), `hostIP`/`podIP`/`startTime`,
`containerStatuses[].state|lastState` (waiting ContainerCreating / ErrImagePull / ImagePullBackOff /
CrashLoopBackOff, running, terminated Completed / Error / OOMKilled with exitCode), `restartCount`,
plus events (Scheduled, FailedScheduling from default-scheduler or volcano, Pulling, Pulled, Failed,
BackOff, Created, Started) and a few log lines per container.

Pods with `schedulerName: volcano` and a `scheduling.k8s.io/group-name` annotation are bound only
once their PodGroup is `Running` (gang scheduling, decided by the Volcano controller); such a pod waits
without a timer, and a change to its PodGroup (found through the store's gang index) queues it again.
Container restarts happen here (in place, restartCount++) when the pod restartPolicy is
OnFailure/Always, like a real kubelet; with Never the pod ends Failed. A pod's
`spec.activeDeadlineSeconds` counts from its binding (`status.startTime`): when it passes, the pod
is Failed with reason `DeadlineExceeded` and its containers killed (exit 137), whatever its
restartPolicy, as the kubelet's active-deadline handler does.
Each container starts with the environment a kubelet would give it (kubesim.podenv: downward-API
values such as the Job completion index resolved, `$(VAR)` expanded, ConfigMap references read), and
its first log lines show the TF_CONFIG it sees (`INFO:tensorflow:TF_CONFIG environment variable: {...}`);
a JobSet pod whose TF_CONFIG makes it a `ps` task serves until deleted, like a TFJob's PS replica.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesim import errors
from kubesim.controllers.clock import SimClock
from kubesim.controllers.reconciler import Reconciler
from kubesim.controllers.scenarios import Scenario
from kubesim.controllers.volcano import ensure_gang_index, gang_members
from kubesim.errors import ApiError
from kubesim.jobset import JOBSET_NAME
from kubesim.podenv import container_env
from kubesim.store import CONFIGMAPS, PODGROUPS, PODS, Store, WatchEvent, pod_qos_class

log = logging.getLogger(__name__)

SCHEDULE_DELAY = 0.5  # simulated seconds from creation to binding
CREATE_DELAY = 1.0  # simulated seconds from binding to containers running
BACKOFF_DELAY = 1.0  # simulated seconds a crashed container waits before it is restarted
PULL_BACKOFF_DELAY = 1.0  # simulated seconds from ErrImagePull to ImagePullBackOff
NODES: tuple[tuple[str, str], ...] = (
    ("kubesim-node-1", "10.0.0.11"),
    ("kubesim-node-2", "10.0.0.12"),
    ("kubesim-node-3", "10.0.0.13"),
)
GROUP_NAME_ANNOTATION = "scheduling.k8s.io/group-name"
PS_LABELS = ("training.kubeflow.org/replica-type", "replica-type")
TFJOB_KINDS = ("TFJob",)


@dataclass
class PodRun:
    """What the kubelet remembers about one pod (by uid) between reconciles."""

    stage: str  # scheduling | gang-wait | unschedulable | creating | pull-backoff | running | crash-backoff | done
    due: float | None
    scenario: Scenario
    crashes: int = 0
    notes: set[str] = field(default_factory=set)  # one-shot events already recorded
    deadline: float | None = None  # simulated time at which spec.activeDeadlineSeconds runs out


Pod = Mapping[str, Any]  # a stored pod as the store's views hand it out: read-only
ScenarioResolver = Callable[[Pod], Scenario]


class Kubelet(Reconciler[tuple[str, str]]):
    """Scheduler + kubelet for the pods of the store, keyed by (namespace, name)."""

    name = "kubelet"

    def __init__(self, store: Store, clock: SimClock, scenario_for: ScenarioResolver) -> None:
        super().__init__(clock)
        self._store = store
        self._scenario_for = scenario_for
        self._runs: dict[str, PodRun] = {}
        ensure_gang_index(store)

    def observe(self, event: WatchEvent) -> None:
        """A pod changed: it is dirty. A PodGroup changed: its member pods (which may wait for it) are."""
        meta = event.object["metadata"]
        namespace = meta.get("namespace", "")
        if event.resource is PODS:
            key = (namespace, meta["name"])
            if event.type == "DELETED":
                self._runs.pop(meta.get("uid", ""), None)
                self.forget(key)
            elif self.own_write(key, event):
                return
            self.queue.add(key)
        elif event.resource is PODGROUPS:
            self.queue.add_all((namespace, pod["metadata"]["name"])
                               for pod in gang_members(self._store, namespace, meta["name"]))

    def all_keys(self) -> list[tuple[str, str]]:
        """Every pod."""
        return [(pod["metadata"]["namespace"], pod["metadata"]["name"]) for pod in self._store.select(PODS)]

    def reconcile_key(self, key: tuple[str, str]) -> float | None:
        """Advance one pod as far as is due; the next simulated time something about it becomes due."""
        pod = self._store.peek(PODS, *key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return None
        try:
            return self._step(pod)
        except ApiError as e:  # deleted or changed under us: look again shortly
            log.debug("kubelet: pod %s: %s", key[1], e)
            return self._clock.now() + SCHEDULE_DELAY
        except Exception:
            log.warning("kubelet: pod %s", key[1], exc_info=True)
            return None

    # -- one pod --------------------------------------------------------------------------------

    def _step(self, pod: Pod) -> float | None:
        uid = pod["metadata"]["uid"]
        now = self._clock.now()
        scenario = self._scenario_for(pod)
        run = self._runs.get(uid)
        if run is None:
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                run = PodRun("done", None, scenario)
            else:
                run = PodRun("scheduling", now + SCHEDULE_DELAY, scenario)
                pending = {**_base_status(pod), "phase": "Pending"}
                if pod.get("status") != pending:  # the API server already wrote this at creation
                    self._write_status(pod, pending)
            self._runs[uid] = run
        if scenario != run.scenario:
            self._replan(pod, run, scenario, now)
        if run.stage == "gang-wait":  # queued again, by its PodGroup or its own change: look at the gang again
            run.stage, run.due = "scheduling", now
        for _ in range(8):  # several transitions may be due at once after a long pause
            if run.stage == "done":
                break
            if run.deadline is not None and run.deadline <= now and (run.due is None or run.deadline <= run.due):
                self._deadline_exceeded(self._current(pod), run)
                break
            if run.due is None or run.due > now:
                break
            pod = self._current(pod)
            self._advance(pod, run, now)
        if run.stage == "done":
            return None
        if run.deadline is not None and (run.due is None or run.deadline < run.due):
            return run.deadline
        return run.due

    def _current(self, pod: Pod) -> Pod:
        """The pod as stored now (an earlier step of this pass may have written it); NotFound if gone."""
        current = self._store.peek(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        if current is None:
            raise errors.not_found(PODS, pod["metadata"]["name"])
        return current

    def _replan(self, pod: Pod, run: PodRun, scenario: Scenario, now: float) -> None:
        run.scenario = scenario
        if run.stage in ("unschedulable", "scheduling", "gang-wait"):
            run.stage, run.due = "scheduling", now
        elif run.stage == "pull-backoff":
            run.stage, run.due = "creating", now
        elif run.stage == "creating" and scenario.name != "slow-start":
            run.due = min(run.due or now, now + CREATE_DELAY)
        elif run.stage == "running":
            run.due = self._run_until(pod, scenario, now)

    def _advance(self, pod: Pod, run: PodRun, now: float) -> None:
        scenario = run.scenario
        if run.stage == "scheduling":
            self._schedule(pod, run, now)
        elif run.stage == "creating":
            if scenario.name == "image-pull-backoff":
                self._image_pull_failed(pod, run, now)
            else:
                self._start_containers(pod, run, now)
        elif run.stage == "pull-backoff":
            self._image_pull_backoff(pod, run)
        elif run.stage == "running":
            self._container_exits(pod, run, now)
        elif run.stage == "crash-backoff":
            self._start_containers(pod, run, now, restart=True)

    def _schedule(self, pod: Pod, run: PodRun, now: float) -> None:
        scheduler = pod.get("spec", {}).get("schedulerName") or "default-scheduler"
        if run.scenario.name == "unschedulable":
            self._unschedulable(pod, run, scheduler)
            return
        group = pod["metadata"].get("annotations", {}).get(GROUP_NAME_ANNOTATION)
        if scheduler == "volcano" and group:
            podgroup = self._store.peek(PODGROUPS, pod["metadata"]["namespace"], group)
            if podgroup is None or podgroup.get("status", {}).get("phase") != "Running":
                # gang not admitted yet: the PodGroup's next change queues this pod again
                run.stage, run.due = "gang-wait", None
                return
        node, host_ip = _node_for(pod)
        bound = dict(pod)
        bound["spec"] = {**pod.get("spec", {}), "nodeName": node}
        bound["metadata"] = {k: v for k, v in pod["metadata"].items() if k != "resourceVersion"}
        pod = self._store.update(PODS, bound, shared=True)
        self.wrote((pod["metadata"]["namespace"], pod["metadata"]["name"]), pod)
        ts = self._clock.timestamp()
        status = _base_status(pod)
        status.update({
            "phase": "Pending",
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": _pod_ip(pod),
            "podIPs": [{"ip": _pod_ip(pod)}],
            "startTime": ts,
            "conditions": [
                _cond("PodReadyToStartContainers", "False", ts),
                _cond("Initialized", "True", ts),
                _cond("Ready", "False", ts, "ContainersNotReady", _not_ready(pod)),
                _cond("ContainersReady", "False", ts, "ContainersNotReady", _not_ready(pod)),
                _cond("PodScheduled", "True", ts),
            ],
            "containerStatuses": [
                _container_status(c, {"waiting": {"reason": "ContainerCreating"}}) for c in _containers(pod)
            ],
        })
        self._write_status(pod, status)
        deadline = pod.get("spec", {}).get("activeDeadlineSeconds")
        if isinstance(deadline, int) and not isinstance(deadline, bool) and deadline > 0:
            run.deadline = now + deadline
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self._event(pod, "Scheduled", f"Successfully assigned {ns}/{name} to {node}", source=scheduler)
        run.stage = "creating"
        run.due = now + (run.scenario.delay if run.scenario.name == "slow-start" else CREATE_DELAY)

    def _unschedulable(self, pod: Pod, run: PodRun, scheduler: str) -> None:
        resource = _scarce_resource(pod)
        total = len(NODES)
        if scheduler == "volcano":  # volcano's FitErrors wording
            message = f"0/{total} nodes are unavailable: {total} Insufficient {resource}."
        else:
            message = (f"0/{total} nodes are available: {total} Insufficient {resource}. preemption: 0/{total} "
                       f"nodes are available: {total} No preemption victims found for incoming pod.")
        ts = self._clock.timestamp()
        status = {**_base_status(pod), "phase": "Pending",
                  "conditions": [_cond("PodScheduled", "False", ts, "Unschedulable", message)]}
        self._write_status(pod, status)
        if "FailedScheduling" not in run.notes:
            run.notes.add("FailedScheduling")
            self._event(pod, "FailedScheduling", message, type="Warning", source=scheduler)
        run.stage, run.due = "unschedulable", None

    def _image_pull_failed(self, pod: Pod, run: PodRun, now: float) -> None:
        ts = self._clock.timestamp()
        status = _running_phase_status(pod, ready=False, ts=ts, phase="Pending")
        for c in _containers(pod):
            image = c.get("image", "")
            self._event(pod, "Pulling", f'Pulling image "{image}"', container=c)
            detail = (f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and '
                      f'unpack image "{image}": failed to resolve reference "{image}": {image}: not found')
            self._event(pod, "Failed", detail, type="Warning", container=c)
            self._event(pod, "Failed", "Error: ErrImagePull", type="Warning", container=c)
            _set_container(status, c["name"], state={"waiting": {"reason": "ErrImagePull", "message": detail}})
        self._write_status(pod, status)
        run.stage, run.due = "pull-backoff", now + PULL_BACKOFF_DELAY

    def _image_pull_backoff(self, pod: Pod, run: PodRun) -> None:
        status = dict(pod.get("status", {}))
        status["containerStatuses"] = [dict(cs) for cs in status.get("containerStatuses", [])]
        for c in _containers(pod):
            image = c.get("image", "")
            message = f'Back-off pulling image "{image}"'
            _set_container(status, c["name"], state={"waiting": {"reason": "ImagePullBackOff", "message": message}})
            self._event(pod, "BackOff", message, container=c)
            self._event(pod, "Failed", "Error: ImagePullBackOff", type="Warning", container=c)
        self._write_status(pod, status)
        run.due = None  # stays until the scenario changes

    def _start_containers(self, pod: Pod, run: PodRun, now: float, *, restart: bool = False) -> None:
        ts = self._clock.timestamp()
        status = _running_phase_status(pod, ready=True, ts=ts, phase="Running")
        for c in _containers(pod):
            if not restart:
                self._event(pod, "Pulled", f'Container image "{c.get("image", "")}" already present on machine',
                            container=c)
            self._event(pod, "Created", f"Created container {c['name']}", container=c)
            self._event(pod, "Started", f"Started container {c['name']}", container=c)
            _set_container(status, c["name"], state={"running": {"startedAt": ts}}, ready=True, started=True,
                           container_id=_container_id(pod, c, run.crashes))
            env = container_env(pod, c, config_map=lambda ns, name: self._store.peek(CONFIGMAPS, ns, name))
            self._log(pod, c, _startup_lines(env, restart=restart))
        self._write_status(pod, status)
        run.stage = "running"
        run.due = self._run_until(pod, run.scenario, now)

    def _run_until(self, pod: Pod, scenario: Scenario, now: float) -> float | None:
        if not scenario.terminates or (_serves_forever(pod) and scenario.name != "evicted"):
            return None
        return now + scenario.after

    def _container_exits(self, pod: Pod, run: PodRun, now: float) -> None:
        scenario = run.scenario
        if scenario.name == "evicted":
            self._evict(pod, run)
            return
        recovered = scenario.name == "crashloop" and run.crashes >= scenario.restarts
        if recovered or scenario.name in ("succeed", "slow-start"):
            code, reason = 0, "Completed"
        elif scenario.name == "oomkilled":
            code, reason = 137, "OOMKilled"
        else:
            code, reason = scenario.exit_code, "Error" if scenario.exit_code else "Completed"
        ts = self._clock.timestamp()
        restart_policy = pod.get("spec", {}).get("restartPolicy") or "Always"
        restarts = code != 0 and restart_policy in ("OnFailure", "Always")
        status = dict(pod.get("status", {}))
        status["containerStatuses"] = [dict(cs) for cs in status.get("containerStatuses", [])]
        for c in _containers(pod):
            self._log(pod, c, _exit_lines(scenario, code))
            current: dict[str, Any] = next(
                (cs for cs in status["containerStatuses"] if cs.get("name") == c["name"]), {})
            started = current.get("state", {}).get("running", {}).get("startedAt", ts)
            terminated = {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": ts,
                          "containerID": current.get("containerID", _container_id(pod, c, run.crashes))}
            if restarts:
                message = (f"back-off 10s restarting failed container={c['name']} pod="
                           f"{pod['metadata']['name']}_{pod['metadata']['namespace']}({pod['metadata']['uid']})")
                _set_container(status, c["name"], state={"waiting": {"reason": "CrashLoopBackOff", "message": message}},
                               last_state={"terminated": terminated}, ready=False, started=False,
                               restart_count=int(current.get("restartCount", 0)) + 1)
                self._event(pod, "BackOff", f"Back-off restarting failed container {c['name']} in pod "
                            f"{pod['metadata']['name']}_{pod['metadata']['namespace']}({pod['metadata']['uid']})",
                            type="Warning", container=c)
            else:
                _set_container(status, c["name"], state={"terminated": terminated}, ready=False, started=False)
        reason_text = "PodCompleted" if code == 0 else "PodFailed"
        status["conditions"] = [dict(c) for c in status.get("conditions", [])]  # the stored ones are read-only
        for cond in status["conditions"]:
            if cond.get("type") in ("Ready", "ContainersReady"):
                cond.update(status="False", reason=reason_text if not restarts else "ContainersNotReady",
                            lastTransitionTime=ts)
        if restarts:
            run.crashes += 1
            run.stage, run.due = "crash-backoff", now + BACKOFF_DELAY
        else:
            status["phase"] = "Succeeded" if code == 0 else "Failed"
            run.stage, run.due = "done", None
        self._write_status(pod, status)

    def _evict(self, pod: Pod, run: PodRun) -> None:
        """Pod-level failure: the kubelet never restarts an evicted pod, whatever its restartPolicy."""
        ts = self._clock.timestamp()
        names = [c["name"] for c in _containers(pod)]
        message = ("The node was low on resource: memory. Threshold quantity: 100Mi, available: 61440Ki. "
                   f"Container {names[0] if names else 'main'} was using 14Gi, request is 0, has larger consumption "
                   "of memory. ")
        status = dict(pod.get("status", {}))
        status["containerStatuses"] = [dict(cs) for cs in status.get("containerStatuses", [])]
        for name in names:
            _set_container(status, name, ready=False, started=False, state={"terminated": {
                "exitCode": 137, "reason": "ContainerStatusUnknown", "finishedAt": ts,
                "message": "The container could not be located when the pod was terminated"}})
        conditions = [dict(c) for c in status.get("conditions", []) if c.get("type") != "DisruptionTarget"]
        for cond in conditions:
            if cond.get("type") in ("Ready", "ContainersReady"):
                cond.update(status="False", reason="PodFailed", lastTransitionTime=ts)
        conditions.append(_cond("DisruptionTarget", "True", ts, "TerminationByKubelet", message))
        status.update(phase="Failed", reason="Evicted", message=message, conditions=conditions)
        self._write_status(pod, status)
        self._event(pod, "Evicted", message, type="Warning")
        for name in names:
            self._event(pod, "Killing", f"Stopping container {name}", container={"name": name})
        run.stage, run.due = "done", None

    def _deadline_exceeded(self, pod: Pod, run: PodRun) -> None:
        """The active-deadline kill: pod Failed/DeadlineExceeded, containers terminated, never restarted."""
        ts = self._clock.timestamp()
        message = "Pod was active on the node longer than the specified deadline"
        status = dict(pod.get("status", {}))
        status["containerStatuses"] = [dict(cs) for cs in status.get("containerStatuses", [])]
        for c in _containers(pod):
            current: dict[str, Any] = next(
                (cs for cs in status["containerStatuses"] if cs.get("name") == c["name"]), {})
            started = current.get("state", {}).get("running", {}).get("startedAt", ts)
            _set_container(status, c["name"], ready=False, started=False, state={"terminated": {
                "exitCode": 137, "reason": "Error", "startedAt": started, "finishedAt": ts,
                "containerID": current.get("containerID", _container_id(pod, c, run.crashes))}})
        conditions = [dict(c) for c in status.get("conditions", [])]
        for cond in conditions:
            if cond.get("type") in ("Ready", "ContainersReady"):
                cond.update(status="False", reason="PodFailed", lastTransitionTime=ts)
        status.update(phase="Failed", reason="DeadlineExceeded", message=message, conditions=conditions)
        self._write_status(pod, status)
        self._event(pod, "DeadlineExceeded", message, type="Warning")
        for c in _containers(pod):
            self._event(pod, "Killing", f"Stopping container {c['name']}", container=c)
        run.stage, run.due, run.deadline = "done", None, None

    # -- store helpers -----------------------------------------------------------------------------

    def _write_status(self, pod: Pod, status: dict[str, Any]) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        self.wrote(key, self._store.update_status(PODS, *key, status, shared=True))

    def _event(self, pod: Pod, reason: str, message: str, *, type: str = "Normal",
               source: str = "kubelet", container: dict[str, Any] | None = None) -> None:
        try:
            if source != "kubelet" or container is not None:
                field_path = f"spec.containers{{{container['name']}}}" if container is not None else None
                host = pod.get("spec", {}).get("nodeName", "") if source == "kubelet" else None
                self._store.record_event(pod, reason=reason, message=message, type=type, component=source,
                                         host=host, field_path=field_path)
            else:
                self._store.record_event(pod, reason=reason, message=message, type=type)
        except ApiError as e:  # events are best effort, like in Kubernetes
            log.debug("kubelet: event %s for %s: %s", reason, pod["metadata"].get("name"), e)

    def _log(self, pod: Pod, container: dict[str, Any], lines: list[str]) -> None:
        if not lines:
            return
        self._store.append_log(pod["metadata"]["namespace"], pod["metadata"]["name"], container["name"],
                               "".join(line + "\n" for line in lines))


# -- pure helpers ---------------------------------------------------------------------------------

def _containers(pod: Pod) -> list[dict[str, Any]]:
    return [c for c in pod.get("spec", {}).get("containers", []) if isinstance(c, dict) and c.get("name")]


def _serves_forever(pod: Pod) -> bool:
    """TensorFlow parameter servers never exit on their own: a TFJob's PS replicas, and a JobSet pod whose
    TF_CONFIG, as its container sees it, makes it a `ps` task."""
    owners = pod["metadata"].get("ownerReferences") or []
    labels = pod["metadata"].get("labels") or {}
    if any(o.get("kind") in TFJOB_KINDS for o in owners):
        return any(labels.get(key) == "ps" for key in PS_LABELS)
    if JOBSET_NAME in labels:
        return any(((_tf_config(container_env(pod, c)) or {}).get("task") or {}).get("type") == "ps"
                   for c in _containers(pod))
    return False


def _node_for(pod: Pod) -> tuple[str, str]:
    digest = hashlib.sha256(pod["metadata"]["name"].encode()).digest()
    return NODES[digest[0] % len(NODES)]


def _pod_ip(pod: Pod) -> str:
    digest = hashlib.sha256(pod["metadata"]["uid"].encode()).digest()
    return f"10.244.{digest[0] % 3}.{2 + digest[1] % 250}"


def _container_id(pod: Pod, container: dict[str, Any], attempt: int) -> str:
    """Stable per pod, container and start attempt: a restarted container is a new container."""
    seed = f"{pod['metadata']['uid']}/{container['name']}/{attempt}".encode()
    return "containerd://" + hashlib.sha256(seed).hexdigest()


def _scarce_resource(pod: Pod) -> str:
    for c in _containers(pod):
        resources = c.get("resources") or {}
        for section in ("limits", "requests"):
            for key in (resources.get(section) or {}):
                if "gpu" in key:
                    return str(key)
    return "cpu"


def _base_status(pod: Pod) -> dict[str, Any]:
    return {"qosClass": pod_qos_class(pod)}


def _cond(type_: str, status: str, ts: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    cond: dict[str, Any] = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": ts}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _not_ready(pod: Pod) -> str:
    return "containers with unready status: [" + " ".join(c["name"] for c in _containers(pod)) + "]"


def _container_status(container: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    return {"name": container["name"], "image": container.get("image", ""), "imageID": "", "ready": False,
            "restartCount": 0, "started": False, "state": state, "lastState": {}}


def _running_phase_status(pod: Pod, *, ready: bool, ts: str, phase: str) -> dict[str, Any]:
    status = dict(pod.get("status", {}))
    status["phase"] = phase
    status["containerStatuses"] = [dict(cs) for cs in status.get("containerStatuses", [])] or [
        _container_status(c, {"waiting": {"reason": "ContainerCreating"}}) for c in _containers(pod)]
    conditions = [dict(c) for c in status.get("conditions", [])]
    for cond in conditions:
        if cond.get("type") in ("Ready", "ContainersReady", "PodReadyToStartContainers"):
            wanted = "True" if ready or cond["type"] == "PodReadyToStartContainers" else "False"
            if cond.get("status") != wanted:
                cond.update(status=wanted, lastTransitionTime=ts)
            if wanted == "True":
                cond.pop("reason", None)
                cond.pop("message", None)
    status["conditions"] = conditions
    return status


def _set_container(status: dict[str, Any], name: str, *, state: dict[str, Any],
                   last_state: dict[str, Any] | None = None, ready: bool | None = None,
                   started: bool | None = None, restart_count: int | None = None,
                   container_id: str | None = None) -> None:
    for cs in status["containerStatuses"]:
        if cs.get("name") != name:
            continue
        cs["state"] = state
        if last_state is not None:
            cs["lastState"] = last_state
        if ready is not None:
            cs["ready"] = ready
        if started is not None:
            cs["started"] = started
        if restart_count is not None:
            cs["restartCount"] = restart_count
        if container_id is not None:
            cs["containerID"] = container_id
        if "running" in state or "terminated" in state:
            image = cs.get("image", "")
            cs["imageID"] = cs.get("imageID") or (
                f"{image.split(':')[0]}@sha256:" + hashlib.sha256(image.encode()).hexdigest())


def _tf_config(env: Mapping[str, str]) -> dict[str, Any] | None:
    """TF_CONFIG of a resolved environment, parsed; None when unset or not a JSON object."""
    if "TF_CONFIG" not in env:
        return None
    try:
        parsed = json.loads(env["TF_CONFIG"])
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _startup_lines(env: Mapping[str, str], *, restart: bool) -> list[str]:
    """What the simulated TensorFlow program prints first, from the environment the kubelet gave it."""
    lines = [("I tensorflow/core/platform/cpu_feature_guard.cc:193] This TensorFlow binary is optimized "
              "with oneAPI Deep Neural Network Library (oneDNN) to use the following CPU instructions: AVX2 FMA")]
    if restart:
        lines.insert(0, "kubesim: container restarted")
    tf_config = _tf_config(env)
    if "TF_CONFIG" in env and tf_config is None:
        lines.append("INFO:tensorflow:TF_CONFIG environment variable: " + env["TF_CONFIG"])
        lines.append("WARNING:tensorflow:TF_CONFIG is not a JSON object; running in single-process mode")
    elif tf_config is not None:
        task = tf_config.get("task") or {}
        lines.append("INFO:tensorflow:TF_CONFIG environment variable: " + json.dumps(tf_config, sort_keys=True))
        lines.append(f"INFO:tensorflow:Starting {task.get('type', 'worker')} task {task.get('index', 0)}")
    else:
        lines.append("INFO:tensorflow:TF_CONFIG not set; running in single-process mode")
    lines.append("INFO:tensorflow:global_step/sec: 12.5")
    lines.append("INFO:tensorflow:loss = 2.3025, step = 100")
    return lines


def _exit_lines(scenario: Scenario, code: int) -> list[str]:
    if code == 0:
        return ["INFO:tensorflow:loss = 0.1834, step = 1000",
                "INFO:tensorflow:Loss for final step: 0.1834.", "Training finished."]
    if code == 137:
        return ["INFO:tensorflow:loss = 1.2010, step = 400", "Killed"]
    return ["Traceback (most recent call last):",
            '  File "/opt/train.py", line 42, in <module>',
            f"RuntimeError: kubesim scenario {scenario.text or scenario.name!r} (exit code {code})"]
