"""Kubernetes API errors as kubesim raises and serves them.

Contract: every failure inside kubesim's store, admission, schema and server layers is an
`ApiError` carrying a complete `meta/v1 Status` body (`kind: Status`, `status: Failure`, `reason`,
`message`, `details`, `code`) shaped and worded like kube-apiserver's
(apimachinery `pkg/api/errors/errors.go`), so clients that know nothing of kubesim parse it.
Constructors take the `Resource` whose qualified name ("tfjobs.kubeflow.org") appears in messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubesim.store import Resource


class ApiError(Exception):
    """An error with an HTTP status code and a Kubernetes `Status` body."""

    def __init__(self, code: int, reason: str, message: str, *, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = dict(headers or {})
        self.metadata = dict(metadata or {})

    def status(self) -> dict[str, Any]:
        """The `Status` object a real API server would send for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.metadata),
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details:
            body["details"] = dict(self.details)
        body["code"] = self.code
        return body

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"


def qualified(res: Resource) -> str:
    """`plural.group` (or just `plural` for the core group) as used in error messages."""
    return f"{res.plural}.{res.group}" if res.group else res.plural


def _details(res: Resource | None, name: str | None, *, causes: list[dict[str, str]] | None = None,
             **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if res is not None:
        if res.group:
            details["group"] = res.group
        details["kind"] = res.plural
    if causes:
        details["causes"] = causes
    details.update(extra)
    return details


def not_found(res: Resource, name: str) -> ApiError:
    """404 NotFound: `tfjobs.kubeflow.org "x" not found`."""
    return ApiError(404, "NotFound", f'{qualified(res)} "{name}" not found', details=_details(res, name))


def already_exists(res: Resource, name: str) -> ApiError:
    """409 AlreadyExists on create of an existing name."""
    return ApiError(409, "AlreadyExists", f'{qualified(res)} "{name}" already exists',
                    details=_details(res, name))


def conflict(res: Resource, name: str) -> ApiError:
    """409 Conflict for a stale resourceVersion (optimistic lock)."""
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {qualified(res)} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        details=_details(res, name))


def conflict_message(res: Resource, name: str, message: str) -> ApiError:
    """409 Conflict with a custom tail (e.g. namespace terminating)."""
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified(res)} "{name}": {message}',
                    details=_details(res, name))


def invalid(res: Resource, name: str, causes: list[dict[str, str]]) -> ApiError:
    """422 Invalid; each cause is `{"reason", "message", "field"}` (reason e.g. FieldValueInvalid)."""
    kind = res.kind
    group_kind = f"{kind}.{res.group}" if res.group else kind
    parts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = _details(res, name, causes=causes)
    details["kind"] = kind
    return ApiError(422, "Invalid", f'{group_kind} "{name}" is invalid: {joined}', details=details)


def field_cause(field: str, message: str, *, reason: str = "FieldValueInvalid") -> dict[str, str]:
    """One `StatusCause`; `message` is the full upstream-style text (e.g. `Invalid value: ...`)."""
    return {"reason": reason, "message": message, "field": field}


def forbidden(message: str, *, res: Resource | None = None, name: str | None = None) -> ApiError:
    """403 Forbidden with a verbatim message (admission denials, RBAC)."""
    return ApiError(403, "Forbidden", message, details=_details(res, name) or None)


def rbac_forbidden(res: Resource, name: str | None, *, user: str, verb: str, namespace: str | None) -> ApiError:
    """403 Forbidden worded like the RBAC authorizer."""
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    group = f' in API group "{res.group}"'
    target = f'{qualified(res)} "{name}"' if name else qualified(res)
    message = (f'{target} is forbidden: User "{user}" cannot {verb} resource "{res.plural}"{group} {scope}')
    return ApiError(403, "Forbidden", message, details=_details(res, name))


def unauthorized(message: str = "Unauthorized") -> ApiError:
    """401 Unauthorized (missing or wrong bearer token)."""
    return ApiError(401, "Unauthorized", message)


def bad_request(message: str) -> ApiError:
    """400 BadRequest with a verbatim message."""
    return ApiError(400, "BadRequest", message)


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    """415 UnsupportedMediaType as the apiserver's negotiation layer words it."""
    return ApiError(
        415, "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}",
        details={"causes": [{"reason": "UnexpectedHeader", "message": content_type, "field": "Content-Type"}]})


def method_not_allowed(method: str, what: str) -> ApiError:
    """405 MethodNotAllowed."""
    return ApiError(405, "MethodNotAllowed", f"{method} is not supported on {what}")


def gone(message: str) -> ApiError:
    """410 Gone."""
    return ApiError(410, "Gone", message)


def expired(message: str, *, continue_token: str | None = None) -> ApiError:
    """410 Expired (stale continue token or too-old resourceVersion)."""
    metadata = {"continue": continue_token} if continue_token else None
    return ApiError(410, "Expired", message, metadata=metadata)


def too_many_requests(message: str = "Too many requests, please try again later.", *,
                      retry_after_seconds: int = 1) -> ApiError:
    """429 TooManyRequests with `Retry-After` header and `details.retryAfterSeconds`."""
    return ApiError(429, "TooManyRequests", message, details={"retryAfterSeconds": retry_after_seconds},
                    headers={"Retry-After": str(retry_after_seconds)})


def service_unavailable(message: str = "The server is currently unable to handle the request") -> ApiError:
    """503 ServiceUnavailable."""
    return ApiError(503, "ServiceUnavailable", message)


def internal_error(message: str = "Internal error occurred: kubesim injected failure") -> ApiError:
    """500 InternalError."""
    return ApiError(500, "InternalError", message, details={"causes": [{"message": message}]})


def timeout(message: str = "Timeout: request did not complete within the allowed duration") -> ApiError:
    """504 Timeout."""
    return ApiError(504, "Timeout", message)


# Reason words the fault injector uses when only a code is given.
REASON_FOR_CODE: dict[int, str] = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    406: "NotAcceptable", 409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
    503: "ServiceUnavailable", 504: "Timeout",
}


def from_code(code: int, *, reason: str | None = None, message: str | None = None) -> ApiError:
    """An ApiError for an arbitrary injected code (429 gets Retry-After, like the real thing)."""
    if code == 429 and reason in (None, "TooManyRequests"):
        return too_many_requests(message or "Too many requests, please try again later.")
    reason = reason or REASON_FOR_CODE.get(code, "InternalError" if code >= 500 else "BadRequest")
    return ApiError(code, reason, message or f"kubesim injected failure ({code} {reason})")
