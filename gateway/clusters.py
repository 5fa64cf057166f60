"""Kubernetes API clients, one per configured cluster, and the registry that holds them.

Contract:
- `ObjectRef(cluster, resource, namespace, name)` builds every URL the gateway sends (one typed
  reference, no string-pasted paths elsewhere).
- `ClusterClient` verbs: `create`, `get`, `try_get`, `list`, `merge_patch`, `delete`, `watch`
  (an async generator: list-then-watch is the caller's loop, this yields one watch request's events,
  bookmarks included, and raises `WatchExpired` on 410), `review` (SubjectAccessReview; satisfies
  `gateway.auth.policy.SubjectAccessReviewer`), `ping`. Every verb takes `impersonate=` (a Principal,
  sent as Impersonate-User/-Group headers) where the cluster is configured for it.
- Errors: no aiohttp or kubernetes_asyncio exception leaves this module. Connection failures →
  `ClusterUnavailable` (503), timeouts → `ClusterTimeout` (504); a Kubernetes `Status` answer is parsed
  into `KubeStatus` and mapped: 422 → `ClusterInvalid` (400, causes' field paths), 403 → `Forbidden`
  (the cluster's message, e.g. an admission webhook or quota), 404 → `ClusterNotFound`, 409
  AlreadyExists → `ClusterAlreadyExists`, 409 Conflict → `Conflict`, 410 → `WatchExpired`/`ResourceExpired`,
  429 → `TooManyRequests` (Retry-After), 401 and other 5xx → `ClusterError` (502), 503 → unavailable.
  All raised `from` the underlying exception when there is one.
- Retries (tenacity, delays from `RetrySettings`): only GET/LIST, and creates, which are safe because
  names are deterministic: a 409 AlreadyExists whose object carries the same job-id label is success.
- Logging: verb, path, status code, reason, latency; never a token, never a raw body.

kubernetes_asyncio provides the configuration (token/CA, kubeconfig, in-cluster) and its aiohttp
session; requests are issued on that session directly so that repeated Impersonate-Group headers,
merge-patch content types and streaming watches are under our control.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
import structlog
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.config.config_exception import ConfigException
from multidict import CIMultiDict
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from gateway.auth import Principal
from gateway.auth.policy import impersonation_headers
from gateway.config import ClusterSettings, ConfigError, RetrySettings
from gateway.errors import (
    BadRequest,
    ClusterError,
    ClusterTimeout,
    ClusterUnavailable,
    Conflict,
    Forbidden,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    ValidationFailed,
)
from gateway.metrics import Metrics
from translators.backends import ApiResource, job_resource
from translators.spec import ClusterProfile

log = structlog.get_logger(__name__)

T = TypeVar("T")

MERGE_PATCH = "application/merge-patch+json"
JSON = "application/json"
_MAX_ERROR_BODY = 64 * 1024
_MAX_MESSAGE = 1000


# --------------------------------------------------------------------------- references


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """A Kubernetes API resource (group "" = core)."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def base_path(self) -> str:
        """`/api/v1` for core, `/apis/<group>/<version>` otherwise."""
        return f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"

    @classmethod
    def of(cls, resource: ApiResource) -> ResourceKind:
        """The kind of a translators `ApiResource` (jobs are namespaced)."""
        return cls(resource.group, resource.version, resource.plural)


