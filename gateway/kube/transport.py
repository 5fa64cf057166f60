"""One cluster's HTTP transport: the aiohttp session, one request, and what its failures mean.

Contract:
- `Transport(cluster, connection, timeout=, metrics=)`; `await start()` opens the session (trust_env off:
  only the connection's proxy applies), `await close()` closes it.
- `request_json(method, path, verb=, query=, body=, content_type=, headers=) -> dict` sends one request
  and returns the decoded 2xx JSON object; `stream_lines(path, verb=, query=, read_timeout=)` yields the
  lines of a streaming 2xx answer (watch) and always releases the connection; `request_bytes(path, verb=,
  query=, accept=)` returns a 2xx answer's raw body (a pod log); `open_stream(path, verb=, query=,
  accept=, timeout=)` sends one request and returns its 2xx answer as a `ByteStream` (a followed pod log)
  that the caller reads chunk by chunk and closes.
- Every request carries the bearer token of the connection's `TokenSource`, `X-Request-ID` when the call
  is made on behalf of a client request (the `request_id` bound in structlog's contextvars by the HTTP
  middleware, or by the outbox for a queued operation), and goes through the connection's proxy with
  its TLS server name. A 401 makes the token source refresh (exec plugin run again, token file re-read)
  and, when it says a fresh token may help, the request is sent once more.
- Failures leave as `gateway.kube.errors` only, raised `from` aiohttp's or the OS's exception:
  an error answer → `ClusterApiError` with the parsed `Status`; refused, reset, DNS, TLS →
  `ClusterUnreachable`; no answer in time → `ClusterTimedOut`; a 2xx that is not a JSON object →
  `ClusterBadResponse`; the token source failing → `ClusterCredentialsError`.
- Each exchange is a client span when tracing is on (`gateway.tracing`), its `traceparent` sent along.
- Each exchange is counted and timed (`clever_gateway_cluster_requests_total{cluster,verb,code}` and
  `clever_gateway_cluster_request_duration_seconds{cluster,verb,code}`, until the status line; transport
  failures and 5xx in `..._cluster_errors_total`, 401/403/credentials in
  `..._cluster_auth_failures_total{cluster,kind}`) and logged with verb, path, code, reason, latency and
  the request id; never a token, never a body.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import structlog
from multidict import CIMultiDict

from gateway import tracing
from gateway.kube.credentials import Connection
from gateway.kube.errors import (
    MAX_STATUS_BODY,
    ClusterApiError,
    ClusterBadResponse,
    ClusterCredentialsError,
    ClusterTimedOut,
    ClusterUnreachable,
    KubeStatus,
)
from gateway.metrics import LabelCache, Metrics

log = structlog.get_logger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
USER_AGENT = "clever-gateway"
REQUEST_ID_HEADER = "X-Request-ID"
# A watch line is one object; the largest Kubernetes allows in etcd is 1.5 MiB. Far beyond: a broken stream.
_MAX_LINE = 16 * 1024 * 1024
_AUTH_KINDS = {401: "unauthorized", 403: "forbidden"}


def _request_id_field(headers: CIMultiDict[str]) -> dict[str, str]:
    # Named as the middleware binds it, so a call's log line and its request's lines share one key.
    value = headers.get(REQUEST_ID_HEADER)
    return {"request_id": value} if value else {}


def current_request_id() -> str | None:
    """The id of the client request this code runs for (bound by the middleware), if any."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) and value else None


class ByteStream:
    """The body of one streamed 2xx answer, read chunk by chunk; `close()` ends it (the connection is
    dropped, not returned to the pool, when the body was not read to its end)."""

    def __init__(self, cluster: str, response: aiohttp.ClientResponse, *, verb: str) -> None:
        self.cluster = cluster
        self._response = response
        self._verb = verb

    async def read(self) -> bytes:
        """The next chunk as it arrives; b"" once the server ended the answer. Cancelling a read is safe."""
        try:
            return await self._response.content.readany()
        except TimeoutError as e:
            raise ClusterTimedOut(self.cluster, f"cluster {self.cluster}: the {self._verb} stream timed out") from e
        except (aiohttp.ClientError, OSError, RuntimeError) as e:
            raise ClusterUnreachable(self.cluster, f"cluster {self.cluster}: the {self._verb} stream broke") from e

    def close(self) -> None:
        """Stop reading: drop the connection."""
        self._response.close()


