"""`ClusterClient`: the Kubernetes verbs the gateway uses on one cluster, with retries.

Contract:
- `ClusterClient(settings, retry=, metrics=, impersonate=)`; `await start()` loads the connection
  (`gateway.kube.credentials.load_connection`: `ConfigError` on a bad setting, never on an unreachable
  cluster) and opens its session; `await close()`.
- Verbs: `create`, `get`, `try_get`, `list` (label and field selectors), `merge_patch`, `delete`, `watch`
  (one watch request, see `gateway.kube.watch`), `pod_log` (a container's log as bytes) and
  `open_pod_log` (followed: a `ByteStream`), `review` (SubjectAccessReview; satisfies
  `gateway.auth.policy.SubjectAccessReviewer`), `self_review` (SelfSubjectAccessReview: what the gateway
  itself may do), `served_resources` (API discovery of one group/version), `ping`. Every job verb takes `impersonate=` (a Principal,
  sent as Impersonate-User/-Group headers) where the cluster is configured for it.
- Errors: `gateway.kube.errors` only. Callers branch on `error.transient`, `error.auth_failure` and, for
  `ClusterApiError`, on `error.status.code`/`error.status.reason` (e.g. 404, `AlreadyExists`).
- Retries (tenacity, delays from `RetrySettings`, a cluster's Retry-After honoured up to the maximum) of
  transient errors, for the calls that are safe to repeat: GET, LIST pages, SubjectAccessReviews,
  merge patches (RFC 7386 patches are idempotent and carry no resourceVersion), deletes (a repeat finds
  the object gone: success), and creates, which are safe because names are deterministic: an
  AlreadyExists whose object carries the same job-id label is the same create landing twice. Pod logs
  are GETs (the opening of a followed one too; the stream itself is not resumed).
  `watch` and `ping` are not retried (the sync loop and the probe decide).
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from multidict import CIMultiDict
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from gateway.auth import Principal
from gateway.auth.policy import impersonation_headers
from gateway.config import ClusterSettings, RetrySettings
from gateway.kube.credentials import Connection, load_connection
from gateway.kube.errors import ClusterApiError, ClusterUnreachable, KubeError, WatchExpired
from gateway.kube.refs import (
    SELF_SUBJECT_ACCESS_REVIEWS,
    SUBJECT_ACCESS_REVIEWS,
    ObjectRef,
    ResourceKind,
    discovery_path,
)
from gateway.kube.transport import MERGE_PATCH, ByteStream, Transport
from gateway.kube.watch import WatchEvent, watch_events
from gateway.metrics import Metrics
from translators.backends.base import JobBackend
from translators.backends.registry import backend_for
from translators.spec import ClusterProfile

log = structlog.get_logger(__name__)

T = TypeVar("T")
# What a pods/log answer is (kubectl asks the same way).
_LOG_ACCEPT = "text/plain, */*"


@dataclass(slots=True)
class ListResult:
    """All items of a (paged) LIST and the list's resourceVersion, to watch from."""

    items: list[dict[str, Any]] = field(default_factory=list)
    resource_version: str = ""


def _retryable(error: BaseException) -> bool:
    return isinstance(error, KubeError) and error.transient


def _is(error: KubeError, *, code: int, reason: str | None = None) -> bool:
    return (isinstance(error, ClusterApiError) and error.status.code == code
            and (reason is None or error.status.reason == reason))


