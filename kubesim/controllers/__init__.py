"""The simulated cluster controllers of kubesim: TFJob operator, Volcano controller, JobSet controller,
batch/v1 Job controller, scheduler+kubelet.

Contract (fixed in the common brief):
    Controllers(store, *, tfjob_operator="training-operator"|"tf-operator"|None, volcano=True,
                time_scale=1.0, default_scenario="succeed", gang_scheduler=None|"volcano", jobset=True)
    await start() / await stop(); set_default_scenario(s); set_job_scenario(ns, name, s)

One asyncio task runs the reconcilers like controller-runtime runs controllers: each store event (of
the kinds the controllers care about; Events are not even delivered) is turned by every reconciler into
the keys of the objects it touches, which become dirty in that reconciler's work queue; a reconcile
returns when it must look at its object again, and that key becomes dirty then. A pass drains the
events, then lets the TFJob operator, Volcano, the JobSet controller, the Job controller and the kubelet
reconcile each of their dirty or due keys once, in that order (the events written by one are drained
before the next runs). Passes are never more often than `max(MIN_PAUSE, 0.05 * time_scale)` real
seconds apart (so a burst of writes costs one reconcile per object, not one per write) and at least every
`IDLE_PAUSE` simulated seconds. An event
costs work for the objects it touches only: a cluster of 10,000 jobs reconciles one job when one job
changes. `reconciles` counts reconciles per controller; `trace`, when set to a list, records each
(controller, key) reconciled. `set_*_scenario` raise `ScenarioError` (a ValueError) on a malformed
string; a job's scenario change queues that job and its pods (a JobSet's: the pods labelled with its
name), a default scenario change everything.
All reconcilers read the current state from the store and write through it, so a reconcile that finds
nothing to do writes nothing. Scenario strings are documented in `kubesim.controllers.scenarios`.
`gang_scheduler="volcano"` makes the training-operator dialect gang-schedule TFJobs through Volcano
PodGroups (ignored by tf-operator; ValueError for another name); without `volcano=True` nobody admits those
PodGroups and the jobs stay without pods, as in a cluster without Volcano.
The batch/v1 Job controller always runs (it is part of kube-controller-manager, like the kubelet is part
of every node); `jobset=True` adds the JobSet controller (kubernetes-sigs/jobset v0.12.0). A JobSet is
queued by its own changes and its Jobs'; a Job by its own and its pods' (see their modules). A JobSet pod's
scenario is `set_job_scenario(ns, <jobset name>)`, else the pod's own annotation (from its replicated
job's pod template), else the JobSet's annotation, else the default; a plain Job's pods likewise with the
Job's name and annotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Hashable, Mapping
from typing import Any, Literal

from kubesim import jobset as jobset_api
from kubesim.controllers.batchjob import JobController
from kubesim.controllers.clock import SimClock
from kubesim.controllers.jobset import JobSetController
from kubesim.controllers.kubelet import Kubelet
from kubesim.controllers.reconciler import Reconciler, Trace
from kubesim.controllers.scenarios import SCENARIO_ANNOTATION, Scenario, ScenarioError, parse_scenario
from kubesim.controllers.training import GANG_SCHEDULERS, TFJobController
from kubesim.controllers.volcano import VolcanoController
from kubesim.store import (
    BATCH_JOBS,
    COMMANDS,
    JOBSETS,
    PODGROUPS,
    PODS,
    TFJOBS,
    VCJOBS,
    Resource,
    Store,
    WatchEvent,
)

log = logging.getLogger(__name__)

MIN_PAUSE = 0.002  # real seconds between passes, so a burst of events costs one pass
IDLE_PAUSE = 2.0  # simulated seconds between passes when nothing is due
WATCHED = frozenset({TFJOBS, VCJOBS, COMMANDS, PODGROUPS, PODS, JOBSETS, BATCH_JOBS})

__all__ = ["SCENARIO_ANNOTATION", "Controllers", "Scenario", "ScenarioError", "parse_scenario"]


class Controllers:
    """Runs the simulated operators and kubelet over one Store."""

    def __init__(self, store: Store, *, tfjob_operator: Literal["training-operator", "tf-operator"] | None
                 = "training-operator", volcano: bool = True, time_scale: float = 1.0,
                 default_scenario: str = "succeed", gang_scheduler: str | None = None,
                 jobset: bool = True) -> None:
        if tfjob_operator not in ("training-operator", "tf-operator", None):
            raise ValueError(f"tfjob_operator must be 'training-operator', 'tf-operator' or None, "
                             f"not {tfjob_operator!r}")
        if gang_scheduler not in (None, *GANG_SCHEDULERS):
            raise ValueError(f"gang_scheduler must be one of {', '.join(GANG_SCHEDULERS)} or None, "
                             f"not {gang_scheduler!r}")
        self._store = store
        self.clock = SimClock(time_scale)
        self._default = parse_scenario(default_scenario)
        self._per_job: dict[tuple[str, str], Scenario] = {}
        self.kubelet = Kubelet(store, self.clock, self._scenario_for_pod)
        self.tfjobs = TFJobController(store, self.clock, dialect=tfjob_operator, gang_scheduler=gang_scheduler) \
            if tfjob_operator else None
        self.volcano = VolcanoController(store, self.clock, self.scenario_for_job, self._scenario_for_pod) \
            if volcano else None
        self.jobsets = JobSetController(store, self.clock) if jobset else None
        self.jobs = JobController(store, self.clock)
        # in the order a pass runs them: the JobSet controller's Jobs are what the Job controller acts on, and
        # every operator's pods are what the kubelet acts on
        self._reconcilers: list[Reconciler[Any]] = [
            r for r in (self.tfjobs, self.volcano, self.jobsets, self.jobs, self.kubelet) if r is not None]
        self.trace: list[tuple[str, Hashable]] | None = None
        # at time_scale 1 a 50 ms window coalesces a burst of writes into one pass
        self._min_pause = max(MIN_PAUSE, 0.05 * time_scale)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[WatchEvent] | None = None

    @property
    def reconciles(self) -> dict[str, int]:
        """Keys reconciled so far, per controller (tfjob, volcano, jobset, job, kubelet)."""
        return {r.name: r.reconciles for r in self._reconcilers}

    # -- scenarios -------------------------------------------------------------------------------

    def set_default_scenario(self, scenario: str) -> None:
        """Cluster-wide scenario for jobs without their own; ScenarioError if malformed."""
        self._default = parse_scenario(scenario)
        for reconciler in self._reconcilers:  # any object may follow the default: look at all of them
            reconciler.queue.add_all(reconciler.all_keys())
        self._wake.set()

    def set_job_scenario(self, namespace: str, name: str, scenario: str) -> None:
        """Scenario for one job (TFJob, Volcano Job, JobSet, batch/v1 Job) by name, even before it exists."""
        self._per_job[(namespace, name)] = parse_scenario(scenario)
        if self.tfjobs is not None:
            self.tfjobs.queue.add((namespace, name))
        if self.volcano is not None:
            # a TFJob's gang PodGroup is named after the job; scheduling it depends on its pods' scenario
            self.volcano.queue.add_all([("job", namespace, name), ("podgroup", namespace, name)])
        for res in (TFJOBS, VCJOBS, BATCH_JOBS):
            job = self._store.peek(res, namespace, name)
            if job is not None:
                self.kubelet.queue.add_all((namespace, pod["metadata"]["name"])
                                           for pod in self._store.owned(PODS, job["metadata"]["uid"]))
        # a JobSet's pods belong to its Jobs; they carry its name as a label
        self.kubelet.queue.add_all((namespace, pod["metadata"]["name"]) for pod in self._store.select(
            PODS, namespace, label_selector=f"{jobset_api.JOBSET_NAME}={name}"))
        self._wake.set()

    def scenario_for_job(self, namespace: str, name: str) -> Scenario:
        """set_job_scenario, else the job's annotation, else the cluster default."""
        chosen = self._per_job.get((namespace, name))
        if chosen is not None:
            return chosen
        for res in (TFJOBS, VCJOBS):
            annotated = _annotated(self._store.peek(res, namespace, name), f"{res.kind} {namespace}/{name}")
            if annotated is not None:
                return annotated
        return self._default

    def _scenario_for_pod(self, pod: Mapping[str, Any]) -> Scenario:
        meta = pod["metadata"]
        owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
        owner_gvk = (owner.get("apiVersion"), owner.get("kind")) if owner is not None else None
        if owner is not None and owner_gvk == (BATCH_JOBS.api_version, BATCH_JOBS.kind):
            jobset_name = (meta.get("labels") or {}).get(jobset_api.JOBSET_NAME)
            if jobset_name:
                return self._scenario_for_child(pod, JOBSETS, jobset_name)
            return self._scenario_for_child(pod, BATCH_JOBS, str(owner.get("name", "")))
        if owner is not None and owner.get("kind") in ("TFJob", "Job"):
            return self.scenario_for_job(meta.get("namespace", ""), owner.get("name", ""))
        text = (meta.get("annotations") or {}).get(SCENARIO_ANNOTATION)
        if text:
            with contextlib.suppress(ScenarioError):
                return _parse_cached(text)
        return self._default

    def _scenario_for_child(self, pod: Mapping[str, Any], res: Resource, name: str) -> Scenario:
        """set_job_scenario on the owning JobSet/Job, the pod's annotation, the owner's, the default."""
        namespace = pod["metadata"].get("namespace", "")
        chosen = self._per_job.get((namespace, name))
        if chosen is not None:
            return chosen
        annotated = _annotated(pod, f"Pod {namespace}/{pod['metadata'].get('name', '')}") \
            or _annotated(self._store.peek(res, namespace, name), f"{res.kind} {namespace}/{name}")
        return annotated or self._default

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the store, queue what it already holds and start the reconcile loop."""
        if self._task is not None:
            return
        self._queue = self._store.subscribe(bounded=False, resources=WATCHED)
        for reconciler in self._reconcilers:
            reconciler.queue.add_all(reconciler.all_keys())
        self._task = asyncio.create_task(self._loop(), name="kubesim-controllers")

    async def stop(self) -> None:
        """Cancel the loop and unsubscribe; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._queue is not None:
            self._store.unsubscribe(self._queue)
            self._queue = None

    def reconcile_once(self) -> float | None:
        """One pass: every reconciler reconciles its dirty and due keys; the earliest simulated deadline left."""
        records = self.trace
        trace: Trace | None = None
        if records is not None:
            def trace(name: str, key: Hashable) -> None:
                records.append((name, key))
        for reconciler in self._reconcilers:
            self._observe_events()
            reconciler.process(self.clock.now(), trace)
        self._observe_events()
        due = [d for r in self._reconcilers if (d := r.queue.next_due()) is not None]
        return min(due) if due else None

    def _observe_events(self) -> None:
        """Hand every store event that arrived to every reconciler, which queues the keys it touches."""
        queue = self._queue
        if queue is None:
            return
        while not queue.empty():
            self._observe(queue.get_nowait())

    def _observe(self, event: WatchEvent) -> None:
        for reconciler in self._reconcilers:
            try:
                reconciler.observe(event)
            except Exception:  # an odd object must not stop the simulated cluster
                log.exception("kubesim: %s: observing %r failed", reconciler.name, event)

    def _dirty(self) -> bool:
        return any(len(r.queue) for r in self._reconcilers)

    async def _loop(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            due = self.reconcile_once()
            await asyncio.sleep(self._min_pause)
            self._observe_events()
            if self._wake.is_set():
                self._wake.clear()
                continue
            if self._dirty() or ((due is not None) and due <= self.clock.now()):
                continue
            pause_sim = IDLE_PAUSE if due is None else max(0.0, min(due - self.clock.now(), IDLE_PAUSE))
            await self._wait(queue, self.clock.real_delay(pause_sim))

    async def _wait(self, queue: asyncio.Queue[WatchEvent], timeout: float) -> None:
        """Until a store event, a scenario change, or `timeout` real seconds."""
        getter = asyncio.ensure_future(queue.get())
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            done, _ = await asyncio.wait({getter, waker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (getter, waker):
                if not fut.done():
                    fut.cancel()
        if getter in done:
            self._observe(getter.result())
        if waker in done:
            self._wake.clear()


def _annotated(obj: Mapping[str, Any] | None, what: str) -> Scenario | None:
    """The scenario an object's annotation names, if any; a malformed one is logged and ignored."""
    text = (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(SCENARIO_ANNOTATION)
    if not text:
        return None
    try:
        return _parse_cached(text)
    except ScenarioError as e:
        log.warning("%s: ignoring annotation %s: %s", what, SCENARIO_ANNOTATION, e)
        return None


@functools.lru_cache(maxsize=256)
def _parse_cached(text: str) -> Scenario:
    # annotations are read on every reconcile of every pod; they are few distinct strings
    return parse_scenario(text)
