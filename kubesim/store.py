"""kubesim's in-memory object store: the etcd + registry layer of a simulated Kubernetes API server.

Contract (shared with kubesim.controllers and the HTTP server, see the common brief):
- Objects are plain dicts keyed by (resource, namespace, name). `get`, `try_get` and `list` return deep
  copies, and writes store and return deep copies, so callers may mutate what they hold. A new pod's
  status gets phase Pending and its qosClass unless the client sent them (the API server's pod strategy).
- Stored objects are never changed in place: a write stores a new dict (which may share unchanged parts
  with the version before it). So the hot paths can skip the copies: `peek`, `select`, `owned` and
  `by_index` return the stored objects themselves, and a write with `shared=True` keeps the dict it is given
  and returns the stored object. Such objects are read-only for everyone: a caller that wants to change one
  builds a new dict (or deep-copies it) and writes that.
- Indexes by namespace, label (key and key=value), owner uid and uid, plus named indexes a caller adds
  (`add_index`, like client-go's Indexers), keep selective reads proportional to what they return: a label
  selector with an `=`/`in`/exists requirement reads only the objects that carry the label.
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
  on 410. A history ring (the last 75 s of events, at least 100, at most `history_limit`) lets the server
  replay events after a resourceVersion or answer 410 Expired when it is too old. Every subscriber gets the same `WatchEvent`, whose object is
  the stored object (read-only) and whose JSON line (`WatchEvent.line`) is encoded once for all of them.
- All methods are synchronous and must be called from the event loop thread (no locking).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubesim import errors
from kubesim.errors import ApiError
from kubesim.selectors import FieldSelector, LabelSelector, parse_field_selector, parse_label_selector

_T = TypeVar("_T")
# Stored objects are trees, so the encoder's guard against cycles (a quarter of its time) is not needed.
_ENCODER = json.JSONEncoder(check_circular=False)


def encode_json(value: Any) -> bytes:
    """`value` as JSON bytes, as json.dumps would write it."""
    return _ENCODER.encode(value).encode()



def clone(value: _T) -> _T:
    """A deep copy of JSON-shaped data (dicts, lists, scalars): several times faster than copy.deepcopy,
    which spends its time on a memo that tree-shaped JSON never needs."""
    return _clone(value)  # type: ignore[no-any-return]


def _clone(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {k: _clone(v) for k, v in value.items()}
    if kind is list:
        return [_clone(v) for v in value]
    return value


@dataclass(frozen=True, eq=False)
class Resource:
    """One REST resource kind served by kubesim: the module's constants are the only instances, compared by
    identity (`is`), which also makes them the cheapest possible dict keys for the store's tables."""

    group: str  # "" for core
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "_api_version", f"{self.group}/{self.version}" if self.group else self.version)

    @property
    def api_version(self) -> str:
        """`v1` for core, otherwise `group/version`."""
        return self._api_version  # type: ignore[attr-defined,no-any-return]


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


def _uid_prefix() -> str:
    digits = f"{random.getrandbits(80):020x}"
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{'89ab'[int(digits[16], 16) & 3]}{digits[17:20]}-"


_UID_PREFIX = _uid_prefix()
_uid_counter = itertools.count(random.getrandbits(44))  # 12 hex digits for the next 2**47 objects


def new_uid() -> str:
    """A UUID string (version 4 layout) for metadata.uid, unique in this process: a random prefix chosen
    at start and a counter for the last 12 hex digits. Creating objects at thousands per second, kubesim
    cannot afford uuid.uuid4()'s entropy read and UUID object for each."""
    return f"{_UID_PREFIX}{next(_uid_counter):012x}"


_stamp: tuple[int, str] = (-1, "")


def now_rfc3339() -> str:
    """Current UTC time as Kubernetes serializes metav1.Time."""
    global _stamp
    second = int(time.time())
    if _stamp[0] != second:  # formatting costs more than the write that needs it; once a second is enough
        _stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _stamp[1]


