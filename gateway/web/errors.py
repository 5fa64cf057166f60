"""The one mapping of a cluster error to the legacy answer (used by the middleware, nowhere else).

Contract: `legacy_error(error: KubeError) -> GatewayError`; the answer's `code`/`reason`, a message
that starts with `cluster <id>: `, and `details` with `cluster` and, for an API answer, `clusterStatus`
(`{code, reason, message}` of the cluster's Status) plus `fields` (the causes' field paths) for 422.

| cluster said                         | legacy answer                                    |
| ------------------------------------ | ------------------------------------------------ |
| 400 BadRequest                       | 400 BadRequest                                   |
| 401 Unauthorized                     | 502 BadGateway (the gateway's credentials)       |
| 403 Forbidden                        | 403 Forbidden (the cluster's message: RBAC of    |
|                                      | the impersonated user, quota, admission)         |
| 404 NotFound                         | 404 NotFound                                     |
| 405, 410, 415, other 4xx             | 502 BadGateway (the gateway asked wrongly)       |
| 409 AlreadyExists / Conflict         | 409 Conflict                                     |
| 413 RequestEntityTooLarge            | 413 RequestEntityTooLarge                        |
| 422 Invalid                          | 400 Invalid, `details.fields` from the causes    |
| 429 TooManyRequests                  | 429 TooManyRequests, Retry-After                 |
| 500, 502, other 5xx                  | 502 BadGateway                                   |
| 503 ServiceUnavailable               | 503 ServiceUnavailable (Retry-After)             |
| 504 Timeout                          | 504 GatewayTimeout                               |
| unreachable (refused, reset, TLS)    | 503 ServiceUnavailable                           |
| timed out                            | 504 GatewayTimeout                               |
| credentials could not be obtained    | 502 BadGateway                                   |
| 2xx that is not a JSON object        | 502 BadGateway                                   |
| unknown cluster id                   | 404 NotFound                                     |
"""

from __future__ import annotations

from typing import Any

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
from gateway.kube.errors import (
    ClusterApiError,
    ClusterTimedOut,
    ClusterUnreachable,
    KubeError,
    UnknownCluster,
)


def legacy_error(error: KubeError) -> GatewayError:
    """The legacy error answer for a cluster error (see the module's table)."""
    cluster = error.cluster
    prefix = f"cluster {cluster}: "
    if isinstance(error, UnknownCluster):
        return NotFound(error.message, details={"cluster": cluster[:64]})
    if isinstance(error, ClusterUnreachable):
        return ClusterUnavailable(error.message, details={"cluster": cluster})
    if isinstance(error, ClusterTimedOut):
        return ClusterTimeout(error.message, details={"cluster": cluster})
    if not isinstance(error, ClusterApiError):
        return ClusterError(error.message, details={"cluster": cluster})
    status = error.status
    details: dict[str, Any] = {"cluster": cluster, "clusterStatus": status.summary()}
    message = prefix + (status.message or f"HTTP {status.code} {status.reason}")
    code = status.code
    if code == 422:
        fields = [{"path": c.field or "(object)", "message": c.message} for c in status.causes]
        invalid = ValidationFailed(prefix + (status.message or "the cluster refused the job as invalid"),
                                   fields or [{"path": "(object)", "message": status.message}])
        invalid.details.update(details)
        return invalid
    retry_after = {"Retry-After": str(status.retry_after_seconds)} if status.retry_after_seconds else {}
    if code == 400:
        return BadRequest(message, details=details)
    if code == 401:
        # The gateway's own credentials were refused: not the client's fault, and not theirs to fix.
        return ClusterError(prefix + "the cluster refused the gateway's credentials", details=details)
    if code == 403:
        return Forbidden(message, details=details)
    if code == 404:
        return NotFound(message, details=details)
    if code == 409:
        return Conflict(message, details=details)
    if code == 413:
        return PayloadTooLarge(message, details=details)
    if code == 429:
        return TooManyRequests(message, details=details, headers=retry_after)
    if code == 503:
        return ClusterUnavailable(message, details=details, headers=retry_after)
    if code == 504:
        return ClusterTimeout(message, details=details)
    return ClusterError(message, details=details)


__all__ = ["legacy_error"]
