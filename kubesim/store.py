"""kubesim's in-memory object store: the etcd + registry layer of a simulated Kubernetes API server.

Contract (shared with kubesim.controllers and the HTTP server, see the common brief):
- Objects are plain dicts keyed by (resource, namespace, name). Every read returns a deep copy and every
  write stores a deep copy, so callers may mutate what they hold.
- One global integer resourceVersion counter, served as a string; each write bumps it. `uid`,
  `creationTimestamp`, `generation` (bumped only when something other than metadata/status changes) are set
  here. Errors are `kubesim.errors.ApiError` carrying a Kubernetes `Status`.
- Deletion honours finalizers (object kept with `deletionTimestamp` until its finalizers are emptied) and
  garbage-collects dependents through `metadata.ownerReferences[].uid`: Background deletes them right
  after the owner, Foreground keeps the owner (with the `foregroundDeletion` finalizer) until they are
  gone, Orphan strips the owner reference.
- Watchers `subscribe()` to a queue of `WatchEvent`s bounded by `watch_buffer`; a watcher that falls that
  far behind is dropped (`is_subscribed` turns False) and the server ends its stream, as the API server's
  watch cache closes an unresponsive watcher: the client resumes from its last resourceVersion, or relists
  on 410. A bounded history ring (`history_limit`) lets the server replay events after a resourceVersion
  or answer 410 Expired when it is too old.
- All methods are synchronous and must be called from the event loop thread (no locking).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubesim import errors
from kubesim.errors import ApiError
from kubesim.selectors import parse_field_selector, parse_label_selector


@dataclass(frozen=True)
class Resource:
    """One REST resource kind served by kubesim."""

    group: str  # "" for core
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False

    @property
    def api_version(self) -> str:
        """`v1` for core, otherwise `group/version`."""
        return f"{self.group}/{self.version}" if self.group else self.version


TFJOBS = Resource("kubeflow.org", "v1", "tfjobs", "TFJob", status_subresource=True)
VCJOBS = Resource("batch.volcano.sh", "v1alpha1", "jobs", "Job", status_subresource=True)
COMMANDS = Resource("bus.volcano.sh", "v1alpha1", "commands", "Command")
PODGROUPS = Resource("scheduling.volcano.sh", "v1beta1", "podgroups", "PodGroup", status_subresource=True)
JOBSETS = Resource("jobset.x-k8s.io", "v1alpha2", "jobsets", "JobSet", status_subresource=True)
BATCH_JOBS = Resource("batch", "v1", "jobs", "Job", status_subresource=True)
PODS = Resource("", "v1", "pods", "Pod", status_subresource=True)
SERVICES = Resource("", "v1", "services", "Service")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
EVENTS = Resource("", "v1", "events", "Event")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)

ALL_RESOURCES: tuple[Resource, ...] = (TFJOBS, VCJOBS, COMMANDS, PODGROUPS, PODS, SERVICES, CONFIGMAPS, EVENTS,
                                       NAMESPACES, JOBSETS, BATCH_JOBS)
CUSTOM_RESOURCES: tuple[Resource, ...] = (TFJOBS, VCJOBS, COMMANDS, PODGROUPS, JOBSETS)

# Field selectors each resource supports (metadata.name/namespace everywhere), as kube-apiserver does.
_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
SELECTABLE_FIELDS: dict[Resource, tuple[str, ...]] = {
    PODS: _COMMON_FIELDS + ("status.phase", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                            "spec.serviceAccountName", "status.podIP", "status.nominatedNodeName"),
    EVENTS: _COMMON_FIELDS + ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                              "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                              "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
    NAMESPACES: _COMMON_FIELDS + ("status.phase",),
    SERVICES: _COMMON_FIELDS + ("spec.clusterIP", "spec.type"),
}

FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
PROPAGATION_POLICIES = ("Background", "Foreground", "Orphan")


def resource_for(group: str, version: str, plural: str) -> Resource | None:
    """The served Resource for a URL's group/version/plural, or None."""
    for res in ALL_RESOURCES:
        if (res.group, res.version, res.plural) == (group, version, plural):
            return res
    return None


