"""The cluster client's errors: a small flat set, each carrying what the cluster said.

Contract (in the spirit of lightkube's `ApiError` and kopf's `clients/errors.py`):
- Every failure of a cluster call is a `KubeError`, raised `from` the transport's own exception when
  there is one, so aiohttp (or whatever carries the bytes) can change without touching callers.
- `ClusterApiError(cluster, status)`: the API server answered with an error; `status` is the parsed
  `KubeStatus` (code, reason, message, causes with field paths, retry-after). A body that is not a
  `Status` still gives a `KubeStatus` (the HTTP code, the standard reason for it, a generic message),
  never the body's text. `WatchExpired` is the 410 of a watch (HTTP 410 or an ERROR event): relist.
- `ClusterUnreachable` (connection refused or lost, TLS failure), `ClusterTimedOut` (no answer in time),
  `ClusterCredentialsError` (the gateway could not obtain its own credentials: an exec plugin failed, a
  token file is unreadable), `ClusterBadResponse` (a 2xx whose body is not a JSON object),
  `UnknownCluster` (no cluster of that id is configured).
- `error.transient` is decided by what happened, never by class identity of a subclass:
  an API answer is transient when its Status code is 429 or 5xx except 501 (Not Implemented will not
  change by itself); 409 is not transient: the gateway sends no resourceVersion preconditions, so a
  409 (AlreadyExists, Conflict) is an answer about the object that the same request would get again;
  401/403 are not transient for one request (the transport has already refreshed its credentials once
  on a 401; the outbox bounds its own retries of them, see `auth_failure`); 410 is not transient (the
  caller must relist). Unreachable and timed out are transient; credentials and bad responses are not.
- `error.auth_failure`: the cluster refused the gateway (401, 403) or the gateway could not obtain its
  credentials. The outbox retries those a bounded number of times and counts them in a metric.
- Mapping to the legacy HTTP answer is not done here: `gateway.web.errors.legacy_error` is the one place.

Nothing here imports aiohttp; messages never contain a token, a key or a raw response body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_STATUS_BODY = 64 * 1024
_MAX_MESSAGE = 1000
_MAX_CAUSES = 50

# The reason Kubernetes uses for a code when the body says nothing (apimachinery `pkg/api/errors`).
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
            406: "NotAcceptable", 409: "Conflict", 410: "Gone", 413: "RequestEntityTooLarge",
            415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}


def default_reason(code: int) -> str:
    """The reason word Kubernetes gives `code` when a Status names none."""
    return _REASONS.get(code, "InternalError" if code >= 500 else "Unknown")


@dataclass(frozen=True, slots=True)
class KubeCause:
    """One `details.causes[]` entry of a Status (`reason` is the JSON key of StatusCause.type)."""

    reason: str
    message: str
    field: str


@dataclass(frozen=True, slots=True)
class KubeStatus:
    """A parsed Kubernetes `Status` answer (or what could be learnt from a non-Status error body)."""

    code: int
    reason: str
    message: str
    causes: tuple[KubeCause, ...] = ()
    retry_after_seconds: int | None = None
    name: str = ""
    kind: str = ""

    @classmethod
    def parse(cls, code: int, body: bytes, *, retry_after: str | None = None) -> KubeStatus:
        """Parse an error body; a body that is not a Status gives a generic reason, never its text."""
        data: Any = None
        try:
            data = json.loads(body[:MAX_STATUS_BODY]) if body else None
        except ValueError:
            data = None
        return cls.from_object(code, data, retry_after=retry_after)

    @classmethod
    def from_object(cls, code: int, data: Any, *, retry_after: str | None = None) -> KubeStatus:
        """A Status from decoded JSON (a watch ERROR event's object, or a decoded body)."""
        retry = _int_or_none(retry_after)
        if not isinstance(data, dict) or data.get("kind") != "Status":
            return cls(code=code, reason=default_reason(code), message=f"HTTP {code} from the API server",
                       retry_after_seconds=retry)
        raw_details = data.get("details")
        details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
        raw_causes = details.get("causes")
        causes = tuple(
            KubeCause(reason=str(c.get("reason", ""))[:100], message=str(c.get("message", ""))[:_MAX_MESSAGE],
                      field=str(c.get("field", ""))[:300])
            for c in (raw_causes if isinstance(raw_causes, list) else [])[:_MAX_CAUSES] if isinstance(c, dict)
        )
        if retry is None:
            retry = _int_or_none(details.get("retryAfterSeconds"))
        status_code = _int_or_none(data.get("code")) or code
        return cls(code=status_code, reason=str(data.get("reason") or default_reason(status_code))[:100],
                   message=str(data.get("message") or "")[:_MAX_MESSAGE], causes=causes,
                   retry_after_seconds=retry, name=str(details.get("name") or "")[:300],
                   kind=str(details.get("kind") or "")[:100])

    @property
    def transient(self) -> bool:
        """Whether the same request may succeed later: 429, and 5xx except 501 (see module docstring)."""
        return self.code == 429 or (500 <= self.code <= 599 and self.code != 501)

    def summary(self) -> dict[str, Any]:
        """What a client may see of the cluster's answer (legacy error `details.clusterStatus`)."""
        return {"code": self.code, "reason": self.reason, "message": self.message}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class KubeError(Exception):
    """Base of every error of a cluster call. `cluster` is the cluster id; `message` is for humans."""

    def __init__(self, cluster: str, message: str) -> None:
        super().__init__(message)
        self.cluster = cluster
        self.message = message

    @property
    def transient(self) -> bool:
        """Whether retrying the same call later may succeed."""
        return False

    @property
    def auth_failure(self) -> bool:
        """Whether the cluster refused the gateway's credentials or access, or none could be obtained."""
        return False

    @property
    def kind(self) -> str:
        """A short stable word for logs and metrics."""
        return "error"


class ClusterApiError(KubeError):
    """The API server answered with an error `Status`."""

    def __init__(self, cluster: str, status: KubeStatus, message: str | None = None) -> None:
        what = status.message or f"HTTP {status.code} {status.reason}"
        super().__init__(cluster, message or f"cluster {cluster}: {what}")
        self.status = status

    @property
    def transient(self) -> bool:
        return self.status.transient

    @property
    def auth_failure(self) -> bool:
        return self.status.code in (401, 403)

    @property
    def kind(self) -> str:
        return str(self.status.code)


class WatchExpired(ClusterApiError):
    """410: a watch's resourceVersion (or a list's continue token, twice) fell out of the server's
    history; relist, then watch again."""


class ClusterUnreachable(KubeError):
    """No answer could be had: connection refused or lost, DNS, TLS handshake or verification failed."""

    @property
    def transient(self) -> bool:
        return True

    @property
    def kind(self) -> str:
        return "unreachable"


class ClusterTimedOut(KubeError):
    """The API server did not answer (or a stream went silent) within the configured time."""

    @property
    def transient(self) -> bool:
        return True

    @property
    def kind(self) -> str:
        return "timeout"


class ClusterCredentialsError(KubeError):
    """The gateway could not obtain its own credentials for the cluster (exec plugin, token file)."""

    @property
    def auth_failure(self) -> bool:
        return True

    @property
    def kind(self) -> str:
        return "credentials"


class ClusterBadResponse(KubeError):
    """A successful answer whose body is not the JSON object the API promises."""

    @property
    def kind(self) -> str:
        return "bad-response"


class UnknownCluster(KubeError):
    """No cluster of this id is configured."""

    def __init__(self, cluster: str) -> None:
        super().__init__(cluster, f"unknown cluster {cluster[:64]!r}")

    @property
    def kind(self) -> str:
        return "unknown-cluster"


__all__ = [
    "ClusterApiError", "ClusterBadResponse", "ClusterCredentialsError", "ClusterTimedOut", "ClusterUnreachable",
    "KubeCause", "KubeError", "KubeStatus", "UnknownCluster", "WatchExpired", "default_reason",
]