PODS = ResourceKind("", "v1", "pods")
NAMESPACES = ResourceKind("", "v1", "namespaces", namespaced=False)
SUBJECT_ACCESS_REVIEWS = ResourceKind("authorization.k8s.io", "v1", "subjectaccessreviews", namespaced=False)


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One object (name set) or collection (name None) on one cluster; the only URL builder."""

    cluster: str
    resource: ResourceKind
    namespace: str | None = None
    name: str | None = None

    @property
    def path(self) -> str:
        """The URL path of this object or collection."""
        parts = [self.resource.base_path]
        if self.resource.namespaced and self.namespace is not None:
            parts.append(f"/namespaces/{quote(self.namespace, safe='')}")
        parts.append(f"/{self.resource.plural}")
        if self.name is not None:
            parts.append(f"/{quote(self.name, safe='')}")
        return "".join(parts)

    def collection(self) -> ObjectRef:
        """The collection that holds this object."""
        return ObjectRef(self.cluster, self.resource, self.namespace, None)

    def named(self, name: str) -> ObjectRef:
        """An object of this collection."""
        return ObjectRef(self.cluster, self.resource, self.namespace, name)

    def __str__(self) -> str:
        return f"{self.cluster}:{self.path}"


# --------------------------------------------------------------------------- status and errors


@dataclass(frozen=True, slots=True)
class KubeCause:
    """One `details.causes[]` entry of a Status (`reason` is the JSON key of StatusCause.type)."""

    reason: str
    message: str
    field: str


@dataclass(frozen=True, slots=True)
class KubeStatus:
    """A parsed Kubernetes `Status` answer (or what we could learn from a non-Status error body)."""

    code: int
    reason: str
    message: str
    causes: tuple[KubeCause, ...] = ()
    retry_after_seconds: int | None = None

    @classmethod
    def parse(cls, code: int, body: bytes, *, retry_after: str | None = None) -> KubeStatus:
        """Parse an error body; a body that is not a Status gives a generic reason, never its text."""
        data: Any = None
        try:
            data = json.loads(body[:_MAX_ERROR_BODY]) if body else None
        except ValueError:
            data = None
        retry = _int_or_none(retry_after)
        if not isinstance(data, dict) or data.get("kind") != "Status":
            return cls(code=code, reason=_default_reason(code), message=f"HTTP {code} from the API server",
                       retry_after_seconds=retry)
        raw_details = data.get("details")
        details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
        causes = tuple(
            KubeCause(reason=str(c.get("reason", "")), message=str(c.get("message", ""))[:_MAX_MESSAGE],
                      field=str(c.get("field", "")))
            for c in details.get("causes") or [] if isinstance(c, dict)
        )
        if retry is None:
            retry = _int_or_none(details.get("retryAfterSeconds"))
        return cls(code=int(data.get("code") or code), reason=str(data.get("reason") or _default_reason(code)),
                   message=str(data.get("message") or "")[:_MAX_MESSAGE], causes=causes,
                   retry_after_seconds=retry)

    def summary(self) -> dict[str, Any]:
        """What the client may see of the cluster's answer (in error `details.cluster`)."""
        return {"code": self.code, "reason": self.reason, "message": self.message}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
            409: "Conflict", 410: "Gone", 413: "RequestEntityTooLarge", 415: "UnsupportedMediaType",
            422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
            504: "Timeout"}


def _default_reason(code: int) -> str:
    return _REASONS.get(code, "InternalError" if code >= 500 else "Unknown")


class ClusterNotFound(NotFound):
    """The cluster says the object (or its namespace) does not exist."""


class ClusterAlreadyExists(Conflict):
    """Create refused: an object of that name exists and is not the one we are creating."""


class ClusterInvalid(ValidationFailed):
    """The cluster's schema validation refused the body (422 Invalid)."""


class ResourceExpired(ClusterError):
    """410 Gone / Expired: a resourceVersion or continue token is too old; relist."""


class WatchExpired(ResourceExpired):
    """The watch's resourceVersion fell out of the server's history: relist, then watch again."""


