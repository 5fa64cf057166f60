"""One exception hierarchy for the gateway, mapped to HTTP in exactly one place (`gateway.web.middleware`).

Every error carries the legacy body fields: `code` (HTTP status), `reason` (a stable word such as
`BadRequest`), `message` (for humans) and `details` (field paths, the cluster's answer, ...).
Client modules (Redis, OIDC) raise these, chained `from` the library's own exception, so no aiohttp or
redis exception escapes its module. The Kubernetes client raises its own errors, which carry the
cluster's `Status` (`gateway.kube.errors`); `gateway.web.errors.legacy_error` turns them into these.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    """Base of every error the gateway turns into an HTTP answer."""

    status: ClassVar[int] = 500
    reason: ClassVar[str] = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}
        self.headers: dict[str, str] = headers or {}

    def body(self, *, request_id: str | None = None) -> dict[str, Any]:
        """The legacy error body."""
        details = dict(self.details)
        if request_id:
            details["requestId"] = request_id
        return {"code": self.status, "reason": self.reason, "message": self.message, "details": details}


class BadRequest(GatewayError):
    status, reason = 400, "BadRequest"


class ValidationFailed(BadRequest):
    """Input that parses but is not a valid job; `details.fields` lists `{path, message}`."""

    reason = "Invalid"

    def __init__(self, message: str, fields: list[dict[str, str]]) -> None:
        super().__init__(message, details={"fields": fields})


class Unauthenticated(GatewayError):
    status, reason = 401, "Unauthorized"

    def __init__(self, message: str = "a valid bearer token is required", *,
                 error: str = "invalid_token") -> None:
        super().__init__(message, headers={"WWW-Authenticate": f'Bearer error="{error}"'})


class Forbidden(GatewayError):
    status, reason = 403, "Forbidden"


class NotFound(GatewayError):
    status, reason = 404, "NotFound"


class MethodNotAllowed(GatewayError):
    status, reason = 405, "MethodNotAllowed"


class RequestTimeout(GatewayError):
    """The client did not send its whole request in time (a body shorter than its Content-Length)."""

    status, reason = 408, "RequestTimeout"


class Conflict(GatewayError):
    status, reason = 409, "Conflict"


class Gone(GatewayError):
    """What was asked for existed and is gone for good (a replica's pod removed when its job ended)."""

    status, reason = 410, "Gone"


class PayloadTooLarge(GatewayError):
    status, reason = 413, "RequestEntityTooLarge"


class UnsupportedMediaType(GatewayError):
    status, reason = 415, "UnsupportedMediaType"


class TooManyRequests(GatewayError):
    status, reason = 429, "TooManyRequests"


class ClusterError(GatewayError):
    """A cluster answered with an error we cannot blame on the client (or refused the gateway)."""

    status, reason = 502, "BadGateway"


class ClusterUnavailable(GatewayError):
    """A cluster cannot be reached or says it is unavailable."""

    status, reason = 503, "ServiceUnavailable"


class ClusterTimeout(GatewayError):
    """A cluster (or the whole request) took too long."""

    status, reason = 504, "GatewayTimeout"


class StoreUnavailable(GatewayError):
    """Redis cannot be reached: reads and writes cannot be served consistently."""

    status, reason = 503, "ServiceUnavailable"
