"""kubesim's HTTP(S) Kubernetes API server (aiohttp) over a `Store`.

Contract: `ApiServer(store, token=..., faults=..., policy=...)`; `ApiServer.app()` returns the aiohttp application.
It serves what clients that know nothing of kubesim (kubectl, kubernetes_asyncio) need for TFJobs, Volcano
Jobs/Commands/PodGroups, JobSets, batch/v1 Jobs and core pods/services/configmaps/events/namespaces:
discovery (`/version`, `/api`, `/apis`, resource lists), list (label/field selectors, limit/continue), watch
(chunked JSON lines, history replay, bookmarks, 410 ERROR events, timeoutSeconds), get, create, replace (RV
required for custom resources), merge/JSON patch (strategic merge → 415 for custom resources), delete with
propagation policies, the `/status` subresource, pod logs (tail, container, follow), SubjectAccessReviews and
impersonation. Every error body is a `Status`. Custom resources are pruned/defaulted/validated against the
shipped CRD schema and pass the admission webhooks of `kubesim.admission` (built-in kinds pass it too, for
their registries' defaults and validation: a batch/v1 Job gets the Job registry's defaults, generated
selector and validation there). batch/v1 Jobs are deleted with Orphan propagation unless the request names
a policy. `/apis` lists built-in groups first, so kubectl's `jobs` is batch/v1.
Reads serialize the store's shared views (no copies; LISTs with label selectors read the label index), and
watch fan-out costs O(watchers) per event: every watcher receives the same `WatchEvent`, whose JSON line is
encoded once and sent as is by each watcher whose resource, namespace and selector match.
Admin endpoints (same bearer token, never faulted): `GET /kubesim/admin/state`, `POST /kubesim/admin/faults/
{down,up,latency,fail-next,cut-watches,shrink-history,clear}`, `POST /kubesim/admin/scenario`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web
from multidict import CIMultiDict

from kubesim import admission, errors, schema
from kubesim.errors import ApiError
from kubesim.faults import Faults
from kubesim.policy import AccessPolicy
from kubesim.selectors import label_key_error, label_value_error, parse_field_selector, parse_label_selector
from kubesim.store import (
    ALL_RESOURCES,
    BATCH_JOBS,
    CUSTOM_RESOURCES,
    NAMESPACES,
    PODS,
    SELECTABLE_FIELDS,
    Resource,
    Store,
    WatchEvent,
    clone,
    encode_json,
    new_uid,
    now_rfc3339,
)

SERVER_VERSION = {
    "major": "1", "minor": "31", "gitVersion": "v1.31.0-kubesim", "gitCommit": "kubesim", "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22.5", "compiler": "gc", "platform": "linux/amd64",
}
ADMIN_USER = "kubesim-admin"
ADMIN_GROUPS = ("system:masters", "system:authenticated")

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
CR_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
CORE_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH]

SHORT_NAMES: dict[Resource, list[str]] = {}
CATEGORIES: dict[str, list[str]] = {"pods": ["all"], "services": ["all"]}
CORE_SHORT = {"pods": ["po"], "services": ["svc"], "configmaps": ["cm"], "events": ["ev"], "namespaces": ["ns"]}
AUTHZ_GROUP = "authorization.k8s.io"
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def short_names(res: Resource) -> list[str]:
    """Short names from the CRD (vcjob, vj) or the core defaults."""
    if not res.group:
        return CORE_SHORT.get(res.plural, [])
    if res not in SHORT_NAMES:
        doc = schema.crd_document(res)
        SHORT_NAMES[res] = list(((doc or {}).get("spec", {}).get("names", {}) or {}).get("shortNames") or [])
    return SHORT_NAMES[res]


@dataclass
class Target:
    """What a request path addresses."""

    res: Resource
    namespace: str | None
    name: str | None
    subresource: str | None


@dataclass
class Caller:
    """Who makes the request (after impersonation)."""

    user: str
    groups: list[str]
    impersonated: bool


class ApiServer:
    """The request handlers and their shared state."""

    def __init__(self, store: Store, *, token: str, faults: Faults, policy: AccessPolicy,
                 impersonations: list[dict[str, Any]] | None = None, bookmark_interval: float = 1.0,
                 controllers_getter: Callable[[], Any] = lambda: None,
                 tfjob_dialect: str = "training-operator") -> None:
        self.store = store
        self.tfjob_dialect = tfjob_dialect
        self.token = token
        self.faults = faults
        self.policy = policy
        self.impersonations = impersonations if impersonations is not None else []
        self.bookmark_interval = bookmark_interval
        self._controllers_getter = controllers_getter
        # Open streams (watches, followed logs): request and handler task, so an outage can cut them.
        self._streams: dict[web.StreamResponse, tuple[web.Request, asyncio.Task[Any] | None]] = {}
        self.requests: int = 0
        faults.on_cut_watches = self.cut_watches
        # Test hooks (None: off): more bearer tokens (`token_validator(token) -> bool`, e.g. short-lived
        # ones), and an observer of every request before it is authenticated or faulted.
        self.token_validator: Callable[[str], bool] | None = None
        self.on_request: Callable[[web.Request], None] | None = None
        # Test hook: bearer tokens of named identities (token -> (user, groups)). They are accepted, and a
        # SelfSubjectAccessReview is answered for that identity by the policy, as a real API server answers
        # for the caller. (kubesim authorizes only impersonated requests; other callers are admins.)
        self.token_identities: dict[str, tuple[str, list[str]]] = {}

    # ----- app ---------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/kubesim/admin/{tail:.*}", self._admin)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        self.cut_watches()

    def cut_watches(self) -> int:
        """Abort every open watch (and log-follow) connection; returns how many were cut."""
        count = 0
        for response, (request, task) in list(self._streams.items()):
            transport = request.transport
            if transport is not None:
                transport.abort()
            if task is not None:
                task.cancel()
            count += 1
            self._streams.pop(response, None)
        return count

    @property
    def open_streams(self) -> int:
        """Watches and followed logs currently being served."""
        return len(self._streams)

    def _track(self, request: web.Request, response: web.StreamResponse) -> None:
        self._streams[response] = (request, asyncio.current_task())

    def _untrack(self, response: web.StreamResponse) -> None:
        self._streams.pop(response, None)

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        self.requests += 1
        if self.on_request is not None:
            self.on_request(request)
        try:
            admin = request.path.startswith("/kubesim/admin/")
            if self.faults.mode == "refuse" and not admin and request.transport is not None:
                # A connection accepted just before the outage began (its TLS handshake still running when the
                # listener went down, so not among the connections going down aborts): a dead server answers
                # nothing, so it is dropped at its first request.
                request.transport.abort()
                raise ConnectionResetError("kubesim is down")
            if self.faults.mode == "503" and not admin:
                raise errors.service_unavailable()
            self._authenticate(request)
            if not admin:
                if self.faults.delay:
                    await asyncio.sleep(self.faults.delay)
                failure = self.faults.failure_for(request.method, request.path_qs)
                if failure is not None:
                    raise failure
            return await handler(request)
        except ApiError as exc:
            return status_response(exc)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - every failure must still be a Status
            return status_response(errors.internal_error(f"Internal error occurred: {type(exc).__name__}: {exc}"))

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        token = credential.strip()
        if scheme.lower() == "bearer" and (token == self.token or token in self.token_identities):
            return
        if scheme.lower() == "bearer" and self.token_validator is not None and self.token_validator(credential.strip()):
            return
        if request.transport is not None and request.transport.get_extra_info("peercert"):
            return  # a client certificate the TLS layer verified against the CA (only asked for when enabled)
        raise errors.unauthorized()

    def _caller(self, request: web.Request) -> Caller:
        user = request.headers.get("Impersonate-User")
        groups = request.headers.getall("Impersonate-Group", [])
        if user is None and groups:
            raise errors.ApiError(500, "InternalError",
                                  "Internal error occurred: requested [{Kind:Group ...}] without impersonating a user")
        if user is None:
            scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
            identity = self.token_identities.get(credential.strip()) if scheme.lower() == "bearer" else None
            if identity is not None:
                return Caller(identity[0], [*identity[1], "system:authenticated"], False)
            return Caller(ADMIN_USER, list(ADMIN_GROUPS), False)
        self.impersonations.append({"user": user, "groups": list(groups), "method": request.method,
                                    "path": request.path_qs})
        return Caller(user, list(groups) + ["system:authenticated"], True)

    # ----- admin -------------------------------------------------------------------------------------------

    async def _admin(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._admin_action(request)
        except (ValueError, TypeError) as exc:
            raise errors.bad_request(f"invalid admin request: {exc}") from exc

    async def _admin_action(self, request: web.Request) -> web.StreamResponse:
        action = request.match_info["tail"].strip("/")
        body: dict[str, Any] = {}
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise errors.bad_request(f"admin body is not JSON: {exc}") from exc
        params = {**request.query, **body}
        faults = self.faults
        if action == "state" and request.method == "GET":
            return json_response({"faults": faults.describe(), "resourceVersion": self.store.resource_version,
                                  "impersonations": self.impersonations, "requests": self.requests})
        if request.method != "POST":
            raise errors.method_not_allowed(request.method, request.path)
        try:
            if action == "faults/down":
                mode = str(params.get("mode", "refuse"))
                if mode == "refuse":
                    # Answer first: going down drops every connection, this one included.
                    response = json_response({"ok": True, "faults": faults.describe() | {"mode": "refuse"}})
                    await response.prepare(request)
                    await response.write_eof()
                    faults.down(mode)
                    return response
                faults.down(mode)
            elif action == "faults/up":
                faults.up()
            elif action == "faults/latency":
                faults.latency(float(params.get("seconds", 0)))
            elif action == "faults/fail-next":
                faults.fail_next(int(params.get("n", 1)), int(params.get("status", 500)), path=params.get("path"),
                                 method=params.get("method"), reason=params.get("reason"),
                                 message=params.get("message"))
            elif action == "faults/cut-watches":
                return json_response({"cut": faults.cut_watches()})
            elif action == "faults/shrink-history":
                faults.shrink_history(int(params.get("n", 0)))
            elif action == "faults/clear":
                faults.clear()
            elif action == "scenario":
                controllers = self._controllers_getter()
                if controllers is None:
                    raise errors.service_unavailable("kubesim runs without controllers; scenarios are unavailable")
                scenario = str(params.get("scenario", ""))
                if not scenario:
                    raise errors.bad_request("scenario is required")
                if params.get("name"):
                    controllers.set_job_scenario(str(params.get("namespace", "default")), str(params["name"]), scenario)
                else:
                    controllers.set_default_scenario(scenario)
            else:
                raise errors.ApiError(404, "NotFound", f"unknown admin action {action!r}")
        except (ValueError, TypeError) as e:
            # Bad numbers and malformed scenario strings (ScenarioError is a ValueError) are the caller's fault.
            raise errors.bad_request(f"invalid admin parameters: {e}") from e
        return json_response({"ok": True, "faults": faults.describe()})

    # ----- dispatch ----------------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if path in ("/version", "/version/"):
            return json_response(SERVER_VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if parts[:2] == ["openapi", "v3"]:
            return json_response(openapi_v3("/".join(parts[2:]), dialect=self.tfjob_dialect))
        if parts and parts[0] == "openapi":
            raise _not_found_path()
        if parts == ["api"]:
            return json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})
        if parts == ["api", "v1"]:
            return json_response(resource_list("", "v1"))
        if parts == ["apis"]:
            return json_response(group_list())
        if len(parts) == 2 and parts[0] == "apis":
            group = next((g for g in group_list()["groups"] if g["name"] == parts[1]), None)
            if group is None:
                raise _not_found_path()
            return json_response({"kind": "APIGroup", "apiVersion": "v1", **group})
        if len(parts) == 3 and parts[0] == "apis":
            listing = resource_list(parts[1], parts[2])
            if not listing["resources"]:
                raise _not_found_path()
            return json_response(listing)
        if len(parts) == 4 and parts[:3] == ["apis", AUTHZ_GROUP, "v1"]:
            return await self._access_review(request, parts[3])
        target = parse_target(parts)
        caller = self._caller(request)
        return await self._serve(request, target, caller)

    async def _serve(self, request: web.Request, target: Target, caller: Caller) -> web.StreamResponse:
        method = request.method
        res, sub = target.res, target.subresource
        watch = request.query.get("watch", "").lower() in ("1", "true")
        verb = _verb(method, target, watch)
        if caller.impersonated and self.policy.enforce_impersonation:
            resource_name = f"{res.plural}/{sub}" if sub else res.plural
            decision = self.policy.evaluate(user=caller.user, groups=caller.groups, verb=verb,
                                            resource=resource_name, namespace=target.namespace,
                                            api_group=res.group)
            if not decision.allowed:
                raise errors.rbac_forbidden(res, target.name, user=caller.user, verb=verb,
                                            namespace=target.namespace)
        if target.name is None:
            if method == "GET":
                return await (self._watch(request, target) if watch else self._list(request, target))
            if method == "POST":
                return await self._create(request, target)
            if method == "DELETE":
                return await self._delete_collection(request, target)
            raise errors.method_not_allowed(method, f"{res.plural}")
        if sub is None:
            handlers = {"GET": self._get, "PUT": self._replace, "PATCH": self._patch, "DELETE": self._delete}
        elif sub == "status" and res.status_subresource:
            handlers = {"GET": self._get, "PUT": self._replace, "PATCH": self._patch}
        elif sub == "log" and res is PODS:
            handlers = {"GET": self._logs}
        else:
            raise _not_found_path()
        handler = handlers.get(method)
        if handler is None:
            raise errors.method_not_allowed(method, f"{res.plural}/{sub}" if sub else res.plural)
        return await handler(request, target)

    # ----- reads -------------------------------------------------------------------------------------------

    def _current(self, target: Target) -> Mapping[str, Any]:
        """The stored object the request names (read-only: handlers copy what they change), or NotFound."""
        assert target.name is not None
        current = self.store.peek(target.res, target.namespace, target.name)
        if current is None:
            raise errors.not_found(target.res, target.name)
        return current

    async def _get(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert target.name is not None
        return json_response(self._current(target))

    async def _list(self, request: web.Request, target: Target) -> web.StreamResponse:
        res = target.res
        query = request.query
        list_rv = self.store.resource_version
        items = self.store.select(res, target.namespace, label_selector=query.get("labelSelector"),
                                  field_selector=query.get("fieldSelector"))
        limit = _int_param(query, "limit")
        token = query.get("continue")
        if token:
            start_key, list_rv = self._decode_continue(token)
            items = [item for item in items if _sort_key(item) > start_key]
        metadata: dict[str, Any] = {"resourceVersion": list_rv}
        if limit and limit > 0 and len(items) > limit:
            remaining = len(items) - limit
            items = items[:limit]
            metadata["continue"] = _encode_continue(_sort_key(items[-1]), list_rv)
            metadata["remainingItemCount"] = remaining
        body = {"apiVersion": res.api_version, "kind": f"{res.kind}List", "metadata": metadata, "items": items}
        if _wants_table(request):
            return json_response(table_for(res, items, metadata))
        return json_response(body)

    def _decode_continue(self, token: str) -> tuple[tuple[str, str], str]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
            start_key = (str(data["start"][0]), str(data["start"][1]))
            list_rv = str(data["rv"])
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise errors.bad_request(f"continue key is not valid: {exc}") from exc
        try:
            self.store.history_since(int(list_rv))
        except ApiError as exc:
            raise errors.expired(
                "The provided continue parameter is too old to display a consistent list result. You can start "
                "a new list without the continue parameter, or use the continue token in this response to "
                "retrieve the remainder of the results. Continuing with the provided token results in an "
                "inconsistent list - objects that were created, modified, or deleted between the time the first "
                "chunk was returned and now may show up in the list.",
                continue_token=_encode_continue(start_key, self.store.resource_version)) from exc
        return start_key, list_rv

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        res = target.res
        query = request.query
        label_match = parse_label_selector(query.get("labelSelector"))
        field_match = parse_field_selector(query.get("fieldSelector"),
                                           fields=SELECTABLE_FIELDS.get(res, ("metadata.name", "metadata.namespace")))
        bookmarks = query.get("allowWatchBookmarks", "").lower() in ("1", "true")
        timeout = _int_param(query, "timeoutSeconds")
        rv_param = query.get("resourceVersion", "")
        unselective = not label_match.requirements and not field_match.requirements

        # uids the client currently sees through its selector: an object whose labels stop (start) matching
        # is reported as DELETED (ADDED), as the watch cache does. Without a selector every object in scope
        # matches, so nothing needs remembering.
        visible: set[str] = set()

        def translate(event: WatchEvent) -> bytes | None:
            """The line this watcher sends for a store event: the event's own shared bytes, or None."""
            if event.resource is not res:
                return None
            obj = event.object
            if res.namespaced and target.namespace and obj["metadata"].get("namespace") != target.namespace:
                return None
            if unselective:
                return event.line()
            uid = obj["metadata"].get("uid", "")
            was_visible, now_matches = uid in visible, label_match(obj) and field_match(obj)
            if event.type == "DELETED":
                visible.discard(uid)
                return event.line() if (was_visible or now_matches) else None
            if now_matches:
                visible.add(uid)
                return event.line(event.type if was_visible or event.type == "ADDED" else "ADDED")
            if was_visible:
                visible.discard(uid)
                return event.line("DELETED")
            return None

        # Only its resource's events: a burst of another kind (a controller pass writing thousands of pods)
        # must not overflow, and drop, a quiet watch.
        queue = self.store.subscribe(resources=(target.res,))
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                           "Cache-Control": "no-cache, private"})
        response.enable_chunked_encoding()
        initial: list[bytes] = []
        expired: ApiError | None = None
        # Everything between subscribe() and here is synchronous, so no event can slip between replay and queue.
        if rv_param in ("", "0"):
            items = self.store.select(res, target.namespace, label_selector=label_match, field_selector=field_match)
            initial = [_event_line("ADDED", item) for item in items]
            if not unselective:
                visible.update(item["metadata"]["uid"] for item in items)
        else:
            try:
                since = int(rv_param)
            except ValueError as exc:
                self.store.unsubscribe(queue)
                raise errors.bad_request(f'resourceVersion: Invalid value: "{rv_param}": must be an integer') from exc
            try:
                replay = self.store.history_since(since)
                if not unselective:
                    # What the client listed at `since` is unknown here; assume it saw what matches now and was
                    # not created later.
                    created_later = {e.object["metadata"].get("uid") for e in replay if e.type == "ADDED"}
                    items = self.store.select(res, target.namespace, label_selector=label_match,
                                              field_selector=field_match)
                    visible.update(uid for item in items if (uid := item["metadata"]["uid"]) not in created_later)
                initial = [line for e in replay if (line := translate(e)) is not None]
            except ApiError as exc:
                expired = exc
        await response.prepare(request)
        self._track(request, response)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        try:
            if expired is not None:
                await _write_event(response, {"type": "ERROR", "object": expired.status()})
                return response
            if initial:
                await response.write(b"".join(initial))
            next_bookmark = loop.time() + self.bookmark_interval if bookmarks else None
            while True:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    break
                if queue.empty() and not self.store.is_subscribed(queue):
                    break  # dropped for being too slow: end the stream, the client resumes from its last event
                if request.transport is None or request.transport.is_closing():
                    break  # the client went away (aiohttp does not cancel handlers on disconnect)
                wake = min(t for t in (deadline, next_bookmark, now + _DISCONNECT_POLL) if t is not None)
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=max(0.0, wake - now))
                except TimeoutError:
                    if next_bookmark is not None and loop.time() >= next_bookmark:
                        next_bookmark = loop.time() + self.bookmark_interval
                        await _write_event(response, {"type": "BOOKMARK", "object": {
                            "kind": res.kind, "apiVersion": res.api_version,
                            "metadata": {"resourceVersion": self.store.resource_version}}})
                    continue
                # Whatever else is queued goes out in the same write: one wake-up per burst, not per event.
                lines = [line for e in _drain(queue, event) if (line := translate(e)) is not None]
                if lines:
                    await response.write(b"".join(lines))
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.store.unsubscribe(queue)
            self._untrack(response)
        if request.transport is not None and not request.transport.is_closing():
            await response.write_eof()
        return response

    async def _logs(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert target.name is not None and target.namespace is not None
        pod = self._current(target)
        containers = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                raise errors.bad_request(f"a container name must be specified for pod {target.name}, choose one "
                                         f"of: [{' '.join(containers)}]")
            container = containers[0]
        elif container not in containers:
            raise errors.bad_request(f"container {container} is not valid for pod {target.name}")
        lines = self.store.logs(target.namespace, target.name, container)
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if not lines and phase == "Pending":
            raise errors.bad_request(f'container "{container}" in pod "{target.name}" is waiting to start: '
                                     "ContainerCreating")
        tail = _int_param(request.query, "tailLines")
        timestamps = request.query.get("timestamps", "").lower() in ("1", "true")
        follow = request.query.get("follow", "").lower() in ("1", "true")
        start = max(0, len(lines) - tail) if tail is not None else 0

        def render(chunk: list[Any]) -> bytes:
            return "".join(f"{line.timestamp} {line.text}" if timestamps else line.text for line in chunk).encode()

        if not follow:
            return web.Response(body=render(lines[start:]), content_type="text/plain")
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        self._track(request, response)
        sent = start
        try:
            while True:
                signal = self.store.log_signal(target.namespace, target.name)
                lines = self.store.logs(target.namespace, target.name, container)
                if len(lines) > sent:
                    await response.write(render(lines[sent:]))
                    sent = len(lines)
                current = self.store.peek(PODS, target.namespace, target.name)
                if current is None or current["metadata"]["uid"] != pod["metadata"]["uid"]:
                    break
                if (current.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    break
                if request.transport is None or request.transport.is_closing():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signal.wait(), timeout=_DISCONNECT_POLL)
        except (ConnectionResetError, ConnectionError):
            return response
        finally:
            self._untrack(response)
        await response.write_eof()
        return response

    # ----- writes ------------------------------------------------------------------------------------------

    async def _create(self, request: web.Request, target: Target) -> web.StreamResponse:
        res = target.res
        body = await _read_object(request)
        meta = _metadata_of(body)
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != target.namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                         "on the request")
            if target.namespace is None:
                raise errors.method_not_allowed("POST", f"cluster-scoped {res.plural}; use a namespace")
            meta["namespace"] = target.namespace
        _check_type_meta(body, res)
        if res.status_subresource and res is not PODS:
            body.pop("status", None)
        # the uid is fixed before the registry runs, which derives fields from it (a Job's selector)
        uid = meta["uid"] = new_uid()
        obj, warnings = self._admit_write(request, res, body, old=None)
        if _dry_run(request):
            if res.namespaced and not self.store.namespace_exists(target.namespace or ""):
                raise errors.not_found(NAMESPACES, target.namespace or "")
            if self.store.peek(res, target.namespace, meta.get("name", "")) is not None:
                raise errors.already_exists(res, meta.get("name", ""))
            obj["metadata"].update(uid=uid, creationTimestamp=now_rfc3339(), generation=1)
            return json_response(obj, status=201, warnings=warnings)
        # `obj` was decoded for this request alone, so the store may keep it as it is
        created = self.store.create(res, obj, shared=True, uid=uid)
        return json_response(created, status=201, warnings=warnings)

    async def _replace(self, request: web.Request, target: Target) -> web.StreamResponse:
        res = target.res
        assert target.name is not None
        body = await _read_object(request)
        meta = _metadata_of(body)
        if meta.get("name") and meta["name"] != target.name:
            raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                     f"({target.name})")
        if res.namespaced and meta.get("namespace") and meta["namespace"] != target.namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on "
                                     "the request")
        meta["name"] = target.name
        if res.namespaced:
            meta["namespace"] = target.namespace
        _check_type_meta(body, res)
        current = self._current(target)
        if not meta.get("resourceVersion") and res in CUSTOM_RESOURCES:
            raise errors.invalid(res, target.name, [errors.field_cause(
                "metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")])
        if meta.get("resourceVersion") and meta["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise errors.conflict(res, target.name)
        if target.subresource == "status":
            return await self._write_status(request, target, current, body.get("status") or {})
        return self._finish_update(request, target, current, body)

    def _finish_update(self, request: web.Request, target: Target, current: Mapping[str, Any],
                       new: dict[str, Any]) -> web.StreamResponse:
        res = target.res
        assert target.name is not None
        new = clone(new)
        if res.status_subresource:
            # The stored status wins; it is neither pruned nor re-validated on a main-resource write.
            new.pop("status", None)
        obj, warnings = self._admit_write(request, res, new, old=current)
        if res.status_subresource and "status" in current:
            obj["status"] = current["status"]
        if _dry_run(request):
            return json_response(obj, warnings=warnings)
        updated = self.store.update(res, obj, resource_version=current["metadata"]["resourceVersion"], shared=True)
        return json_response(updated, warnings=warnings)

    async def _write_status(self, request: web.Request, target: Target, current: Mapping[str, Any],
                            status: dict[str, Any]) -> web.StreamResponse:
        assert target.name is not None
        if target.res in CUSTOM_RESOURCES:
            candidate = clone(dict(current))
            candidate["status"] = status
            checked = schema.check(target.res, candidate, dialect=self.tfjob_dialect, owned=True)
            if checked.causes:
                raise errors.invalid(target.res, target.name, checked.causes)
            status = checked.object.get("status") or {}
        if _dry_run(request):
            return json_response({**current, "status": status})
        updated = self.store.update_status(target.res, target.namespace, target.name, clone(status),
                                           resource_version=current["metadata"]["resourceVersion"], shared=True)
        return json_response(updated)

    async def _patch(self, request: web.Request, target: Target) -> web.StreamResponse:
        res = target.res
        assert target.name is not None
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        accepted = CR_PATCH_TYPES if res in CUSTOM_RESOURCES else CORE_PATCH_TYPES
        if content_type not in accepted:
            raise errors.unsupported_media_type(content_type, accepted)
        raw = await request.read()
        if content_type == APPLY_PATCH:
            return await self._apply(request, target, raw)
        try:
            patch = json.loads(raw or b"null")
        except ValueError as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc
        current = self._current(target)
        if content_type == JSON_PATCH:
            if not isinstance(patch, list):
                raise errors.bad_request(
                    f"json: cannot unmarshal {_go_json_type(patch)} into Go value of type jsonpatch.Patch")
            patched = apply_json_patch(current, patch)
        else:
            if not isinstance(patch, dict):
                raise errors.bad_request(f"json: cannot unmarshal {_go_json_type(patch)} into Go value of type "
                                         "map[string]interface {}")
            patched = apply_merge_patch(current, patch)
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch did not produce an object")
        meta = _metadata_of(patched)
        rv = meta.get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(res, target.name)
        meta["name"] = target.name
        if res.namespaced:
            meta["namespace"] = target.namespace
        patched["apiVersion"], patched["kind"] = res.api_version, res.kind
        if target.subresource == "status":
            return await self._write_status(request, target, current, patched.get("status") or {})
        return self._finish_update(request, target, current, patched)

    async def _apply(self, request: web.Request, target: Target, raw: bytes) -> web.StreamResponse:
        """Server-side apply, minimally: the applied fields are merged into (or create) the object."""
        assert target.name is not None
        if not request.query.get("fieldManager"):
            raise errors.bad_request("PATCH, application/apply-patch+yaml requires fieldManager")
        try:
            applied = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"error decoding YAML: {exc}") from exc
        if not isinstance(applied, dict):
            raise errors.bad_request("error decoding YAML: the applied configuration is not an object")
        current = self.store.peek(target.res, target.namespace, target.name)
        if current is None:
            body = clone(applied)
            meta = _metadata_of(body)
            meta["name"] = target.name
            if target.res.namespaced:
                meta["namespace"] = target.namespace
            uid = meta["uid"] = new_uid()
            obj, warnings = self._admit_write(request, target.res, body, old=None)
            if target.res.status_subresource and target.res is not PODS:
                obj.pop("status", None)
            return json_response(self.store.create(target.res, obj, shared=True, uid=uid), status=201,
                                 warnings=warnings)
        patched = apply_merge_patch(current, applied)
        if target.subresource == "status":
            return await self._write_status(request, target, current, patched.get("status") or {})
        return self._finish_update(request, target, current, patched)

    async def _delete(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert target.name is not None
        options: dict[str, Any] = {}
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                try:
                    options = json.loads(raw)
                except ValueError as exc:
                    raise errors.bad_request(f"error decoding DeleteOptions: {exc}") from exc
        propagation = request.query.get("propagationPolicy") or options.get("propagationPolicy")
        if propagation is None and options.get("orphanDependents") is not None:
            propagation = "Orphan" if options["orphanDependents"] else "Background"
        preconditions = options.get("preconditions") or {}
        current = self._current(target)
        if _dry_run(request) or "All" in (options.get("dryRun") or []):
            return json_response(current)
        result = self.store.delete(target.res, target.namespace, target.name,
                                   propagation=propagation or _default_propagation(target.res),
                                   resource_version=preconditions.get("resourceVersion"),
                                   uid=preconditions.get("uid"), shared=True)
        still_there = self.store.peek(target.res, target.namespace, target.name)
        if still_there is not None:
            return json_response(still_there)
        if target.res in CUSTOM_RESOURCES:
            details = {"name": target.name, "group": target.res.group, "kind": target.res.plural,
                       "uid": result["metadata"].get("uid")}
            return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "details": details})
        return json_response(result)

    async def _delete_collection(self, request: web.Request, target: Target) -> web.StreamResponse:
        items = self.store.select(target.res, target.namespace, label_selector=request.query.get("labelSelector"),
                                  field_selector=request.query.get("fieldSelector"))
        propagation = request.query.get("propagationPolicy") or _default_propagation(target.res)
        deleted = []
        for item in items:
            meta = item["metadata"]
            try:
                deleted.append(self.store.delete(target.res, meta.get("namespace"), meta["name"],
                                                 propagation=propagation, shared=True))
            except ApiError as exc:
                if exc.code != 404:
                    raise
        res = target.res
        return json_response({"apiVersion": res.api_version, "kind": f"{res.kind}List",
                              "metadata": {"resourceVersion": self.store.resource_version}, "items": deleted})

    def _admit_write(self, request: web.Request, res: Resource, body: dict[str, Any],
                     old: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
        """Decode-time pruning/defaulting, mutating admission, validation, validating admission.

        `body` is the handler's own (decoded for this request, or a copy): it is pruned in place."""
        warnings: list[str] = []
        obj = body
        name = _metadata_of(body).get("name", "")
        validation = request.query.get("fieldValidation", "Warn")
        if validation not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(f'fieldValidation: Unsupported value: "{validation}": supported values: '
                                     '"Ignore", "Strict", "Warn"')
        if res in CUSTOM_RESOURCES:
            checked = schema.check(res, body, dialect=self.tfjob_dialect, owned=True)
            unknown = [f for f in checked.pruned if not f.startswith("metadata.")] + [
                f for f in checked.pruned if f.startswith("metadata.")]
            if unknown and validation == "Strict":
                text = ", ".join(f'unknown field "{f}"' for f in unknown)
                raise errors.bad_request(f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: '
                                         f"strict decoding error: {text}")
            if validation == "Warn":
                warnings = [f'unknown field "{f}"' for f in unknown]
            obj = admission.mutate(res, checked.object, old)
            if obj is not checked.object:
                checked = schema.check(res, obj, dialect=self.tfjob_dialect, owned=True)
                obj = checked.object
            causes = _metadata_causes(res, obj) + checked.causes
            if causes:
                raise errors.invalid(res, name, causes)
            admission.validate(res, obj, old)
        else:
            obj = admission.mutate(res, obj, old)
            causes = _metadata_causes(res, obj)
            if causes:
                raise errors.invalid(res, name, causes)
            admission.validate(res, obj, old)
        return obj, warnings

    # ----- authorization -----------------------------------------------------------------------------------

    async def _access_review(self, request: web.Request, plural: str) -> web.StreamResponse:
        if plural not in ("subjectaccessreviews", "selfsubjectaccessreviews"):
            raise _not_found_path()
        if request.method != "POST":
            raise errors.method_not_allowed(request.method, plural)
        caller = self._caller(request)
        body = await _read_object(request)
        spec = body.get("spec") or {}
        attrs = spec.get("resourceAttributes") or spec.get("nonResourceAttributes") or {}
        if plural == "subjectaccessreviews":
            if not spec.get("user") and not spec.get("groups"):
                raise errors.invalid(_SAR, "", [errors.field_cause(
                    "spec.user", "Invalid value: \"\": at least one of user or group must be specified")])
            user, groups = spec.get("user", ""), list(spec.get("groups") or [])
        else:
            user, groups = caller.user, caller.groups
        if "system:masters" in groups:
            decision_allowed, denied, reason = True, False, "system:masters is allowed everything"
        else:
            decision = self.policy.evaluate(user=user, groups=groups, verb=attrs.get("verb", ""),
                                            resource=_sar_resource(attrs), namespace=attrs.get("namespace"),
                                            api_group=attrs.get("group", ""))
            decision_allowed, denied, reason = decision.allowed, decision.denied, decision.reason
        status: dict[str, Any] = {"allowed": decision_allowed}
        if denied:
            status["denied"] = True
        if reason:
            status["reason"] = reason
        kind = "SubjectAccessReview" if plural == "subjectaccessreviews" else "SelfSubjectAccessReview"
        response_spec = dict(spec)
        if plural == "selfsubjectaccessreviews":
            response_spec = {k: v for k, v in spec.items() if k in ("resourceAttributes", "nonResourceAttributes")}
        return json_response({"kind": kind, "apiVersion": f"{AUTHZ_GROUP}/v1",
                              "metadata": {"creationTimestamp": None}, "spec": response_spec, "status": status},
                             status=201)


def _default_propagation(res: Resource) -> str:
    """batch/v1 Jobs keep the legacy default of orphaning their pods (kubectl always asks for Background)."""
    return "Orphan" if res is BATCH_JOBS else "Background"


# How often a quiet stream checks whether its client is still connected (seconds).
_DISCONNECT_POLL = 1.0

_SAR = Resource(AUTHZ_GROUP, "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False)


def _sar_resource(attrs: dict[str, Any]) -> str:
    resource = attrs.get("resource", "") or attrs.get("path", "")
    return f"{resource}/{attrs['subresource']}" if attrs.get("subresource") else resource


# ----- paths, discovery ------------------------------------------------------------------------------------


def _not_found_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource",
                    details={"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})


def parse_target(parts: list[str]) -> Target:
    """Map `/api/v1/...` or `/apis/g/v/...` path segments to a Target (404 if nothing is served there)."""
    if len(parts) >= 3 and parts[0] == "api" and parts[1] == "v1":
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise _not_found_path()
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
        if group == "" and version == "v1" and rest[0] in ("status", "finalize") and len(rest) == 1:
            rest = ["namespaces", namespace, rest[0]]
            namespace = None
    res = next((r for r in ALL_RESOURCES if (r.group, r.version, r.plural) == (group, version, rest[0])), None)
    if res is None or len(rest) > 3:
        raise _not_found_path()
    if not res.namespaced and namespace is not None:
        raise _not_found_path()
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    return Target(res, namespace, name, sub)


def group_list() -> dict[str, Any]:
    """The `/apis` APIGroupList: built-in groups first, as kube-apiserver lists them, so that kubectl's
    `jobs` means batch/v1 Jobs before Volcano's."""
    groups: dict[str, str] = {AUTHZ_GROUP: "v1"}
    builtin = [res for res in ALL_RESOURCES if res.group and res not in CUSTOM_RESOURCES]
    for res in builtin + [res for res in ALL_RESOURCES if res in CUSTOM_RESOURCES]:
        groups.setdefault(res.group, res.version)
    items = []
    for name, version in groups.items():
        gv = {"groupVersion": f"{name}/{version}", "version": version}
        items.append({"name": name, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}


def resource_list(group: str, version: str) -> dict[str, Any]:
    """The APIResourceList of one group/version."""
    resources: list[dict[str, Any]] = []
    verbs = ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]
    for res in ALL_RESOURCES:
        if (res.group, res.version) != (group, version):
            continue
        entry: dict[str, Any] = {"name": res.plural, "singularName": res.kind.lower(), "namespaced": res.namespaced,
                                 "kind": res.kind, "verbs": verbs}
        if short_names(res):
            entry["shortNames"] = short_names(res)
        if res.plural in CATEGORIES:
            entry["categories"] = CATEGORIES[res.plural]
        resources.append(entry)
        if res.status_subresource:
            resources.append({"name": f"{res.plural}/status", "singularName": "", "namespaced": res.namespaced,
                              "kind": res.kind, "verbs": ["get", "patch", "update"]})
        if res is PODS:
            resources.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod",
                              "verbs": ["get"]})
    if (group, version) == (AUTHZ_GROUP, "v1"):
        for plural, kind in (("subjectaccessreviews", "SubjectAccessReview"),
                             ("selfsubjectaccessreviews", "SelfSubjectAccessReview")):
            resources.append({"name": plural, "singularName": kind.lower(), "namespaced": False, "kind": kind,
                              "verbs": ["create"]})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def _group_versions() -> list[tuple[str, str]]:
    pairs = [("", "v1")] + [(r.group, r.version) for r in ALL_RESOURCES if r.group]
    return list(dict.fromkeys(pairs))


def openapi_v3(gv_path: str, *, dialect: str = "training-operator") -> dict[str, Any]:
    """`/openapi/v3` discovery or one group-version document: enough for kubectl to see that the server
    supports server-side field validation (so it skips client-side validation) and to read CRD schemas."""
    if not gv_path:
        return {"paths": {(f"apis/{g}/{v}" if g else "api/v1"): {
            "serverRelativeURL": f"/openapi/v3/{'apis/' + g + '/' + v if g else 'api/v1'}?hash=kubesim"}
            for g, v in _group_versions()}}
    pieces = gv_path.split("/")
    if pieces == ["api", "v1"]:
        group, version = "", "v1"
    elif len(pieces) == 3 and pieces[0] == "apis":
        group, version = pieces[1], pieces[2]
    else:
        raise _not_found_path()
    if (group, version) not in _group_versions():
        raise _not_found_path()
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    params = [{"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
              for name in ("dryRun", "fieldManager", "fieldValidation")]
    for res in ALL_RESOURCES:
        if (res.group, res.version) != (group, version):
            continue
        gvk = {"group": res.group, "version": res.version, "kind": res.kind}
        prefix = f"/apis/{res.group}/{res.version}" if res.group else "/api/v1"
        scope = f"{prefix}/namespaces/{{namespace}}/{res.plural}" if res.namespaced else f"{prefix}/{res.plural}"
        operation = {"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {}}
        paths[scope] = {"post": operation | {"x-kubernetes-action": "post"}}
        paths[f"{scope}/{{name}}"] = {"patch": operation | {"x-kubernetes-action": "patch"},
                                      "put": operation | {"x-kubernetes-action": "put"}}
        crd = schema.crd_schema(res, dialect) if res in CUSTOM_RESOURCES else None
        body = copy.deepcopy(crd) if crd else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        body["x-kubernetes-group-version-kind"] = [gvk]
        reverse = ".".join(reversed(res.group.split("."))) if res.group else "io.k8s.api.core"
        schemas[f"{reverse}.{res.version}.{res.kind}"] = body
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": schemas}}


def _verb(method: str, target: Target, watch: bool) -> str:
    if method == "GET":
        if target.name is None:
            return "watch" if watch else "list"
        return "get"
    if method == "DELETE":
        return "delete" if target.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


# ----- tables (kubectl get) --------------------------------------------------------------------------------


def _wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


Column = tuple[str, str, Callable[[Mapping[str, Any]], Any]]


def _json_path_of(path: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda obj: _json_path(obj, path)


def _age_of(path: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda obj: _age(_json_path(obj, path))


def _pod_status(pod: Mapping[str, Any]) -> str:
    """The STATUS column as kubectl's pod printer derives it."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            terminated = state["terminated"] or {}
            reason = terminated.get("reason") or f"ExitCode:{terminated.get('exitCode', 0)}"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod_ready(pod: Mapping[str, Any]) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for c in statuses if c.get('ready'))}/{total}"


def _pod_restarts(pod: Mapping[str, Any]) -> int:
    return sum(int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def _service_ports(svc: Mapping[str, Any]) -> str:
    ports = (svc.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _job_status(job: Mapping[str, Any]) -> str:
    """kube-apiserver's printJob STATUS: terminal conditions, then Terminating, Suspended, interim ones."""
    conditions = (job.get("status") or {}).get("conditions") or []
    true_types = {c.get("type") for c in conditions if c.get("status") == "True"}
    for ctype, shown in (("Complete", "Complete"), ("Failed", "Failed")):
        if ctype in true_types:
            return shown
    if job["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for ctype in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if ctype in true_types:
            return ctype
    return "Running"


def _job_completions(job: Mapping[str, Any]) -> str:
    spec, succeeded = job.get("spec") or {}, int((job.get("status") or {}).get("succeeded") or 0)
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = int(spec.get("parallelism") or 0)
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_duration(job: Mapping[str, Any]) -> str:
    status = job.get("status") or {}
    if not status.get("startTime"):
        return ""
    if not status.get("completionTime"):
        return _age(status["startTime"])
    import datetime as dt
    start, end = (dt.datetime.strptime(str(status[key]), "%Y-%m-%dT%H:%M:%SZ")
                  for key in ("startTime", "completionTime"))
    return f"{max(int((end - start).total_seconds()), 0)}s"


JOB_COLUMNS: list[Column] = [("Status", "string", _job_status), ("Completions", "string", _job_completions),
                             ("Duration", "string", _job_duration),
                             ("Age", "string", _age_of(".metadata.creationTimestamp"))]

CORE_COLUMNS: dict[str, list[Column]] = {
    "pods": [("Ready", "string", _pod_ready), ("Status", "string", _pod_status),
             ("Restarts", "integer", _pod_restarts), ("Age", "string", _age_of(".metadata.creationTimestamp"))],
    "events": [("Last Seen", "string", _age_of(".lastTimestamp")), ("Type", "string", lambda e: e.get("type", "")),
               ("Reason", "string", lambda e: e.get("reason", "")),
               ("Object", "string", lambda e: f"{(e.get('involvedObject') or {}).get('kind', '').lower()}/"
                                              f"{(e.get('involvedObject') or {}).get('name', '')}"),
               ("Message", "string", lambda e: e.get("message", ""))],
    "services": [("Type", "string", lambda s: (s.get("spec") or {}).get("type", "ClusterIP")),
                 ("Cluster-IP", "string", lambda s: (s.get("spec") or {}).get("clusterIP", "<none>")),
                 ("Port(s)", "string", _service_ports), ("Age", "string", _age_of(".metadata.creationTimestamp"))],
    "configmaps": [("Data", "integer", lambda c: len(c.get("data") or {}) + len(c.get("binaryData") or {})),
                   ("Age", "string", _age_of(".metadata.creationTimestamp"))],
    "namespaces": [("Status", "string", lambda n: (n.get("status") or {}).get("phase", "Active")),
                   ("Age", "string", _age_of(".metadata.creationTimestamp"))],
}


def table_for(res: Resource, items: Sequence[Mapping[str, Any]], metadata: dict[str, Any]) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table: the CRD's printer columns (TFJob State, vcjob STATUS …) or kubectl's usual
    columns for core kinds, plus Age."""
    columns: list[Column] = [("Name", "string", lambda obj: obj["metadata"]["name"])]
    doc = schema.crd_document(res) if res in CUSTOM_RESOURCES else None
    if doc:
        version = next(v for v in doc["spec"]["versions"] if v["name"] == res.version)
        for column in version.get("additionalPrinterColumns") or []:
            if column.get("priority", 0) == 0:
                path = column["jsonPath"]
                if column.get("type") == "date":
                    columns.append((column["name"], "string", _age_of(path)))
                else:
                    columns.append((column["name"], column.get("type", "string"), _json_path_of(path)))
    columns += CORE_COLUMNS.get(res.plural, []) if not res.group else []
    columns += JOB_COLUMNS if res is BATCH_JOBS else []
    if not any(name.lower() in ("age", "last seen") for name, _, _ in columns):
        columns.append(("Age", "string", _age_of(".metadata.creationTimestamp")))
    rows = [{"cells": [extract(item) for _, _, extract in columns],
             "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": item["metadata"]}} for item in items]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": [{"name": name, "type": kind, "format": "name" if index == 0 else "",
                                   "description": name, "priority": 0}
                                  for index, (name, kind, _) in enumerate(columns)],
            "rows": rows}


# A printer-column step: a `[?(@.key=="value")]` filter (first match), a `.field`, or an `[index]`.
_JSON_PATH_STEP = re.compile(r'\[\?\(@\.([A-Za-z0-9_]+)=="([^"]*)"\)\]|\.([A-Za-z0-9_]+)|\[(-?\d*):?\]')


def _json_path(obj: Mapping[str, Any], path: str) -> Any:
    node: Any = obj
    for key, wanted, field_name, index in _JSON_PATH_STEP.findall(path):
        if key:
            matches = [item for item in node if isinstance(item, dict) and item.get(key) == wanted] \
                if isinstance(node, list) else []
            node = matches[0] if matches else None
        elif field_name:
            node = node.get(field_name) if isinstance(node, dict) else None
        elif isinstance(node, list) and node:
            node = node[int(index)] if index else node
    return "" if node is None else node


def _age(value: Any) -> str:
    import datetime as dt
    if not value:
        return "<unknown>"
    then = dt.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    seconds = int((dt.datetime.now(dt.UTC) - then).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


# ----- helpers ---------------------------------------------------------------------------------------------


def json_response(body: Any, *, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    """A JSON response, with `Warning: 299 - "..."` headers for each warning."""
    headers: CIMultiDict[str] = CIMultiDict()
    for warning in warnings or []:
        headers.add("Warning", f"299 - {json.dumps(warning)}")
    return web.Response(body=encode_json(body), status=status, content_type="application/json", headers=headers)


def status_response(exc: ApiError) -> web.Response:
    """The Status response for an ApiError."""
    response = json_response(exc.status(), status=exc.code)
    for key, value in exc.headers.items():
        response.headers[key] = value
    return response


async def _write_event(response: web.StreamResponse, event: dict[str, Any]) -> None:
    await response.write(json.dumps(event).encode() + b"\n")


def _event_line(event_type: str, obj: Mapping[str, Any]) -> bytes:
    return encode_json({"type": event_type, "object": obj}) + b"\n"


def _drain(queue: asyncio.Queue[WatchEvent], first: WatchEvent) -> list[WatchEvent]:
    """`first` and every event already waiting behind it."""
    events = [first]
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


async def _read_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
    try:
        if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
            body = yaml.safe_load(raw)
        else:
            body = json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"the object provided is unrecognized or invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise errors.bad_request(f"json: cannot unmarshal {_go_json_type(body)} into Go value of type "
                                 "map[string]interface {}")
    return body


def _metadata_of(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata")
    if meta is None:
        meta = body["metadata"] = {}
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    return meta


def _check_type_meta(body: dict[str, Any], res: Resource) -> None:
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version and api_version != res.api_version:
        raise errors.bad_request(f"the API version in the data ({api_version}) does not match the expected API "
                                 f"version ({res.api_version})")
    if kind and kind != res.kind:
        raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({res.kind})")
    body["apiVersion"], body["kind"] = res.api_version, res.kind


def _metadata_causes(res: Resource, obj: dict[str, Any]) -> list[dict[str, str]]:
    meta = obj.get("metadata") or {}
    causes: list[dict[str, str]] = []
    name = meta.get("name")
    if not name and not meta.get("generateName"):
        causes.append(errors.field_cause("metadata.name", "Required value: name or generateName is required",
                                         reason="FieldValueRequired"))
    elif name:
        if res in (NAMESPACES,) and (len(name) > 63 or not _DNS1123_LABEL.match(name)):
            causes.append(errors.field_cause("metadata.name", f'Invalid value: "{name}": '
                                             + admission.DNS1123_LABEL_MESSAGE))
        elif len(name) > 253 or not admission.DNS1123_SUBDOMAIN.match(name):
            causes.append(errors.field_cause("metadata.name",
                                             f'Invalid value: "{name}": {admission.DNS1123_SUBDOMAIN_MESSAGE}'))
    for key, value in (meta.get("labels") or {}).items():
        problem = label_key_error(str(key))
        if problem:
            causes.append(errors.field_cause("metadata.labels", f'Invalid value: "{key}": {problem}'))
        value_problem = label_value_error(str(value)) if isinstance(value, str) else "must be a string"
        if value_problem:
            causes.append(errors.field_cause("metadata.labels", f'Invalid value: "{value}": {value_problem}'))
    for key in (meta.get("annotations") or {}):
        problem = label_key_error(str(key))
        if problem:
            causes.append(errors.field_cause("metadata.annotations", f'Invalid value: "{key}": {problem}'))
    return causes


def _dry_run(request: web.Request) -> bool:
    return "All" in request.query.getall("dryRun", [])


def _int_param(query: Any, name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise errors.bad_request(f'{name}: Invalid value: "{value}": must be an integer') from exc


def _sort_key(item: Mapping[str, Any]) -> tuple[str, str]:
    meta = item["metadata"]
    return (meta.get("namespace", ""), meta["name"])


def _encode_continue(start: tuple[str, str], list_rv: str) -> str:
    raw = json.dumps({"v": "kubesim.k8s.io/v1", "rv": list_rv, "start": list(start)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _go_json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "null"


# ----- RFC 7386 / RFC 6902 ---------------------------------------------------------------------------------


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def _patch_error(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _patch_error(f"add operation does not apply: doc is missing path: \"{path}\": missing value")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc: Any, tokens: list[str], path: str, op: str) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise _patch_error(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    return node


def apply_json_patch(doc: Any, operations: list[Any]) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    doc = clone(doc)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation:
            raise errors.bad_request("json: cannot unmarshal into Go value of type jsonpatch.Operation")
        op, path = operation["op"], str(operation.get("path", ""))
        if op in ("move", "copy"):
            source = str(operation.get("from", ""))
            value = clone(_resolve(doc, _pointer(source), source, op))
            if op == "move":
                doc = _remove(doc, _pointer(source), source, op)
            doc = _add(doc, _pointer(path), path, value, op)
        elif op == "add":
            doc = _add(doc, _pointer(path), path, clone(operation.get("value")), op)
        elif op == "remove":
            doc = _remove(doc, _pointer(path), path, op)
        elif op == "replace":
            _resolve(doc, _pointer(path), path, op)
            doc = _remove(doc, _pointer(path), path, op)
            doc = _add(doc, _pointer(path), path, clone(operation.get("value")), op)
        elif op == "test":
            if _resolve(doc, _pointer(path), path, op) != operation.get("value"):
                raise _patch_error(f"testing value {path} failed: test failed")
        else:
            raise _patch_error(f"Unexpected kind: {op}")
    return doc


def _add(doc: Any, tokens: list[str], path: str, value: Any, op: str) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1], path, op)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            if op == "replace":
                parent.insert(int(last), value)
            else:
                parent.insert(int(last), value)
        else:
            raise _patch_error(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    else:
        raise _patch_error(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    return doc


def _remove(doc: Any, tokens: list[str], path: str, op: str) -> Any:
    if not tokens:
        return None
    parent = _resolve(doc, tokens[:-1], path, op)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise _patch_error(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    return doc


__all__ = ["ApiServer", "apply_json_patch", "apply_merge_patch", "group_list", "json_response", "parse_target",
           "resource_list", "status_response", "table_for"]