def now_rfc3339() -> str:
    """Current UTC time as Kubernetes serializes metav1.Time."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    """One change, as a watch stream reports it."""

    type: str  # "ADDED" | "MODIFIED" | "DELETED"
    resource: Resource
    object: dict[str, Any]  # a deep copy, safe to keep

    @property
    def resource_version(self) -> int:
        """The resourceVersion this event was written at."""
        return int(self.object["metadata"]["resourceVersion"])


@dataclass
class LogLine:
    """One line of container output with the time it was appended."""

    timestamp: str
    text: str


_Key = tuple[str, str]  # (namespace or "", name)
# Aliases because `Store.list` shadows the builtin inside the class body's annotations.
_Events = list[WatchEvent]
_Lines = list[LogLine]
_Refs = list[tuple[Resource, _Key]]


class Store:
    """In-memory Kubernetes object store with watch fan-out, history, logs and garbage collection."""

    def __init__(self, *, history_limit: int = 1000, watch_buffer: int = 1000, namespaces: Iterable[str] = ()) -> None:
        self._objects: dict[Resource, dict[_Key, dict[str, Any]]] = {res: {} for res in ALL_RESOURCES}
        self._rv = 0
        self._history_limit = history_limit
        self._history: deque[WatchEvent] = deque()
        # Watches from an RV below this floor would miss evicted events → 410 Expired.
        self._history_floor = 0
        self._watch_buffer = watch_buffer
        self._subscribers: list[asyncio.Queue[WatchEvent]] = []
        self._logs: dict[tuple[str, str, str], list[LogLine]] = {}
        self._log_signal: dict[tuple[str, str], asyncio.Event] = {}
        for ns in namespaces:
            self.ensure_namespace(ns)

    # ----- reads -------------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The current global resourceVersion."""
        return str(self._rv)

    def get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        """The object, or ApiError NotFound."""
        obj = self._objects[res].get(self._key(res, namespace, name))
        if obj is None:
            raise errors.not_found(res, name)
        return copy.deepcopy(obj)

    def try_get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None."""
        obj = self._objects[res].get(self._key(res, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Matching objects sorted by (namespace, name), and the list resourceVersion."""
        label_match = parse_label_selector(label_selector)
        field_match = parse_field_selector(field_selector, fields=SELECTABLE_FIELDS.get(res, _COMMON_FIELDS))
        items = []
        for key in sorted(self._objects[res]):
            obj = self._objects[res][key]
            if res.namespaced and namespace and key[0] != namespace:
                continue
            if label_match(obj) and field_match(obj):
                items.append(copy.deepcopy(obj))
        return items, str(self._rv)

    def namespace_exists(self, namespace: str) -> bool:
        """Whether the namespace exists (and is not being deleted)."""
        return ("", namespace) in self._objects[NAMESPACES]

    # ----- writes ------------------------------------------------------------------------------------------

    def ensure_namespace(self, name: str) -> dict[str, Any]:
        """Create the namespace if missing; return it."""
        existing = self.try_get(NAMESPACES, None, name)
        if existing is not None:
            return existing
        return self.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def create(self, res: Resource, obj: dict[str, Any], *, uid: str | None = None) -> dict[str, Any]:
        """Store a new object; sets uid (`uid` if given: a registry that derives fields from the uid before
        storing, as the Job strategy's generated selector does, picks it first), resourceVersion,
        creationTimestamp, generation=1."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
            meta["name"] = name
        if not name:
            raise errors.invalid(res, "", [errors.field_cause("metadata.name", "Required value: name or "
                                                              "generateName is required",
                                                              reason="FieldValueRequired")])
        namespace = meta.get("namespace") if res.namespaced else None
        if res.namespaced:
            if not namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            if not self.namespace_exists(namespace):
                raise errors.not_found(NAMESPACES, namespace)
            ns_obj = self._objects[NAMESPACES][("", namespace)]
            if ns_obj["metadata"].get("deletionTimestamp"):
                raise ApiError(403, "Forbidden",
                               f'{errors.qualified(res)} "{name}" is forbidden: unable to create new content in '
                               f'namespace {namespace} because it is being terminated',
                               details={"name": name, "kind": res.plural})
        else:
            meta.pop("namespace", None)
        key = self._key(res, namespace, name)
        if key in self._objects[res]:
            raise errors.already_exists(res, name)
        obj["apiVersion"] = res.api_version
        obj["kind"] = res.kind
        meta["uid"] = uid or str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        for transient in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "selfLink"):
            meta.pop(transient, None)
        if res is NAMESPACES:
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
        if res is PODS:
            obj.setdefault("status", {}).setdefault("phase", "Pending")
            for log_key in [k for k in self._logs if k[0] == namespace and k[1] == name]:
                del self._logs[log_key]
        self._write(res, key, obj, "ADDED")
        return copy.deepcopy(obj)

    def update(self, res: Resource, obj: dict[str, Any], *, resource_version: str | None = None) -> dict[str, Any]:
        """Full replace; RV precondition if the object carries one; keeps stored .status when
        the resource has a status subresource. Empties finalizers of a deleting object → removed."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name", "")
        namespace = meta.get("namespace") if res.namespaced else None
        key = self._key(res, namespace, name)
        current = self._objects[res].get(key)
        if current is None:
            raise errors.not_found(res, name)
        precondition = resource_version or meta.get("resourceVersion")
        if precondition and str(precondition) != current["metadata"]["resourceVersion"]:
            raise errors.conflict(res, name)
        cur_meta = current["metadata"]
        for fixed in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                      "generation", "namespace", "name"):
            if fixed in cur_meta:
                meta[fixed] = cur_meta[fixed]
            else:
                meta.pop(fixed, None)
        if cur_meta.get("deletionTimestamp"):
            # Finalizers may only be removed from a deleting object, never added.
            meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f in (cur_meta.get("finalizers") or [])]
        obj["apiVersion"] = res.api_version
        obj["kind"] = res.kind
        if res.status_subresource:
            if "status" in current:
                obj["status"] = copy.deepcopy(current["status"])
            else:
                obj.pop("status", None)
        if res is NAMESPACES:
            obj["status"] = copy.deepcopy(current.get("status", {}))
        if _spec_part(obj) != _spec_part(current):
            meta["generation"] = int(cur_meta.get("generation", 1)) + 1
        if _without_rv(obj) == _without_rv(current):
            return copy.deepcopy(current)  # no-op updates do not bump the resourceVersion
        self._write(res, key, obj, "MODIFIED")
        if cur_meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(res, key)
            return copy.deepcopy(obj)
        return copy.deepcopy(obj)

    def update_status(self, res: Resource, namespace: str | None, name: str, status: dict[str, Any], *,
                      resource_version: str | None = None) -> dict[str, Any]:
        """Replace only `.status` (spec and metadata untouched)."""
        key = self._key(res, namespace, name)
        current = self._objects[res].get(key)
        if current is None:
            raise errors.not_found(res, name)
        if resource_version and str(resource_version) != current["metadata"]["resourceVersion"]:
            raise errors.conflict(res, name)
        if current.get("status") == status:
            return copy.deepcopy(current)
        obj = copy.deepcopy(current)
        obj["status"] = copy.deepcopy(status)
        self._write(res, key, obj, "MODIFIED")
        return copy.deepcopy(obj)

    def delete(self, res: Resource, namespace: str | None, name: str, *, propagation: str = "Background",
               resource_version: str | None = None, uid: str | None = None) -> dict[str, Any]:
        """Delete (or start deleting) an object; returns its last state. Dependents are GC'd per `propagation`."""
        if propagation not in PROPAGATION_POLICIES:
            raise errors.bad_request(f'propagationPolicy: Unsupported value: "{propagation}": supported values: '
                                     '"Background", "Foreground", "Orphan"')
        key = self._key(res, namespace, name)
        current = self._objects[res].get(key)
        if current is None:
            raise errors.not_found(res, name)
        meta = current["metadata"]
        if resource_version and resource_version != meta["resourceVersion"]:
            raise errors.conflict(res, name)
        if uid and uid != meta["uid"]:
            raise errors.conflict_message(res, name, f"Precondition failed: UID in precondition: {uid}, "
                                                     f"UID in object meta: {meta['uid']}")
        if res is NAMESPACES:
            return self._delete_namespace(name)
        owner_uid = meta["uid"]
        if propagation == "Orphan":
            self._orphan_dependents(owner_uid)
        finalizers = list(meta.get("finalizers") or [])
        if (propagation == "Foreground" and self._dependents(owner_uid)
                and FOREGROUND_FINALIZER not in finalizers):
            finalizers.append(FOREGROUND_FINALIZER)
        if finalizers:
            if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
                return copy.deepcopy(current)
            obj = copy.deepcopy(current)
            obj["metadata"]["finalizers"] = finalizers
            obj["metadata"].setdefault("deletionTimestamp", now_rfc3339())
            obj["metadata"].setdefault("deletionGracePeriodSeconds", 0)
            self._write(res, key, obj, "MODIFIED")
            if FOREGROUND_FINALIZER in finalizers:
                self._collect_dependents(owner_uid, propagation="Background")
                self._maybe_finish_foreground(res, key)
            return copy.deepcopy(self._objects[res].get(key, obj))
        removed = self._remove(res, key)
        if propagation == "Background":
            self._collect_dependents(owner_uid, propagation="Background")
        return removed

    # ----- watch -------------------------------------------------------------------------------------------

    def subscribe(self, *, bounded: bool = True) -> asyncio.Queue[WatchEvent]:
        """A queue receiving every future WatchEvent (all resources) until it overflows or is unsubscribed.

        API watchers are `bounded` by `watch_buffer`; the in-process controllers, which drain everything
        on each pass and must never be dropped, subscribe unbounded."""
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue(maxsize=self._watch_buffer if bounded else 0)
        self._subscribers.append(queue)
        return queue

    def is_subscribed(self, queue: asyncio.Queue[WatchEvent]) -> bool:
        """False once `queue` was dropped for falling `watch_buffer` events behind (or unsubscribed)."""
        return queue in self._subscribers

    def unsubscribe(self, queue: asyncio.Queue[WatchEvent]) -> None:
        """Stop delivering events to `queue`."""
        if queue in self._subscribers:
            self._subscribers.remove(queue)

    def history_since(self, resource_version: int) -> _Events:
        """Events written after `resource_version`; ApiError 410 Expired if the window no longer covers it."""
        if resource_version < self._history_floor:
            oldest = self._history[0].resource_version if self._history else self._rv + 1
            raise errors.expired(f"too old resource version: {resource_version} ({oldest - 1})")
        return [event for event in self._history if event.resource_version > resource_version]

    def shrink_history(self, keep: int) -> None:
        """Keep only the newest `keep` events (and that bound from now on), so older RVs expire."""
        self._history_limit = max(0, keep)
        self._trim_history()
        # Even with nothing evicted, everything before the newest retained event counts as "too old".
        self._history_floor = max(self._history_floor,
                                  self._history[0].resource_version - 1 if self._history else self._rv)

    @property
    def history_limit(self) -> int:
        """Current bound of the history ring."""
        return self._history_limit

    # ----- logs and events ---------------------------------------------------------------------------------

    def append_log(self, namespace: str, pod: str, container: str, text: str) -> None:
        """Append container output (may hold several lines) and wake followers."""
        lines = self._logs.setdefault((namespace, pod, container), [])
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for line in text.splitlines(keepends=True):
            lines.append(LogLine(stamp, line if line.endswith("\n") else line + "\n"))
        signal = self._log_signal.pop((namespace, pod), None)
        if signal is not None:
            signal.set()

    def logs(self, namespace: str, pod: str, container: str) -> _Lines:
        """All lines logged so far by one container."""
        return list(self._logs.get((namespace, pod, container), []))

    def log_signal(self, namespace: str, pod: str) -> asyncio.Event:
        """An event set at the next append to any container of the pod (or any change to the pod)."""
        return self._log_signal.setdefault((namespace, pod), asyncio.Event())

    def record_event(self, involved: dict[str, Any], *, reason: str, message: str,
                     type: str = "Normal") -> dict[str, Any]:
        """Create a core/v1 Event about `involved` (in its namespace, or `default`)."""
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        stamp = now_rfc3339()
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta.get('name', 'unknown')}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", ""), "kind": involved.get("kind", ""),
                "name": meta.get("name", ""), "namespace": meta.get("namespace", ""),
                "uid": meta.get("uid", ""), "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason, "message": message, "type": type, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "eventTime": None,
            "source": {"component": _component_for(involved.get("kind", ""))},
            "reportingComponent": _component_for(involved.get("kind", "")), "reportingInstance": "",
        }
        self.ensure_namespace(namespace)
        return self.create(EVENTS, event)

    # ----- internals ---------------------------------------------------------------------------------------

    @staticmethod
    def _key(res: Resource, namespace: str | None, name: str) -> _Key:
        return ((namespace or "") if res.namespaced else "", name)

    def _write(self, res: Resource, key: _Key, obj: dict[str, Any], event_type: str) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[res][key] = obj
        self._emit(WatchEvent(event_type, res, copy.deepcopy(obj)))
        if res is PODS:
            signal = self._log_signal.pop((key[0], key[1]), None)
            if signal is not None:
                signal.set()

    def _remove(self, res: Resource, key: _Key) -> dict[str, Any]:
        obj = self._objects[res].pop(key)
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._emit(WatchEvent("DELETED", res, copy.deepcopy(obj)))
        if res is PODS:
            signal = self._log_signal.pop((key[0], key[1]), None)
            if signal is not None:
                signal.set()
        self._after_removal(obj)
        return copy.deepcopy(obj)

    def _emit(self, event: WatchEvent) -> None:
        self._history.append(event)
        self._trim_history()
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # What it holds is still in order; its stream ends after that and the client resumes.
                self._subscribers.remove(queue)

    def _trim_history(self) -> None:
        while len(self._history) > self._history_limit:
            evicted = self._history.popleft()
            self._history_floor = evicted.resource_version

    def _dependents(self, owner_uid: str) -> _Refs:
        found = []
        for res, objects in self._objects.items():
            for key, obj in objects.items():
                refs = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == owner_uid for ref in refs):
                    found.append((res, key))
        return found

    def _collect_dependents(self, owner_uid: str, *, propagation: str) -> None:
        for res, key in self._dependents(owner_uid):
            obj = self._objects[res].get(key)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                continue
            refs = obj["metadata"].get("ownerReferences") or []
            # An object with another live owner survives, exactly like the real garbage collector.
            if any(ref.get("uid") != owner_uid and self._uid_alive(ref.get("uid", "")) for ref in refs):
                continue
            self.delete(res, key[0] or None, key[1], propagation=propagation)

    def _uid_alive(self, uid: str) -> bool:
        return any(obj["metadata"].get("uid") == uid and not obj["metadata"].get("deletionTimestamp")
                   for objects in self._objects.values() for obj in objects.values())

    def _orphan_dependents(self, owner_uid: str) -> None:
        for res, key in self._dependents(owner_uid):
            obj = copy.deepcopy(self._objects[res][key])
            refs = [ref for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("uid") != owner_uid]
            if refs:
                obj["metadata"]["ownerReferences"] = refs
            else:
                obj["metadata"].pop("ownerReferences", None)
            self._write(res, key, obj, "MODIFIED")

    def _after_removal(self, removed: dict[str, Any]) -> None:
        """A dependent went away: finish any owner waiting for it in foreground deletion."""
        for ref in removed["metadata"].get("ownerReferences") or []:
            for res, objects in self._objects.items():
                for key, obj in list(objects.items()):
                    if obj["metadata"].get("uid") == ref.get("uid"):
                        self._maybe_finish_foreground(res, key)

    def _maybe_finish_foreground(self, res: Resource, key: _Key) -> None:
        obj = self._objects[res].get(key)
        if obj is None or FOREGROUND_FINALIZER not in (obj["metadata"].get("finalizers") or []):
            return
        if self._dependents(obj["metadata"]["uid"]):
            return
        updated = copy.deepcopy(obj)
        remaining = [f for f in updated["metadata"]["finalizers"] if f != FOREGROUND_FINALIZER]
        if remaining:
            updated["metadata"]["finalizers"] = remaining
            self._write(res, key, updated, "MODIFIED")
        else:
            updated["metadata"].pop("finalizers", None)
            self._objects[res][key] = updated
            self._remove(res, key)

    def _delete_namespace(self, name: str) -> dict[str, Any]:
        key = ("", name)
        for res in ALL_RESOURCES:
            if not res.namespaced:
                continue
            for obj_key in [k for k in self._objects[res] if k[0] == name]:
                if obj_key in self._objects[res]:
                    obj = self._objects[res][obj_key]
                    obj["metadata"].pop("finalizers", None)
                    self._remove(res, obj_key)
        return self._remove(NAMESPACES, key)


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _without_rv(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in ("resourceVersion", "managedFields")}
    return obj | {"metadata": meta}


def _component_for(kind: str) -> str:
    return {"TFJob": "tfjob-controller", "Job": "vc-controller-manager", "Pod": "kubelet",
            "PodGroup": "vc-scheduler"}.get(kind, "kubesim")


__all__ = [
    "ALL_RESOURCES",
    "BATCH_JOBS",
    "COMMANDS",
    "CONFIGMAPS",
    "CUSTOM_RESOURCES",
    "EVENTS",
    "JOBSETS",
    "NAMESPACES",
    "PODGROUPS",
    "PODS",
    "SERVICES",
    "TFJOBS",
    "VCJOBS",
    "LogLine",
    "Resource",
    "Store",
    "WatchEvent",
    "resource_for",
]