class WatchEvent:
    """One change, as a watch stream reports it. Read-only once made (a plain slotted class rather than a
    frozen dataclass: the store makes one per write)."""

    __slots__ = ("_body", "object", "resource", "resource_version", "type")

    def __init__(self, type: str, resource: Resource, object: Mapping[str, Any],
                 resource_version: int | None = None) -> None:
        self.type = type  # "ADDED" | "MODIFIED" | "DELETED"
        self.resource = resource
        # The stored object itself, shared by every subscriber and the history: read-only.
        self.object = object
        # the resourceVersion this event was written at
        self.resource_version = int(object["metadata"]["resourceVersion"]) if resource_version is None \
            else resource_version
        self._body: bytes | None = None

    def __repr__(self) -> str:
        meta = self.object.get("metadata") or {}
        return (f"WatchEvent({self.type} {self.resource.plural} {meta.get('namespace', '')}/{meta.get('name')} "
                f"rv={self.resource_version})")

    def line(self, event_type: str | None = None) -> bytes:
        """The event as one line of a watch stream, `{"type": ..., "object": ...}` and a newline.

        `event_type` overrides the type (a watcher whose selector an object leaves or enters sees DELETED or
        ADDED); the object is serialized once however many watchers send it."""
        body = self._body
        if body is None:
            body = self._body = encode_json(self.object)
        return b'{"type": "' + (event_type or self.type).encode() + b'", "object": ' + body + b"}\n"


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
_KeyList = list[_Key]
_Views = list[Mapping[str, Any]]
IndexFunc = Callable[[Mapping[str, Any]], Iterable[str]]


@dataclass
class _Index:
    """A named secondary index: the values `func` gives for an object → the keys of the objects giving them."""

    func: IndexFunc
    entries: dict[str, set[_Key]] = field(default_factory=dict)
    # what func gave for each stored key, so a write that leaves them alone costs one call and a comparison
    values: dict[_Key, frozenset[str]] = field(default_factory=dict)

    def put(self, key: _Key, obj: Mapping[str, Any]) -> None:
        old, new = self.values.get(key, frozenset()), frozenset(self.func(obj))
        if old == new:
            return
        for value in old - new:
            _discard(self.entries, value, key)
        for value in new - old:
            _add(self.entries, value, key)
        if new:
            self.values[key] = new
        else:
            self.values.pop(key, None)

    def pop(self, key: _Key) -> None:
        for value in self.values.pop(key, ()):
            _discard(self.entries, value, key)


# The watch history is sized like the API server's watch cache (`pkg/storage/cacher/watch_cache.go`): it keeps
# the events of the last 75 s (eventFreshDuration) and at least 100, within a bound of events (`history_limit`;
# the server's own upper bound is 100 * 1024). A watch or a continue token from before the window gets 410.
HISTORY_FRESH_SECONDS = 75.0
HISTORY_MIN_EVENTS = 100


