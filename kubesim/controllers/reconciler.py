"""The shape every simulated controller shares: events in, dirty keys, one reconcile per dirty key.

Contract: a `Reconciler` turns each store `WatchEvent` into the keys of the objects it manages that the event
touches (`observe`), keeps them in its `WorkQueue`, and `process(now)` reconciles each dirty or due key once
(`reconcile_key` reads the current state from the store, writes what differs and returns the simulated time
at which it must look again, or None). So an event costs work for the objects it touches only, like a
controller-runtime controller with its watches, `EnqueueRequestForOwner` and `RequeueAfter`; a reconcile
that fails returns `retry_after(key)`, controller-runtime's per-key exponential backoff for a returned error.
`reconcile()` is a full pass over every object (a resync), for callers that want one.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from kubesim.controllers.clock import SimClock
from kubesim.controllers.workqueue import WorkQueue
from kubesim.store import Resource, WatchEvent

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
Trace = Callable[[str, Hashable], None]
RETRY_BASE = 0.005  # simulated seconds before the first retry of a failed reconcile, doubling each time
RETRY_MAX = 1000.0  # controller-runtime's default per-item rate limiter: 5 ms doubling up to 1000 s


class UpdatePredicate:
    """Whether a watch event changes what a reconcile reads of an object (controller-runtime's update
    predicate): `digest` picks those parts as one comparable value; an ADDED or DELETED event always counts,
    a MODIFIED one only when its digest differs from the last one seen for that object."""

    def __init__(self, digest: Callable[[Mapping[str, Any]], Hashable]) -> None:
        self._digest = digest
        self._seen: dict[tuple[str, str], Hashable] = {}  # (namespace, name) -> the last digest

    def changed(self, event: WatchEvent) -> bool:
        """Whether `event` is worth a reconcile."""
        meta = event.object["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if event.type == "DELETED":
            self._seen.pop(key, None)
            return True
        digest = self._digest(event.object)
        previous = self._seen.get(key)
        self._seen[key] = digest
        return event.type != "MODIFIED" or digest != previous


class Reconciler(abc.ABC, Generic[K]):
    """A controller reconciling one key at a time."""

    name = "reconciler"

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self.queue: WorkQueue[K] = WorkQueue()
        self.reconciles = 0  # how many keys were reconciled so far
        # key → resourceVersion of the newest write this controller made to the object of that key
        self._own_writes: dict[K, int] = {}
        self._owners: dict[tuple[str, str, str], K] = {}  # (plural, namespace, name) of a dependent → owner key
        self._own_creates: dict[tuple[str, str, str], int] = {}  # dependent → resourceVersion it was created at
        self._failures: dict[K, int] = {}  # failed reconciles in a row, per key

    def wrote(self, key: K, stored: Mapping[str, Any]) -> None:
        """Remember that this controller itself wrote `stored`, the object of `key`."""
        self._own_writes[key] = int(stored["metadata"]["resourceVersion"])

    def own_write(self, key: K, event: WatchEvent) -> bool:
        """Whether `event` (about the object of `key`) shows nothing this controller has not already seen.

        A reconcile reads the current object and writes synchronously, so every version of it up to the one it
        wrote last was accounted for by that reconcile: the events for those versions need no new reconcile.
        (A version someone else writes later has a higher resourceVersion.)"""
        own = self._own_writes.get(key)
        if own is None or event.type != "MODIFIED" or event.resource_version > own:
            return False
        if event.resource_version == own:
            del self._own_writes[key]
        return True

    def created(self, res: Resource, stored: Mapping[str, Any]) -> None:
        """Remember that this controller itself created `stored` (a dependent, e.g. a pod of its job)."""
        meta = stored["metadata"]
        self._own_creates[(res.plural, meta.get("namespace", ""), meta["name"])] = \
            int(meta["resourceVersion"])

    def own_create(self, event: WatchEvent) -> bool:
        """Whether `event` is the ADDED event of a dependent this controller created: the reconcile that
        created it accounted for it, so it needs no new reconcile (its later changes do)."""
        if event.type != "ADDED" or not self._own_creates:
            return False
        meta = event.object["metadata"]
        key = (event.resource.plural, meta.get("namespace", ""), meta["name"])
        return self._own_creates.pop(key, None) == event.resource_version

    def track_owner(self, event: WatchEvent, owner: K | None) -> None:
        """Note which of this controller's objects (`owner`, None: none) a dependent's event names as its
        controller, and queue the one it named before if that differs: a pod that loses or changes its
        ownerReference leaves the view of its old owner, which must look again (as controller-runtime's
        EnqueueRequestForOwner queues the old and the new owner of an update)."""
        meta = event.object["metadata"]
        dependent = (event.resource.plural, meta.get("namespace", ""), meta["name"])
        previous = self._owners.get(dependent)
        if owner is None or event.type == "DELETED":
            self._owners.pop(dependent, None)
        else:
            self._owners[dependent] = owner
        if previous is not None and previous != owner:
            self.queue.add(previous)

    def forget(self, key: K) -> None:
        """Drop what is remembered about the object of `key` (it was deleted)."""
        self._own_writes.pop(key, None)
        self._failures.pop(key, None)

    def retry_after(self, key: K) -> float:
        """The simulated time to reconcile `key` again after a reconcile that failed (an error upstream's
        controller would return, e.g. a create the API refused): 5 ms doubling with each failure in a row, at
        most 1000 s, like controller-runtime's default rate limiter, so nothing polls a stuck object."""
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        return self._clock.now() + min(RETRY_BASE * 2.0 ** (failures - 1), RETRY_MAX)

    def succeeded(self, key: K) -> None:
        """A reconcile of `key` went through: its next failure starts the backoff over."""
        self._failures.pop(key, None)

    @abc.abstractmethod
    def observe(self, event: WatchEvent) -> None:
        """Queue the keys `event` touches (and drop what is remembered about deleted objects)."""

    @abc.abstractmethod
    def all_keys(self) -> Iterable[K]:
        """The key of every object this controller manages."""

    @abc.abstractmethod
    def reconcile_key(self, key: K) -> float | None:
        """Bring one object to where it should be; the simulated time to look at it again, or None."""

    def process(self, now: float, trace: Trace | None = None) -> None:
        """Reconcile every key that is dirty or due at `now`, each once."""
        self.queue.fire(now)
        for key in self.queue.take():
            self.reconciles += 1
            if trace is not None:
                trace(self.name, key)
            try:
                due = self.reconcile_key(key)
            except Exception:  # one broken object must not stall the others
                log.exception("kubesim: %s: reconciling %s failed", self.name, key)
                due = None
            self.queue.schedule(key, due)

    def reconcile(self) -> float | None:
        """A full pass (a resync): every object now; the next simulated deadline, if any."""
        self.queue.add_all(self.all_keys())
        self.process(self._clock.now())
        return self.queue.next_due()


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference marked `controller: true`, if the object has one."""
    for ref in obj["metadata"].get("ownerReferences") or ():
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


__all__ = ["Reconciler", "Trace", "controller_of"]