def error_for_status(cluster: str, status: KubeStatus) -> GatewayError:
    """Map a cluster's error answer to the gateway's error (the cluster's message kept, body never)."""
    details = {"cluster": cluster, "clusterStatus": status.summary()}
    prefix = f"cluster {cluster}: "
    code = status.code
    if code == 422:
        fields = [{"path": c.field or "(object)", "message": c.message} for c in status.causes]
        error: GatewayError = ClusterInvalid(prefix + (status.message or "the cluster refused the job as invalid"),
                                             fields or [{"path": "(object)", "message": status.message}])
        error.details["clusterStatus"] = status.summary()
        return error
    if code == 400:
        return BadRequest(prefix + status.message, details=details)
    if code == 401:
        # The gateway's own credentials were refused: not the client's fault.
        return ClusterError(prefix + "the cluster refused the gateway's credentials", details=details)
    if code == 403:
        return Forbidden(prefix + status.message, details=details)
    if code == 404:
        return ClusterNotFound(prefix + status.message, details=details)
    if code == 409:
        cls = ClusterAlreadyExists if status.reason == "AlreadyExists" else Conflict
        return cls(prefix + status.message, details=details)
    if code == 410:
        return ResourceExpired(prefix + status.message, details=details)
    if code == 413:
        return PayloadTooLarge(prefix + status.message, details=details)
    if code == 429:
        headers = {"Retry-After": str(status.retry_after_seconds)} if status.retry_after_seconds else {}
        return TooManyRequests(prefix + (status.message or "too many requests"), details=details, headers=headers)
    if code == 503:
        return ClusterUnavailable(prefix + (status.message or "service unavailable"), details=details)
    if code == 504:
        return ClusterTimeout(prefix + (status.message or "timeout"), details=details)
    return ClusterError(prefix + (status.message or f"HTTP {code}"), details=details)


def is_transient(error: BaseException) -> bool:
    """Errors that may go away by themselves: unreachable, timeouts, 5xx, 429, bad gateway credentials."""
    return isinstance(error, (ClusterUnavailable, ClusterTimeout, TooManyRequests)) or (
        type(error) is ClusterError)


# --------------------------------------------------------------------------- watch events


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch line: ADDED / MODIFIED / DELETED / BOOKMARK with its object."""

    type: str
    object: dict[str, Any]

    @property
    def resource_version(self) -> str | None:
        """The object's resourceVersion (bookmarks carry only this)."""
        meta = self.object.get("metadata")
        return meta.get("resourceVersion") if isinstance(meta, dict) else None


@dataclass(slots=True)
class ListResult:
    """All items of a (paged) LIST and the list's resourceVersion, to watch from."""

    items: list[dict[str, Any]] = field(default_factory=list)
    resource_version: str = ""


# --------------------------------------------------------------------------- the client