class ClusterClient:
    """One Kubernetes cluster: connection, session, verbs. `await start()` before use."""

    def __init__(self, settings: ClusterSettings, *, retry: RetrySettings, metrics: Metrics | None = None,
                 impersonate: bool = False) -> None:
        self.settings = settings
        self.id = settings.id
        self._retry = retry
        self._metrics = metrics
        self._impersonate = impersonate or settings.impersonate
        self.profile: ClusterProfile = settings.profile()
        # The cluster's backend (translators/backends): the one seam every backend-specific step goes through.
        self.backend: JobBackend = backend_for(self.profile)
        self.jobs = ResourceKind.of(self.backend.resource)
        self._transport: Transport | None = None

    # ----- lifecycle

    async def start(self) -> None:
        """Load the connection settings (files read now; nothing written) and open the session."""
        connection = load_connection(self.settings)
        transport = Transport(self.id, connection, timeout=self.settings.request_timeout_seconds,
                              metrics=self._metrics)
        await transport.start()
        self._transport = transport
        log.info("cluster client ready", cluster=self.id, server=connection.server, source=connection.source,
                 credentials=connection.credentials.describe(), proxy=connection.proxy is not None)

    async def close(self) -> None:
        """Close the session."""
        if self._transport is not None:
            await self._transport.close()
            self._transport = None

    @property
    def connection(self) -> Connection:
        """The started client's connection (server, TLS, proxy, credentials)."""
        return self._started.connection

    @property
    def _started(self) -> Transport:
        if self._transport is None:
            raise ClusterUnreachable(self.id, f"cluster {self.id}: client not started")
        return self._transport

    def ref(self, resource: ResourceKind, namespace: str | None = None, name: str | None = None) -> ObjectRef:
        """A reference on this cluster."""
        return ObjectRef(self.id, resource, namespace, name)

    # ----- verbs

    async def create(self, ref: ObjectRef, body: dict[str, Any], *, same_if_label: tuple[str, str] | None = None,
                     dry_run: bool = False, impersonate: Principal | None = None) -> dict[str, Any]:
        """POST `body` into the collection of `ref`; retried on transient failures.

        `same_if_label=(key, value)`: an AlreadyExists whose object carries that label is the same
        create landing twice (a retry, the outbox) and returns the existing object.
        `dry_run`: the server validates and admits the body (schema, webhooks) but stores nothing.
        """
        collection = ref.collection()
        query = {"dryRun": "All"} if dry_run else None

        async def attempt() -> dict[str, Any]:
            try:
                return await self._json("POST", collection, verb="create", query=query, body=body,
                                        impersonate=impersonate)
            except ClusterApiError as e:
                if same_if_label is None or ref.name is None or not _is(e, code=409, reason="AlreadyExists"):
                    raise
                # The read goes straight to the server: this whole attempt is what `_retrying` repeats.
                try:
                    existing = await self._json("GET", ref, verb="get", impersonate=impersonate)
                except ClusterApiError as missing:
                    if missing.status.code != 404:
                        raise
                    raise e from None
                labels = (existing.get("metadata") or {}).get("labels") or {}
                if labels.get(same_if_label[0]) == same_if_label[1]:
                    return existing
                raise

        return await self._retrying(attempt)

    async def get(self, ref: ObjectRef, *, impersonate: Principal | None = None) -> dict[str, Any]:
        """GET one object; `ClusterApiError` 404 when absent."""
        return await self._retrying(lambda: self._json("GET", ref, verb="get", impersonate=impersonate))

    async def try_get(self, ref: ObjectRef, *, impersonate: Principal | None = None) -> dict[str, Any] | None:
        """GET one object, None when absent."""
        try:
            return await self.get(ref, impersonate=impersonate)
        except ClusterApiError as e:
            if e.status.code == 404:
                return None
            raise

    async def list(self, ref: ObjectRef, *, label_selector: str | None = None, field_selector: str | None = None,
                   page_size: int = 500, impersonate: Principal | None = None) -> ListResult:
        """LIST a collection (all namespaces when ref.namespace is None), following `continue` pages.

        An expired continue token (410) restarts the list once from the beginning; a second 410 raises
        `WatchExpired` (relist later).
        """
        for restart in range(2):
            result = ListResult()
            token: str | None = None
            try:
                while True:
                    query: dict[str, str] = {"limit": str(page_size)}
                    if label_selector:
                        query["labelSelector"] = label_selector
                    if field_selector:
                        query["fieldSelector"] = field_selector
                    if token:
                        query["continue"] = token
                    page = await self._retrying(functools.partial(
                        self._json, "GET", ref.collection(), verb="list", query=query, impersonate=impersonate))
                    items = page.get("items") or []
                    result.items.extend(i for i in items if isinstance(i, dict))
                    meta = page.get("metadata") or {}
                    result.resource_version = str(meta.get("resourceVersion") or result.resource_version)
                    token = meta.get("continue") or None
                    if not token:
                        return result
            except ClusterApiError as e:
                if e.status.code != 410:
                    raise
                if restart:
                    # Expired twice in a row: the caller's relist loop decides when to try again.
                    raise WatchExpired(self.id, e.status) from e
                log.info("list continue token expired, restarting list", cluster=self.id, path=ref.path)
        raise AssertionError("unreachable")

    async def merge_patch(self, ref: ObjectRef, patch: dict[str, Any], *,
                          impersonate: Principal | None = None) -> dict[str, Any]:
        """PATCH with `application/merge-patch+json` (custom resources accept no strategic merge)."""
        return await self._retrying(lambda: self._json("PATCH", ref, verb="patch", body=patch,
                                                       content_type=MERGE_PATCH, impersonate=impersonate))

    async def delete(self, ref: ObjectRef, *, propagation: str = "Background",
                     impersonate: Principal | None = None) -> bool:
        """DELETE one object; False when it was already gone.

        Background propagation: the job object goes at once and the garbage collector removes its
        pods and services, so a recreate under the same name does not wait for pods to terminate.
        """
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            await self._retrying(lambda: self._json("DELETE", ref, verb="delete", body=body,
                                                    impersonate=impersonate))
        except ClusterApiError as e:
            if e.status.code == 404:
                return False
            raise
        return True

    async def pod_log(self, pod: ObjectRef, *, container: str, tail_lines: int | None = None,
                      limit_bytes: int | None = None) -> bytes:
        """GET pods/{name}/log of one container: its output so far (the last `tail_lines` lines; at most
        `limit_bytes`, which the API server enforces). `ClusterApiError` 404 when the pod is gone, 400 when
        the container has not started yet (the Status message says so)."""
        path, query = self._log_request(pod, container=container, tail_lines=tail_lines, limit_bytes=limit_bytes)
        started = self._started
        return await self._retrying(lambda: started.request_bytes(path, verb="log", query=query,
                                                                  accept=_LOG_ACCEPT))

    async def open_pod_log(self, pod: ObjectRef, *, container: str, tail_lines: int | None = None,
                           limit_bytes: int | None = None, timeout: float) -> ByteStream:
        """GET pods/{name}/log?follow=true: the container's output as it comes, until the container ends, the
        server's `limit_bytes` are sent or `timeout` seconds passed. Errors of the opening as `pod_log`'s."""
        path, query = self._log_request(pod, container=container, tail_lines=tail_lines, limit_bytes=limit_bytes)
        query["follow"] = "true"
        started = self._started
        return await self._retrying(lambda: started.open_stream(path, verb="log", query=query, accept=_LOG_ACCEPT,
                                                                timeout=timeout))

    @staticmethod
    def _log_request(pod: ObjectRef, *, container: str, tail_lines: int | None,
                     limit_bytes: int | None) -> tuple[str, dict[str, str]]:
        query = {"container": container}
        if tail_lines is not None:
            query["tailLines"] = str(tail_lines)
        if limit_bytes is not None:
            query["limitBytes"] = str(limit_bytes)
        return pod.path + "/log", query

    def watch(self, ref: ObjectRef, *, resource_version: str, label_selector: str | None = None,
              timeout_seconds: int = 300) -> AsyncGenerator[WatchEvent, None]:
        """One watch request from `resource_version` (see `gateway.kube.watch.watch_events`)."""
        return watch_events(self._started, ref, resource_version=resource_version, label_selector=label_selector,
                            timeout_seconds=timeout_seconds)

    async def review(self, *, user: str, groups: Sequence[str], namespace: str, verb: str, group: str,
                     resource: str) -> bool:
        """Ask the cluster a SubjectAccessReview; True when allowed."""
        body = {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": list(groups),
                     "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group,
                                            "resource": resource}},
        }
        answer = await self._retrying(lambda: self._json("POST", self.ref(SUBJECT_ACCESS_REVIEWS), verb="review",
                                                         body=body))
        status = answer.get("status") or {}
        return bool(status.get("allowed")) and not bool(status.get("denied"))

    async def self_review(self, *, verb: str, group: str, resource: str, subresource: str = "",
                          namespace: str = "") -> tuple[bool, str]:
        """Ask the cluster a SelfSubjectAccessReview for the gateway's own identity (`namespace` "": every
        namespace); (allowed, the authorizer's reason)."""
        attributes = {"verb": verb, "group": group, "resource": resource}
        if subresource:
            attributes["subresource"] = subresource
        if namespace:
            attributes["namespace"] = namespace
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes}}
        answer = await self._retrying(lambda: self._json("POST", self.ref(SELF_SUBJECT_ACCESS_REVIEWS),
                                                         verb="review", body=body))
        status = answer.get("status") or {}
        allowed = bool(status.get("allowed")) and not bool(status.get("denied"))
        return allowed, str(status.get("reason") or "")

    async def served_resources(self, group: str, version: str) -> set[str]:
        """The resource names (subresources too: `pods/log`) the API server serves in one group/version;
        `ClusterApiError` 404 when it serves no such group/version (a CRD not installed)."""
        answer = await self._retrying(lambda: self._started.request_json("GET", discovery_path(group, version),
                                                                         verb="discovery"))
        return {str(r.get("name")) for r in answer.get("resources") or [] if isinstance(r, dict)}

    async def ping(self) -> float:
        """GET /version; the latency in milliseconds. Raises the cluster error when it cannot answer."""
        started = time.perf_counter()
        await self._started.request_json("GET", "/version", verb="ping")
        return (time.perf_counter() - started) * 1000.0

    # ----- plumbing

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call` (a request safe to repeat) with the configured retries on transient errors."""
        retry = self._retry

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            delay: float = min(retry.initial_delay_seconds * (2 ** (state.attempt_number - 1)),
                               retry.max_delay_seconds)
            after = error.status.retry_after_seconds if isinstance(error, ClusterApiError) else None
            if after:
                delay = min(max(delay, float(after)), retry.max_delay_seconds)
            return delay

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.info("cluster call failed, retrying", cluster=self.id, attempt=state.attempt_number,
                     attempts=retry.attempts, error=error.kind if isinstance(error, KubeError) else None)

        async for attempt in AsyncRetrying(stop=stop_after_attempt(retry.attempts), wait=wait,
                                           retry=retry_if_exception(_retryable), reraise=True,
                                           before_sleep=before_sleep):
            with attempt:
                return await call()
        raise AssertionError("unreachable")

    async def _json(self, method: str, ref: ObjectRef, *, verb: str, query: dict[str, str] | None = None,
                    body: dict[str, Any] | None = None, content_type: str = "application/json",
                    impersonate: Principal | None = None) -> dict[str, Any]:
        headers: CIMultiDict[str] | None = None
        if impersonate is not None and self._impersonate:
            headers = impersonation_headers(impersonate)
        return await self._started.request_json(method, ref.path, verb=verb, query=query, body=body,
                                                content_type=content_type, headers=headers)


__all__ = ["ClusterClient", "ListResult"]