class Store:
    """In-memory Kubernetes object store with indexes, watch fan-out, history, logs and garbage collection."""

    def __init__(self, *, history_limit: int = 1000, history_seconds: float = HISTORY_FRESH_SECONDS,
                 watch_buffer: int = 1000, namespaces: Iterable[str] = ()) -> None:
        self._objects: dict[Resource, dict[_Key, dict[str, Any]]] = {res: {} for res in ALL_RESOURCES}
        self._order = {res: index for index, res in enumerate(ALL_RESOURCES)}
        # Indexes, all kept by _put/_pop. The sets hold keys; the objects stay in _objects.
        self._by_namespace: dict[Resource, dict[str, set[_Key]]] = {res: {} for res in ALL_RESOURCES}
        self._by_label: dict[Resource, dict[tuple[str, str], set[_Key]]] = {res: {} for res in ALL_RESOURCES}
        self._by_label_key: dict[Resource, dict[str, set[_Key]]] = {res: {} for res in ALL_RESOURCES}
        self._by_owner: dict[str, set[tuple[Resource, _Key]]] = {}
        self._by_uid: dict[str, tuple[Resource, _Key]] = {}
        self._indexes: dict[Resource, dict[str, _Index]] = {res: {} for res in ALL_RESOURCES}
        self._sorted: dict[Resource, list[_Key] | None] = {res: None for res in ALL_RESOURCES}
        self._rv = 0
        self._history_limit = history_limit
        self._history_seconds = history_seconds
        self._history: deque[WatchEvent] = deque()
        self._history_times: deque[float] = deque()  # monotonic time of each event in _history
        # Watches from an RV below this floor would miss evicted events → 410 Expired.
        self._history_floor = 0
        self._watch_buffer = watch_buffer
        # subscriber → the resources it wants (None: all of them)
        self._subscribers: dict[asyncio.Queue[WatchEvent], frozenset[Resource] | None] = {}
        self._logs: dict[tuple[str, str], dict[str, list[LogLine]]] = {}
        self._log_signal: dict[tuple[str, str], asyncio.Event] = {}
        for ns in namespaces:
            self.ensure_namespace(ns)

    # ----- reads -------------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The current global resourceVersion."""
        return str(self._rv)

    def get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        """The object (a deep copy), or ApiError NotFound."""
        obj = self._objects[res].get(self._key(res, namespace, name))
        if obj is None:
            raise errors.not_found(res, name)
        return clone(obj)

    def try_get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object (a deep copy), or None."""
        obj = self._objects[res].get(self._key(res, namespace, name))
        return clone(obj) if obj is not None else None

    def peek(self, res: Resource, namespace: str | None, name: str) -> Mapping[str, Any] | None:
        """The stored object itself (read-only), or None."""
        return self._objects[res].get(self._key(res, namespace, name))

    def list(self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Matching objects (deep copies) sorted by (namespace, name), and the list resourceVersion."""
        items = self.select(res, namespace, label_selector=label_selector, field_selector=field_selector)
        return [_clone(obj) for obj in items], str(self._rv)

    def select(self, res: Resource, namespace: str | None = None, *,
               label_selector: str | LabelSelector | None = None,
               field_selector: str | FieldSelector | None = None) -> _Views:
        """Matching stored objects (read-only) sorted by (namespace, name).

        Candidates come from the namespace and label indexes (and a `metadata.name=` field requirement), so
        the cost follows the number of candidates, not the size of the store."""
        labels = label_selector if isinstance(label_selector, LabelSelector) else parse_label_selector(label_selector)
        fields = field_selector if isinstance(field_selector, FieldSelector) else parse_field_selector(
            field_selector, fields=SELECTABLE_FIELDS.get(res, _COMMON_FIELDS))
        objects = self._objects[res]
        candidates: set[_Key] | None = None
        if res.namespaced:
            namespace = namespace or fields.equals("metadata.namespace")
            if namespace:
                candidates = self._by_namespace[res].get(namespace, set())
        name = fields.equals("metadata.name")
        if name is not None:
            found: set[_Key]
            if namespace or not res.namespaced:
                key = self._key(res, namespace, name)
                found = {key} if key in objects else set()
            else:
                found = {key for key in objects if key[1] == name}
            candidates = found if candidates is None else candidates & found
        for requirement in labels.requirements:
            if not requirement.narrows:
                continue
            if requirement.op == "exists":
                narrowed = self._by_label_key[res].get(requirement.key, set())
            else:
                index = self._by_label[res]
                narrowed = set().union(*(index.get((requirement.key, value), ()) for value in requirement.values))
            candidates = narrowed if candidates is None else candidates & narrowed
        keys = self._sorted_keys(res) if candidates is None else sorted(candidates)
        found_objects = (objects[key] for key in keys)
        if labels.requirements or fields.requirements:
            return [obj for obj in found_objects if labels(obj) and fields(obj)]
        return list(found_objects)

    def owned(self, res: Resource, owner_uid: str) -> _Views:
        """Stored objects of `res` (read-only) with an ownerReference to `owner_uid`, sorted by key."""
        keys = sorted(key for dep_res, key in self._by_owner.get(owner_uid, ()) if dep_res is res)
        return [self._objects[res][key] for key in keys]

    def add_index(self, res: Resource, name: str, func: IndexFunc) -> None:
        """Keep a named index of `res`: `func(obj)` gives the values an object is found under by `by_index`.

        Built over the objects already stored, then kept up to date on every write (re-adding a name replaces
        the index). `func` must depend on the object alone."""
        index = _Index(func)
        self._indexes[res][name] = index
        for key, obj in self._objects[res].items():
            index.put(key, obj)

    def has_index(self, res: Resource, name: str) -> bool:
        """Whether a named index of `res` was added."""
        return name in self._indexes[res]

    def by_index(self, res: Resource, name: str, value: str) -> _Views:
        """Stored objects (read-only) that index `name` files under `value`, sorted by key; KeyError if no
        such index was added."""
        keys = sorted(self._indexes[res][name].entries.get(value, ()))
        return [self._objects[res][key] for key in keys]

    def find_uid(self, uid: str) -> tuple[Resource, Mapping[str, Any]] | None:
        """The resource and stored object (read-only) with this uid, or None."""
        location = self._by_uid.get(uid)
        if location is None:
            return None
        return location[0], self._objects[location[0]][location[1]]

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

    def create(self, res: Resource, obj: Mapping[str, Any], *, shared: bool = False,
               uid: str | None = None) -> dict[str, Any]:
        """Store a new object; sets uid (`uid` if given: a registry that derives fields from the uid before
        storing, as the Job strategy's generated selector does, picks it first), resourceVersion,
        creationTimestamp, generation=1.

        `shared=True`: the store keeps `obj` (or parts of it) as it is and returns the stored object; the
        caller gives up `obj` and treats both as read-only. Otherwise both are deep copies."""
        new: dict[str, Any] = dict(obj) if shared else _clone(obj)
        meta = new["metadata"] = dict(new.get("metadata") or {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + f"{random.getrandbits(20):05x}"
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
        new["apiVersion"] = res.api_version
        new["kind"] = res.kind
        meta["uid"] = uid or new_uid()
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        for transient in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "selfLink"):
            meta.pop(transient, None)
        if res is NAMESPACES:
            new.setdefault("spec", {"finalizers": ["kubernetes"]})
            new["status"] = {"phase": "Active"}
        if res is PODS:
            # as the API server's pod strategy does on create (a status the client sent is kept here)
            status = dict(new.get("status") or {})
            status.setdefault("phase", "Pending")
            status.setdefault("qosClass", pod_qos_class(new))
            new["status"] = status
            self._logs.pop((namespace or "", name), None)
        self._write(res, key, new, "ADDED")
        return new if shared else clone(new)

    def update(self, res: Resource, obj: Mapping[str, Any], *, resource_version: str | None = None,
               shared: bool = False) -> dict[str, Any]:
        """Full replace; RV precondition if the object carries one; keeps stored .status when
        the resource has a status subresource. Empties finalizers of a deleting object → removed.
        `shared` as for `create`."""
        new: dict[str, Any] = dict(obj) if shared else _clone(obj)
        meta = new["metadata"] = dict(new.get("metadata") or {})
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
        new["apiVersion"] = res.api_version
        new["kind"] = res.kind
        if res.status_subresource or res is NAMESPACES:
            # the stored status is frozen like the rest of the object, so the new version may share it
            if "status" in current:
                new["status"] = current["status"]
            elif res is NAMESPACES:
                new["status"] = {}
            else:
                new.pop("status", None)
        if _spec_part(new) != _spec_part(current):
            meta["generation"] = int(cur_meta.get("generation", 1)) + 1
        if _without_rv(new) == _without_rv(current):
            return current if shared else clone(current) # no-op: same RV
        self._write(res, key, new, "MODIFIED")
        if cur_meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(res, key)
        return new if shared else clone(new)

    def update_status(self, res: Resource, namespace: str | None, name: str, status: Mapping[str, Any], *,
                      resource_version: str | None = None, shared: bool = False) -> dict[str, Any]:
        """Replace only `.status` (spec and metadata untouched). `shared` as for `create`: the store keeps
        `status` as it is."""
        key = self._key(res, namespace, name)
        current = self._objects[res].get(key)
        if current is None:
            raise errors.not_found(res, name)
        if resource_version and str(resource_version) != current["metadata"]["resourceVersion"]:
            raise errors.conflict(res, name)
        if current.get("status") == status:
            return current if shared else clone(current)
        new = {**current, "metadata": dict(current["metadata"]), "status": status if shared else clone(status)}
        self._write(res, key, new, "MODIFIED")
        return new if shared else clone(new)

    def delete(self, res: Resource, namespace: str | None, name: str, *, propagation: str = "Background",
               resource_version: str | None = None, uid: str | None = None,
               shared: bool = False) -> dict[str, Any]:
        """Delete (or start deleting) an object; returns its last state (the stored, read-only object with
        `shared=True`, else a deep copy). Dependents are GC'd per `propagation`."""
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
            return self._copy(self._delete_namespace(name), shared)
        owner_uid = meta["uid"]
        if propagation == "Orphan":
            self._orphan_dependents(owner_uid)
        finalizers = list(meta.get("finalizers") or [])
        if (propagation == "Foreground" and owner_uid in self._by_owner
                and FOREGROUND_FINALIZER not in finalizers):
            finalizers.append(FOREGROUND_FINALIZER)
        if finalizers:
            if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
                return self._copy(current, shared)
            new_meta = {**meta, "finalizers": finalizers}
            new_meta.setdefault("deletionTimestamp", now_rfc3339())
            new_meta.setdefault("deletionGracePeriodSeconds", 0)
            obj = {**current, "metadata": new_meta}
            self._write(res, key, obj, "MODIFIED")
            if FOREGROUND_FINALIZER in finalizers:
                self._collect_dependents(owner_uid, propagation="Background")
                self._maybe_finish_foreground(res, key)
            return self._copy(self._objects[res].get(key, obj), shared)
        removed = self._remove(res, key)
        if propagation == "Background":
            self._collect_dependents(owner_uid, propagation="Background")
        return self._copy(removed, shared)

    # ----- watch -------------------------------------------------------------------------------------------

    def subscribe(self, *, bounded: bool = True,
                  resources: Iterable[Resource] | None = None) -> asyncio.Queue[WatchEvent]:
        """A queue receiving every future WatchEvent (of `resources`, default all) until it overflows or is
        unsubscribed.

        API watchers are `bounded` by `watch_buffer`; the in-process controllers, which drain everything
        on each pass and must never be dropped, subscribe unbounded."""
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue(maxsize=self._watch_buffer if bounded else 0)
        self._subscribers[queue] = frozenset(resources) if resources is not None else None
        return queue

    def is_subscribed(self, queue: asyncio.Queue[WatchEvent]) -> bool:
        """False once `queue` was dropped for falling `watch_buffer` events behind (or unsubscribed)."""
        return queue in self._subscribers

    def unsubscribe(self, queue: asyncio.Queue[WatchEvent]) -> None:
        """Stop delivering events to `queue`."""
        self._subscribers.pop(queue, None)

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
        lines = self._logs.setdefault((namespace, pod), {}).setdefault(container, [])
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for line in text.splitlines(keepends=True):
            lines.append(LogLine(stamp, line if line.endswith("\n") else line + "\n"))
        signal = self._log_signal.pop((namespace, pod), None)
        if signal is not None:
            signal.set()

    def logs(self, namespace: str, pod: str, container: str) -> _Lines:
        """All lines logged so far by one container."""
        return list(self._logs.get((namespace, pod), {}).get(container, []))

    def log_signal(self, namespace: str, pod: str) -> asyncio.Event:
        """An event set at the next append to any container of the pod (or any change to the pod)."""
        return self._log_signal.setdefault((namespace, pod), asyncio.Event())

    def record_event(self, involved: Mapping[str, Any], *, reason: str, message: str, type: str = "Normal",
                     component: str | None = None, host: str | None = None,
                     field_path: str | None = None) -> Mapping[str, Any]:
        """Create a core/v1 Event about `involved` (in its namespace, or `default`) and return it (read-only).

        `component` is the reporting component (source.component and reportingComponent; default: the one that
        owns the involved kind), `host` the node of a kubelet, `field_path` the part of the involved object
        (e.g. `spec.containers{tensorflow}`)."""
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        stamp = now_rfc3339()
        component = component or _component_for(involved.get("kind", ""))
        involved_ref = {
            "apiVersion": involved.get("apiVersion", ""), "kind": involved.get("kind", ""),
            "name": meta.get("name", ""), "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""), "resourceVersion": meta.get("resourceVersion", ""),
        }
        if field_path is not None:
            involved_ref["fieldPath"] = field_path
        source = {"component": component}
        if host is not None:
            source["host"] = host
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta.get('name', 'unknown')}.{random.getrandbits(64):016x}",
                         "namespace": namespace},
            "involvedObject": involved_ref,
            "reason": reason, "message": message, "type": type, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "eventTime": None,
            "source": source, "reportingComponent": component, "reportingInstance": "",
        }
        if not self.namespace_exists(namespace):
            self.ensure_namespace(namespace)
        return self.create(EVENTS, event, shared=True)

    # ----- internals ---------------------------------------------------------------------------------------

    @staticmethod
    def _key(res: Resource, namespace: str | None, name: str) -> _Key:
        return ((namespace or "") if res.namespaced else "", name)

    @staticmethod
    def _copy(obj: dict[str, Any], shared: bool) -> dict[str, Any]:
        return obj if shared else clone(obj)

    def _sorted_keys(self, res: Resource) -> _KeyList:
        keys = self._sorted[res]
        if keys is None:
            keys = self._sorted[res] = sorted(self._objects[res])
        return keys

    def _put(self, res: Resource, key: _Key, obj: dict[str, Any]) -> None:
        """Store `obj` under `key` (new or replacing) and bring every index up to date."""
        objects = self._objects[res]
        old = objects.get(key)
        objects[key] = obj
        meta = obj["metadata"]
        labels, owners = meta.get("labels"), meta.get("ownerReferences")
        if old is None:
            self._sorted[res] = None
            _add(self._by_namespace[res], key[0], key)
            self._by_uid[meta["uid"]] = (res, key)
            if labels:
                self._index_labels(res, key, labels)
            if owners:
                self._index_owners(res, key, owners)
        else:
            old_meta = old["metadata"]
            # versions share unchanged parts, so most writes are settled by the identity test
            old_labels, old_owners = old_meta.get("labels"), old_meta.get("ownerReferences")
            if old_labels is not labels and old_labels != labels:
                self._unindex_labels(res, key, old_labels or {})
                self._index_labels(res, key, labels or {})
            if old_owners is not owners and old_owners != owners:
                self._unindex_owners(res, key, old_owners or [])
                self._index_owners(res, key, owners or [])
        indexes = self._indexes[res]
        if indexes:
            for index in indexes.values():
                index.put(key, obj)

    def _pop(self, res: Resource, key: _Key) -> dict[str, Any]:
        """Take the object out of the store and every index."""
        obj = self._objects[res].pop(key)
        meta = obj["metadata"]
        self._sorted[res] = None
        _discard(self._by_namespace[res], key[0], key)
        self._by_uid.pop(meta["uid"], None)
        self._unindex_labels(res, key, meta.get("labels") or {})
        self._unindex_owners(res, key, meta.get("ownerReferences") or [])
        for index in self._indexes[res].values():
            index.pop(key)
        return obj

    def _index_labels(self, res: Resource, key: _Key, labels: Mapping[str, str]) -> None:
        by_label, by_key = self._by_label[res], self._by_label_key[res]
        for label, value in labels.items():
            _add(by_label, (label, value), key)
            _add(by_key, label, key)

    def _unindex_labels(self, res: Resource, key: _Key, labels: Mapping[str, str]) -> None:
        by_label, by_key = self._by_label[res], self._by_label_key[res]
        for label, value in labels.items():
            _discard(by_label, (label, value), key)
            _discard(by_key, label, key)

    def _index_owners(self, res: Resource, key: _Key, owners: Iterable[Any]) -> None:
        for ref in owners:
            if isinstance(ref, dict) and ref.get("uid"):
                _add(self._by_owner, ref["uid"], (res, key))

    def _unindex_owners(self, res: Resource, key: _Key, owners: Iterable[Any]) -> None:
        for ref in owners:
            if isinstance(ref, dict) and ref.get("uid"):
                _discard(self._by_owner, ref["uid"], (res, key))

    def _write(self, res: Resource, key: _Key, obj: dict[str, Any], event_type: str) -> None:
        """Store a new version; `obj` and its metadata dict must be new dicts nothing else holds yet."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._put(res, key, obj)
        self._emit(WatchEvent(event_type, res, obj, self._rv))
        if res is PODS:
            signal = self._log_signal.pop((key[0], key[1]), None)
            if signal is not None:
                signal.set()

    def _remove(self, res: Resource, key: _Key) -> dict[str, Any]:
        stored = self._pop(res, key)
        self._rv += 1
        obj = {**stored, "metadata": {**stored["metadata"], "resourceVersion": str(self._rv)}}
        self._emit(WatchEvent("DELETED", res, obj, self._rv))
        if res is PODS:
            signal = self._log_signal.pop((key[0], key[1]), None)
            if signal is not None:
                signal.set()
        self._after_removal(obj)
        return obj

    def _emit(self, event: WatchEvent) -> None:
        history = self._history
        history.append(event)
        now = time.monotonic()
        self._history_times.append(now)
        if len(history) > self._history_limit or (
                len(history) > HISTORY_MIN_EVENTS and now - self._history_times[0] > self._history_seconds):
            self._trim_history(now)
        dropped = []
        for queue, wanted in self._subscribers.items():
            if wanted is not None and event.resource not in wanted:
                continue
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # What it holds is still in order; its stream ends after that and the client resumes.
                dropped.append(queue)
        for queue in dropped:
            del self._subscribers[queue]

    def _trim_history(self, now: float | None = None) -> None:
        history, times = self._history, self._history_times
        while history and (len(history) > self._history_limit or (
                now is not None and len(history) > HISTORY_MIN_EVENTS and now - times[0] > self._history_seconds)):
            evicted = history.popleft()
            times.popleft()
            self._history_floor = evicted.resource_version

    def _dependents(self, owner_uid: str) -> _Refs:
        return sorted(self._by_owner.get(owner_uid, ()), key=lambda ref: (self._order[ref[0]], ref[1]))

    def _collect_dependents(self, owner_uid: str, *, propagation: str) -> None:
        for res, key in self._dependents(owner_uid):
            obj = self._objects[res].get(key)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                continue
            refs = obj["metadata"].get("ownerReferences") or []
            # An object with another live owner survives, exactly like the real garbage collector.
            if any(ref.get("uid") != owner_uid and self._uid_alive(ref.get("uid", "")) for ref in refs):
                continue
            self.delete(res, key[0] or None, key[1], propagation=propagation, shared=True)

    def _uid_alive(self, uid: str) -> bool:
        location = self._by_uid.get(uid)
        return location is not None and not \
            self._objects[location[0]][location[1]]["metadata"].get("deletionTimestamp")

    def _orphan_dependents(self, owner_uid: str) -> None:
        for res, key in self._dependents(owner_uid):
            current = self._objects[res][key]
            meta = dict(current["metadata"])
            refs = [ref for ref in meta.get("ownerReferences") or [] if ref.get("uid") != owner_uid]
            if refs:
                meta["ownerReferences"] = refs
            else:
                meta.pop("ownerReferences", None)
            self._write(res, key, {**current, "metadata": meta}, "MODIFIED")

    def _after_removal(self, removed: Mapping[str, Any]) -> None:
        """A dependent went away: finish any owner waiting for it in foreground deletion."""
        for ref in removed["metadata"].get("ownerReferences") or []:
            location = self._by_uid.get(ref.get("uid", ""))
            if location is not None:
                self._maybe_finish_foreground(*location)

    def _maybe_finish_foreground(self, res: Resource, key: _Key) -> None:
        obj = self._objects[res].get(key)
        if obj is None or FOREGROUND_FINALIZER not in (obj["metadata"].get("finalizers") or []):
            return
        if obj["metadata"]["uid"] in self._by_owner:
            return
        meta = dict(obj["metadata"])
        remaining = [f for f in meta["finalizers"] if f != FOREGROUND_FINALIZER]
        if remaining:
            meta["finalizers"] = remaining
            self._write(res, key, {**obj, "metadata": meta}, "MODIFIED")
        else:
            meta.pop("finalizers", None)
            self._put(res, key, {**obj, "metadata": meta})
            self._remove(res, key)

    def _delete_namespace(self, name: str) -> dict[str, Any]:
        key = ("", name)
        for res in ALL_RESOURCES:
            if not res.namespaced:
                continue
            for obj_key in sorted(self._by_namespace[res].get(name, ())):
                obj = self._objects[res].get(obj_key)
                if obj is not None:
                    meta = {k: v for k, v in obj["metadata"].items() if k != "finalizers"}
                    self._put(res, obj_key, {**obj, "metadata": meta})
                    self._remove(res, obj_key)
        return self._remove(NAMESPACES, key)


def _add(index: dict[Any, set[Any]], value: Any, key: Any) -> None:
    """File `key` under `value` (setdefault would build an empty set on every call, found or not)."""
    keys = index.get(value)
    if keys is None:
        index[value] = {key}
    else:
        keys.add(key)


def _discard(index: dict[Any, set[Any]], value: Any, key: Any) -> None:
    """Drop `key` from `index[value]`, and the entry once it is empty (indexes must not grow without end)."""
    keys = index.get(value)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[value]


def pod_qos_class(pod: Mapping[str, Any]) -> str:
    """The pod's QoS class (BestEffort, Burstable, Guaranteed) from its containers' requests and limits."""
    containers = [c for c in (pod.get("spec") or {}).get("containers") or [] if isinstance(c, dict) and c.get("name")]
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("limits") or r.get("requests") for r in resources):
        return "BestEffort"
    if all(r.get("limits") and r.get("limits") == (r.get("requests") or r.get("limits")) for r in resources):
        return "Guaranteed"
    return "Burstable"


def _spec_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _without_rv(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in ("resourceVersion", "managedFields")}
    return {**obj, "metadata": meta}


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
    "clone",
    "encode_json",
    "pod_qos_class",
    "resource_for",
]