class ClusterClient:
    """One Kubernetes cluster: configuration, session, verbs. `await start()` before use."""

    def __init__(self, settings: ClusterSettings, *, retry: RetrySettings, metrics: Metrics | None = None,
                 impersonate: bool = False) -> None:
        self.settings = settings
        self.id = settings.id
        self._retry = retry
        self._metrics = metrics
        self._impersonate = impersonate or settings.impersonate
        self._timeout = settings.request_timeout_seconds
        self.profile: ClusterProfile = settings.profile()
        self.jobs = ResourceKind.of(job_resource(self.profile))
        self._api: k8s_client.ApiClient | None = None
        self._configuration: k8s_client.Configuration | None = None

    # ----- lifecycle

    async def start(self) -> None:
        """Build the configuration (token/CA, kubeconfig or in-cluster) and the HTTP session."""
        configuration = k8s_client.Configuration()
        s = self.settings
        try:
            if s.server is not None:
                configuration.host = s.server.rstrip("/")
                if s.ca_file:
                    configuration.ssl_ca_cert = s.ca_file
                if s.token is not None:
                    configuration.api_key = {"BearerToken": s.token}
                    configuration.api_key_prefix = {"BearerToken": "Bearer"}
                elif s.token_file is not None:
                    configuration.api_key_prefix = {"BearerToken": "Bearer"}
                    configuration.refresh_api_key_hook = _TokenFileHook(s.token_file, cluster=s.id)
                    configuration.refresh_api_key_hook(configuration)
            elif s.kubeconfig is not None:
                await k8s_config.load_kube_config(config_file=s.kubeconfig, context=s.context,
                                                  client_configuration=configuration, persist_config=False)
            else:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"clusters[{s.id}]: cannot load connection settings: {e}") from e
        if s.insecure_skip_tls_verify:
            configuration.verify_ssl = False
            log.warning("TLS verification disabled for cluster: never use this in production", cluster=s.id)
        try:
            self._api = k8s_client.ApiClient(configuration)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(f"clusters[{s.id}]: cannot set up TLS: {e}") from e
        self._configuration = configuration

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._api is not None:
            await self._api.close()
            self._api = None

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
            except ClusterAlreadyExists:
                if same_if_label is None or ref.name is None:
                    raise
                existing = await self.try_get(ref, impersonate=impersonate)
                labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
                if labels.get(same_if_label[0]) == same_if_label[1]:
                    return existing or {}
                raise

        return await self._retrying(attempt)

    async def get(self, ref: ObjectRef, *, impersonate: Principal | None = None) -> dict[str, Any]:
        """GET one object; `ClusterNotFound` when absent."""
        return await self._retrying(lambda: self._json("GET", ref, verb="get", impersonate=impersonate))

    async def try_get(self, ref: ObjectRef, *, impersonate: Principal | None = None) -> dict[str, Any] | None:
        """GET one object, None when absent."""
        try:
            return await self.get(ref, impersonate=impersonate)
        except ClusterNotFound:
            return None

    async def list(self, ref: ObjectRef, *, label_selector: str | None = None, page_size: int = 500,
                   impersonate: Principal | None = None) -> ListResult:
        """LIST a collection (all namespaces when ref.namespace is None), following `continue` pages.

        An expired continue token restarts the list once from the beginning.
        """
        for restart in range(2):
            result = ListResult()
            token: str | None = None
            try:
                while True:
                    query: dict[str, str] = {"limit": str(page_size)}
                    if label_selector:
                        query["labelSelector"] = label_selector
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
            except ResourceExpired:
                if restart:
                    raise
                log.info("list continue token expired, restarting list", cluster=self.id, path=ref.path)
        raise AssertionError("unreachable")

    async def merge_patch(self, ref: ObjectRef, patch: dict[str, Any], *,
                          impersonate: Principal | None = None) -> dict[str, Any]:
        """PATCH with `application/merge-patch+json` (custom resources accept no strategic merge)."""
        return await self._json("PATCH", ref, verb="patch", body=patch, content_type=MERGE_PATCH,
                                impersonate=impersonate)

    async def delete(self, ref: ObjectRef, *, propagation: str = "Background",
                     impersonate: Principal | None = None) -> bool:
        """DELETE one object; False when it was already gone.

        Background propagation: the job object goes at once and the garbage collector removes its
        pods and services, so a recreate under the same name does not wait for pods to terminate.
        """
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            await self._json("DELETE", ref, verb="delete", body=body, impersonate=impersonate)
        except ClusterNotFound:
            return False
        return True

    async def watch(self, ref: ObjectRef, *, resource_version: str, label_selector: str | None = None,
                    timeout_seconds: int = 300) -> AsyncGenerator[WatchEvent, None]:
        """One watch request from `resource_version`: yields events (BOOKMARK included) until the
        server ends the stream. Raises `WatchExpired` on 410 (in the status or as an ERROR event)."""
        query = {"watch": "1", "allowWatchBookmarks": "true", "resourceVersion": resource_version,
                 "timeoutSeconds": str(timeout_seconds)}
        if label_selector:
            query["labelSelector"] = label_selector
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=timeout_seconds + 30)
        response = await self._send("GET", ref.collection(), verb="watch", query=query, timeout=timeout)
        try:
            while True:
                try:
                    line = await response.content.readline()
                except (aiohttp.ClientError, OSError, ValueError, RuntimeError) as e:
                    # RuntimeError("Connection closed."): aiohttp's answer when the session closes mid-read.
                    raise ClusterUnavailable(f"cluster {self.id}: watch stream broke") from e
                except TimeoutError as e:
                    raise ClusterTimeout(f"cluster {self.id}: watch stream went silent") from e
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    log.warning("undecodable watch line skipped", cluster=self.id, path=ref.path)
                    continue
                kind = event.get("type") if isinstance(event, dict) else None
                obj = event.get("object") if isinstance(event, dict) else None
                if not isinstance(obj, dict):
                    continue
                if kind == "ERROR":
                    status = KubeStatus.parse(int(obj.get("code") or 500), json.dumps(obj).encode())
                    if status.code == 410:
                        raise WatchExpired(f"cluster {self.id}: {status.message}")
                    raise error_for_status(self.id, status)
                if kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                    yield WatchEvent(type=str(kind), object=obj)
        finally:
            response.release()

    async def review(self, *, user: str, groups: Sequence[str], namespace: str, verb: str, group: str,
                     resource: str) -> bool:
        """Ask the cluster a SubjectAccessReview; True when allowed."""
        body = {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": list(groups),
                     "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group,
                                            "resource": resource}},
        }
        answer = await self._json("POST", self.ref(SUBJECT_ACCESS_REVIEWS), verb="review", body=body)
        status = answer.get("status") or {}
        return bool(status.get("allowed")) and not bool(status.get("denied"))

    async def ping(self) -> float:
        """GET /version; the latency in milliseconds. Raises the mapped error when unreachable."""
        started = time.perf_counter()
        response = await self._send("GET", None, verb="ping", path="/version")
        try:
            await response.read()
        except (aiohttp.ClientError, OSError) as e:
            raise ClusterUnavailable(f"cluster {self.id}: connection lost") from e
        finally:
            response.release()
        return (time.perf_counter() - started) * 1000.0

    # ----- plumbing

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call` (an idempotent request) with the configured retries on transient errors."""
        retry = self._retry

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            delay: float = min(retry.initial_delay_seconds * (2 ** (state.attempt_number - 1)),
                               retry.max_delay_seconds)
            after = error.headers.get("Retry-After") if isinstance(error, GatewayError) else None
            if after and after.isdigit():
                delay = min(max(delay, float(after)), retry.max_delay_seconds)
            return delay

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.info("cluster call failed, retrying", cluster=self.id, attempt=state.attempt_number,
                     attempts=retry.attempts, error=type(error).__name__)

        async for attempt in AsyncRetrying(stop=stop_after_attempt(retry.attempts), wait=wait,
                                           retry=retry_if_exception(is_transient), reraise=True,
                                           before_sleep=before_sleep):
            with attempt:
                return await call()
        raise AssertionError("unreachable")

    async def _json(self, method: str, ref: ObjectRef, *, verb: str, query: Mapping[str, str] | None = None,
                    body: dict[str, Any] | None = None, content_type: str = JSON,
                    impersonate: Principal | None = None) -> dict[str, Any]:
        response = await self._send(method, ref, verb=verb, query=query, body=body, content_type=content_type,
                                    impersonate=impersonate)
        try:
            data = await response.read()
        except TimeoutError as e:
            raise ClusterTimeout(f"cluster {self.id}: no answer within {self._timeout}s") from e
        except (aiohttp.ClientError, OSError) as e:
            raise ClusterUnavailable(f"cluster {self.id}: connection lost") from e
        finally:
            response.release()
        try:
            parsed = json.loads(data) if data else {}
        except ValueError as e:
            raise ClusterError(f"cluster {self.id}: the API server answered with something that is not JSON") from e
        if not isinstance(parsed, dict):
            raise ClusterError(f"cluster {self.id}: the API server answered with a non-object")
        return parsed

    async def _send(self, method: str, ref: ObjectRef | None, *, verb: str, path: str | None = None,
                    query: Mapping[str, str] | None = None, body: dict[str, Any] | None = None,
                    content_type: str = JSON, impersonate: Principal | None = None,
                    timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientResponse:
        """Send one request; returns the response when 2xx (caller releases it), raises mapped errors."""
        if self._api is None or self._configuration is None:
            raise ClusterUnavailable(f"cluster {self.id}: client not started")
        configuration = self._configuration
        url_path = path if path is not None else (ref.path if ref is not None else "/")
        url = str(configuration.host) + url_path
        if query:
            url += "?" + urlencode(dict(query))
        headers: CIMultiDict[str] = CIMultiDict({"Accept": JSON, "User-Agent": "clever-gateway"})
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            auth = (await configuration.auth_settings()).get("BearerToken")
        except (ConfigException, OSError, ValueError) as e:
            raise ClusterError(f"cluster {self.id}: cannot obtain the gateway's credentials") from e
        if auth:
            headers["Authorization"] = auth["value"]
        if impersonate is not None and self._impersonate:
            headers.extend(impersonation_headers(impersonate))
        session: aiohttp.ClientSession = self._api.rest_client.pool_manager
        kwargs: dict[str, Any] = {}
        if configuration.tls_server_name:
            kwargs["server_hostname"] = configuration.tls_server_name
        started = time.perf_counter()
        try:
            response = await session.request(
                method, url, headers=headers, data=json.dumps(body) if body is not None else None,
                timeout=timeout or aiohttp.ClientTimeout(total=self._timeout), **kwargs)
        except TimeoutError as e:
            self._count(verb, "timeout", error="timeout")
            raise ClusterTimeout(f"cluster {self.id}: no answer within {self._timeout}s") from e
        except aiohttp.ClientConnectorCertificateError as e:
            self._count(verb, "tls", error="tls")
            raise ClusterUnavailable(f"cluster {self.id}: TLS verification of the API server failed") from e
        except (aiohttp.ClientError, OSError) as e:
            self._count(verb, "unreachable", error="unreachable")
            raise ClusterUnavailable(f"cluster {self.id}: API server unreachable") from e
        code = response.status
        latency_ms = round((time.perf_counter() - started) * 1000.0, 1)
        if code < 400:
            self._count(verb, str(code))
            log.debug("cluster call", cluster=self.id, verb=verb, path=url_path, code=code, latencyMs=latency_ms)
            return response
        try:
            raw = await response.content.read(_MAX_ERROR_BODY)
        except (TimeoutError, aiohttp.ClientError, OSError):
            raw = b""
        finally:
            response.release()
        status = KubeStatus.parse(code, raw, retry_after=response.headers.get("Retry-After"))
        self._count(verb, str(code), error="5xx" if code >= 500 else None)
        log.info("cluster call refused", cluster=self.id, verb=verb, path=url_path, code=code,
                 reason=status.reason, message=status.message, latencyMs=latency_ms)
        raise error_for_status(self.id, status)

    def _count(self, verb: str, code: str, *, error: str | None = None) -> None:
        if self._metrics is None:
            return
        self._metrics.cluster_calls.labels(self.id, verb, code).inc()
        if error is not None:
            self._metrics.cluster_errors.labels(self.id, verb, error).inc()


class _TokenFileHook:
    """Re-reads a token file when its mtime changes (projected service-account tokens rotate)."""

    def __init__(self, path: str, *, cluster: str) -> None:
        self._path = path
        self._cluster = cluster
        self._mtime: float | None = None

    def __call__(self, configuration: k8s_client.Configuration) -> None:
        try:
            mtime = os.stat(self._path).st_mtime
            if mtime == self._mtime:
                return
            with open(self._path, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as e:
            raise ConfigException(f"cluster {self._cluster}: cannot read tokenFile: {e.strerror}") from e
        configuration.api_key = {"BearerToken": token}
        self._mtime = mtime


class ClusterRegistry:
    """All configured clusters by id; owns their sessions."""

    def __init__(self, clients: Mapping[str, ClusterClient]) -> None:
        self._clients = dict(clients)

    def get(self, cluster_id: str) -> ClusterClient:
        """The client of `cluster_id`; `NotFound` (404) for an unknown id."""
        client = self._clients.get(cluster_id)
        if client is None:
            raise NotFound(f"unknown cluster {cluster_id!r}", details={"cluster": cluster_id})
        return client

    def __iter__(self) -> Any:
        return iter(self._clients.values())

    def ids(self) -> list[str]:
        """Configured cluster ids in config order."""
        return list(self._clients)

    async def start(self) -> None:
        """Start every client (fails on a bad connection setting, not on an unreachable cluster)."""
        for client in self._clients.values():
            await client.start()

    async def close(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            await client.close()
