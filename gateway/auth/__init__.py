"""Who is calling, and what they may touch.

Contract used by the rest of the gateway (the auth package owns the implementation):

- `Principal`: the acting user after authentication and X-User resolution.
- `Authenticator.authenticate(headers) -> Principal`: raises `gateway.errors.Unauthenticated` (401)
  or `gateway.errors.Forbidden` (403) — or `IssuerUnavailable` (503) while the identity provider's keys
  were never fetched; never returns a half-checked identity. `start()`/`close()` own its HTTP session.
- `build_authenticator(settings)`: from the `auth` config section (`gateway.auth.settings.AuthSettings`).
- `auth_warning(settings)`: the loud warning for `auth.mode: none`, for /api/ping (the authenticator logs it at start).
- `policy` (module): object-level and partition-level decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

if TYPE_CHECKING:
    from gateway.auth.settings import AuthSettings


@dataclass(frozen=True, slots=True)
class Principal:
    """The user a request acts as. `actor` is who really called when an admin acts on behalf of `user`."""

    user: str
    groups: frozenset[str] = frozenset()
    is_admin: bool = False
    actor: str | None = None


class Authenticator(Protocol):
    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """Resolve the acting user from the Authorization and X-User headers."""
        ...

    async def start(self) -> None:
        """Acquire resources (HTTP session, first key fetch); never fails because the issuer is down."""
        ...

    async def close(self) -> None:
        """Release what `start` acquired."""
        ...


# The implementations import Principal from this module, so they are imported after it is defined.
from gateway.auth.identity import trusted_principal, x_user
from gateway.auth.oidc import IssuerUnavailable, OIDCAuthenticator

_log = structlog.get_logger(__name__)

NO_AUTH_WARNING = ("authentication is disabled (auth.mode: none): the X-User header is trusted as is; "
                   "use this for demos only")


class NoAuthAuthenticator:
    """auth.mode none (demo only): X-User names the user, unverified; a missing X-User is 401."""

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings

    async def start(self) -> None:
        """Log the warning once at start."""
        _log.warning("AUTHENTICATION IS OFF", warning=NO_AUTH_WARNING)

    async def close(self) -> None:
        """Nothing to release."""

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """Trust X-User."""
        return trusted_principal(x_user(headers), settings=self._settings)


def build_authenticator(settings: AuthSettings) -> OIDCAuthenticator | NoAuthAuthenticator:
    """The authenticator for `auth.mode`; call `await start()` before use and `await close()` after."""
    if settings.mode == "none":
        return NoAuthAuthenticator(settings)
    return OIDCAuthenticator(settings)


def auth_warning(settings: AuthSettings) -> str | None:
    """A warning to show in /api/ping and the start log when authentication is off, else None."""
    return NO_AUTH_WARNING if settings.mode == "none" else None


__all__ = [
    "NO_AUTH_WARNING",
    "Authenticator",
    "IssuerUnavailable",
    "NoAuthAuthenticator",
    "OIDCAuthenticator",
    "Principal",
    "auth_warning",
    "build_authenticator",
]