class Transport:
    """HTTP to one API server (see module docstring)."""

    def __init__(self, cluster: str, connection: Connection, *, timeout: float,
                 metrics: Metrics | None = None) -> None:
        self.cluster = cluster
        self.connection = connection
        self._timeout = timeout
        self._metrics = metrics
        # Looked up once per label set: every cluster call passes here.
        self._calls = LabelCache(metrics.cluster_calls) if metrics is not None else None
        self._latency = LabelCache(metrics.cluster_latency) if metrics is not None else None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP session."""
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.connection.ssl if self.connection.ssl is not None else True)
            # trust_env off: HTTP(S)_PROXY and .netrc must not redirect or authenticate cluster traffic behind
            # the configuration's back; a proxy is configured per cluster.
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ----- requests

    async def request_json(self, method: str, path: str, *, verb: str, query: Mapping[str, str] | None = None,
                           body: Any = None, content_type: str = JSON,
                           headers: CIMultiDict[str] | None = None) -> dict[str, Any]:
        """One request; the decoded JSON object of its 2xx answer."""
        data = orjson.dumps(body) if body is not None else None
        response = await self._send(method, path, verb=verb, query=query, data=data, content_type=content_type,
                                    headers=headers, timeout=aiohttp.ClientTimeout(total=self._timeout))
        try:
            raw = await response.read()
        except TimeoutError as e:
            raise ClusterTimedOut(self.cluster, f"cluster {self.cluster}: no answer within {self._timeout:g}s") from e
        except (aiohttp.ClientError, OSError) as e:
            raise ClusterUnreachable(self.cluster, f"cluster {self.cluster}: connection lost") from e
        finally:
            response.release()
        try:
            parsed = orjson.loads(raw) if raw else {}
        except ValueError as e:
            raise ClusterBadResponse(
                self.cluster, f"cluster {self.cluster}: the API server answered with something that is not JSON") from e
        if not isinstance(parsed, dict):
            raise ClusterBadResponse(self.cluster, f"cluster {self.cluster}: the API server answered with a "
                                                   "non-object")
        return parsed

    async def request_bytes(self, path: str, *, verb: str, query: Mapping[str, str] | None = None,
                            accept: str = "*/*") -> bytes:
        """One GET; the raw body of its 2xx answer (the server bounds its size: e.g. `limitBytes`)."""
        response = await self._send("GET", path, verb=verb, query=query, accept=accept,
                                    timeout=aiohttp.ClientTimeout(total=self._timeout))
        try:
            return await response.read()
        except TimeoutError as e:
            raise ClusterTimedOut(self.cluster, f"cluster {self.cluster}: no answer within {self._timeout:g}s") from e
        except (aiohttp.ClientError, OSError) as e:
            raise ClusterUnreachable(self.cluster, f"cluster {self.cluster}: connection lost") from e
        finally:
            response.release()

    async def open_stream(self, path: str, *, verb: str, query: Mapping[str, str], accept: str = "*/*",
                          timeout: float) -> ByteStream:
        """One GET whose 2xx answer is read as it arrives, for at most `timeout` seconds in all."""
        response = await self._send("GET", path, verb=verb, query=query, accept=accept,
                                    timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=self._timeout))
        return ByteStream(self.cluster, response, verb=verb)

    async def stream_lines(self, path: str, *, verb: str, query: Mapping[str, str],
                           read_timeout: float) -> AsyncGenerator[bytes, None]:
        """The non-empty lines of one streaming answer, until the server ends it."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=read_timeout)
        response = await self._send("GET", path, verb=verb, query=query, timeout=timeout)
        pending: list[bytes] = []  # the pieces of the line not ended yet (joined once its end comes)
        pending_bytes = 0
        try:
            while True:
                try:
                    chunk = await response.content.readany()
                except TimeoutError as e:
                    raise ClusterTimedOut(self.cluster, f"cluster {self.cluster}: the {verb} stream went silent") from e
                except (aiohttp.ClientError, OSError, RuntimeError) as e:
                    # RuntimeError("Connection closed."): aiohttp's answer when the session closes mid-read.
                    raise ClusterUnreachable(self.cluster, f"cluster {self.cluster}: the {verb} stream broke") from e
                if not chunk:
                    rest = b"".join(pending).strip()
                    if rest:
                        yield rest
                    return
                if b"\n" in chunk:
                    *lines, last = (b"".join(pending) + chunk if pending else chunk).split(b"\n")
                    pending, pending_bytes = [last], len(last)
                    for line in lines:
                        if line.strip():
                            yield line.strip()
                else:  # a piece of a long line: kept, not re-joined and re-scanned with every chunk
                    pending.append(chunk)
                    pending_bytes += len(chunk)
                if pending_bytes > _MAX_LINE:
                    raise ClusterBadResponse(self.cluster, f"cluster {self.cluster}: a {verb} line exceeds "
                                                           f"{_MAX_LINE} bytes")
        finally:
            response.release()

    # ----- plumbing

    async def _send(self, method: str, path: str, *, verb: str, query: Mapping[str, str] | None = None,
                    data: bytes | None = None, content_type: str = JSON, headers: CIMultiDict[str] | None = None,
                    timeout: aiohttp.ClientTimeout, accept: str = JSON) -> aiohttp.ClientResponse:
        """Send one request (once more after a 401 the credentials can answer); the 2xx response, which
        the caller releases, or the error."""
        url = self.connection.server + path + ("?" + urlencode(dict(query)) if query else "")
        request_headers: CIMultiDict[str] = CIMultiDict({"Accept": accept, "User-Agent": USER_AGENT})
        if data is not None:
            request_headers["Content-Type"] = content_type
        request_id = current_request_id()
        if request_id is not None:
            request_headers[REQUEST_ID_HEADER] = request_id
        if headers:
            request_headers.extend(headers)
        credentials = self.connection.credentials
        token = await self._token()
        response, latency_ms = await self._exchange(method, url, request_headers, token, data, timeout, verb=verb,
                                                    path=path)
        if response.status == 401 and await self._refreshed(token, response):
            response.release()
            log.info("cluster refused the gateway's token, retrying with a fresh one", cluster=self.cluster,
                     verb=verb, credentials=credentials.describe())
            token = await self._token()
            response, latency_ms = await self._exchange(method, url, request_headers, token, data, timeout,
                                                        verb=verb, path=path)
        if response.status < 400:
            return response
        raise await self._refused(response, verb=verb, path=path, request_id=request_id, latency_ms=latency_ms)

    async def _refreshed(self, rejected: str | None, response: aiohttp.ClientResponse) -> bool:
        """After a 401: whether the token source now has a token worth one more try."""
        try:
            return await self.connection.credentials.refresh(rejected)
        except ClusterCredentialsError:
            response.release()
            self._count_auth("credentials")
            raise

    async def _token(self) -> str | None:
        try:
            return await self.connection.credentials.token()
        except ClusterCredentialsError:
            self._count_auth("credentials")
            raise

    async def _exchange(self, method: str, url: str, headers: CIMultiDict[str], token: str | None,
                        data: bytes | None, timeout: aiohttp.ClientTimeout, *, verb: str,
                        path: str) -> tuple[aiohttp.ClientResponse, float]:
        if self._session is None:
            raise ClusterUnreachable(self.cluster, f"cluster {self.cluster}: client not started")
        sent = headers.copy()
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {}
        if self.connection.proxy is not None:
            kwargs["proxy"] = self.connection.proxy
        if self.connection.tls_server_name:
            kwargs["server_hostname"] = self.connection.tls_server_name
        attributes = {"http.request.method": method, "url.path": path, "k8s.cluster.name": self.cluster,
                      "clever.cluster.verb": verb}
        with tracing.client_span(f"{method} {verb}", attributes) as span:
            # The client span is current now: the traceparent names it, so the API server's audit log
            # and any tracing proxy see the gateway's call as the parent.
            tracing.inject(sent)
            started = time.perf_counter()
            try:
                response = await self._session.request(method, url, headers=sent, data=data, timeout=timeout,
                                                       **kwargs)
            except TimeoutError as e:
                self._count(verb, "timeout", started, error="timeout")
                raise ClusterTimedOut(self.cluster,
                                      f"cluster {self.cluster}: no answer within {self._timeout:g}s") from e
            except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as e:
                self._count(verb, "tls", started, error="tls")
                raise ClusterUnreachable(self.cluster,
                                         f"cluster {self.cluster}: TLS with the API server failed") from e
            except aiohttp.ClientHttpProxyError as e:
                self._count(verb, "proxy", started, error="unreachable")
                raise ClusterUnreachable(self.cluster, f"cluster {self.cluster}: the proxy refused the connection "
                                                       f"({e.status})") from e
            except (aiohttp.ClientError, OSError, ValueError) as e:
                self._count(verb, "unreachable", started, error="unreachable")
                raise ClusterUnreachable(self.cluster, f"cluster {self.cluster}: API server unreachable") from e
            code = response.status
            latency_ms = round((time.perf_counter() - started) * 1000.0, 1)
            self._count(verb, str(code), started, error="5xx" if code >= 500 else None)
            if code < 400:
                log.debug("cluster call", cluster=self.cluster, verb=verb, path=path, code=code,
                          latencyMs=latency_ms, **_request_id_field(headers))
            if span is not None:
                tracing.set_status_code(span, code, server=False)
        return response, latency_ms

    async def _refused(self, response: aiohttp.ClientResponse, *, verb: str, path: str, request_id: str | None,
                       latency_ms: float) -> ClusterApiError:
        code = response.status
        try:
            raw = await response.content.read(MAX_STATUS_BODY)
        except (TimeoutError, aiohttp.ClientError, OSError):
            raw = b""
        finally:
            response.release()
        status = KubeStatus.parse(code, raw, retry_after=response.headers.get("Retry-After"))
        if code in _AUTH_KINDS:
            self._count_auth(_AUTH_KINDS[code])
        log.info("cluster call refused", cluster=self.cluster, verb=verb, path=path, code=code, reason=status.reason,
                 message=status.message, latencyMs=latency_ms, **({"request_id": request_id} if request_id else {}))
        return ClusterApiError(self.cluster, status)

    def _count(self, verb: str, code: str, started: float, *, error: str | None = None) -> None:
        if self._metrics is None or self._calls is None or self._latency is None:
            return
        self._calls.labels(self.cluster, verb, code).inc()
        self._latency.labels(self.cluster, verb, code).observe(time.perf_counter() - started)
        if error is not None:
            self._metrics.cluster_errors.labels(self.cluster, verb, error).inc()

    def _count_auth(self, kind: str) -> None:
        if self._metrics is not None:
            self._metrics.cluster_auth_failures.labels(self.cluster, kind).inc()


__all__ = ["JSON", "MERGE_PATCH", "REQUEST_ID_HEADER", "ByteStream", "Transport", "current_request_id"]
