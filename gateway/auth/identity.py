"""Who acts: the X-User rules of DESIGN §1, applied after the bearer token (if any) has been verified.

Contract:
- `resolve_principal(identity, x_user=..., settings=...)`: X-User omitted → the token's user; equal → the
  same; different → allowed only when the token's user is an admin, and then the request acts *on behalf
  of* X-User (`Principal(user=X-User, actor=token user, is_admin=True)`, logged); otherwise `Forbidden`.
- `trusted_principal(x_user, settings=...)`: `auth.mode: none` (demo only): X-User is believed; no X-User
  is refused with 401, since anonymous access is not allowed.
- `header_value(headers, name)`: case-insensitive header lookup on any mapping.

User names and the actor are logged (audit); tokens and claims never are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from gateway.auth import Principal
from gateway.auth.settings import AuthSettings
from gateway.errors import Forbidden, Unauthenticated

X_USER_HEADER = "X-User"

# Kubernetes user names are free-form strings; refuse only what cannot be a sane name in a label, an
# audit log or an Impersonate-User header: empty, overlong, or containing control characters.
_PLAUSIBLE_USER = re.compile(r"[^\x00-\x1f\x7f]{1,253}")

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    """What a verified token says about its bearer."""

    user: str
    groups: frozenset[str] = frozenset()


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """The first value of header `name`, case-insensitively, on any mapping (aiohttp's or a plain dict)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def _clean_x_user(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = raw.strip()
    return value or None


def resolve_principal(identity: TokenIdentity, *, x_user: str | None, settings: AuthSettings) -> Principal:
    """Apply the X-User rules to a verified token identity; raise `Forbidden` when X-User may not be used."""
    requested = _clean_x_user(x_user)
    is_admin = settings.is_admin(user=identity.user, groups=identity.groups)
    if requested is None or requested == identity.user:
        return Principal(user=identity.user, groups=identity.groups, is_admin=is_admin)
    if not is_admin or not _PLAUSIBLE_USER.fullmatch(requested):
        log.info("x-user refused", user=identity.user, requested_user=requested[:64])
        raise Forbidden("X-User must name the authenticated user (only admins may act on behalf of others)")
    # The target's own groups are unknown here; acting on behalf grants the admin's object-level rights
    # under the target's name (jobs created are owned by the target), recorded with the real caller.
    log.info("acting on behalf", user=requested, actor=identity.user)
    return Principal(user=requested, groups=frozenset(), is_admin=True, actor=identity.user)


def trusted_principal(x_user: str | None, *, settings: AuthSettings) -> Principal:
    """auth.mode none: believe X-User; refuse a missing or unusable one with 401."""
    requested = _clean_x_user(x_user)
    if requested is None:
        raise Unauthenticated("the X-User header is required (authentication is disabled, anonymous access is not)")
    if not _PLAUSIBLE_USER.fullmatch(requested):
        raise Unauthenticated("the X-User header does not name a user")
    return Principal(user=requested, groups=frozenset(),
                     is_admin=settings.is_admin(user=requested, groups=frozenset()))
