"""Who is calling, and what they may touch.

Contract used by the rest of the gateway (the auth package owns the implementation):

- `Principal`: the acting user after authentication and X-User resolution.
- `Authenticator.authenticate(headers) -> Principal`: raises `gateway.errors.Unauthenticated` (401)
  or `gateway.errors.Forbidden` (403); never returns a half-checked identity.
- `build_authenticator(settings)`: from the `auth` config section.
- `policy` (module): object-level and partition-level decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


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
