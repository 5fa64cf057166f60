"""Fixtures for the auth tests: a running local issuer and authenticators wired to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway.auth import OIDCAuthenticator
from gateway.auth.settings import AuthSettings
from tests.auth.issuer import LocalIssuer


@pytest.fixture
async def issuer() -> AsyncIterator[LocalIssuer]:
    async with LocalIssuer() as running:
        yield running


def auth_settings(issuer: LocalIssuer, *, oidc: dict[str, Any] | None = None, **auth: Any) -> AuthSettings:
    """AuthSettings pointing at `issuer`; `oidc` and keyword arguments override keys (camelCase)."""
    return AuthSettings.model_validate({
        "mode": "oidc",
        "oidc": {"issuer": issuer.issuer, "audience": issuer.audience, **(oidc or {})},
        **auth,
    })


MakeAuthenticator = Callable[..., Awaitable[OIDCAuthenticator]]


@pytest.fixture
async def make_authenticator(issuer: LocalIssuer) -> AsyncIterator[MakeAuthenticator]:
    """Build and start authenticators against the issuer; all are closed at teardown."""
    made: list[OIDCAuthenticator] = []

    async def make(*, oidc: dict[str, Any] | None = None, start: bool = True, **kwargs: Any) -> OIDCAuthenticator:
        clock = kwargs.pop("clock", None)
        monotonic = kwargs.pop("monotonic", None)
        extra: dict[str, Any] = {}
        if clock is not None:
            extra["clock"] = clock
        if monotonic is not None:
            extra["monotonic"] = monotonic
        authenticator = OIDCAuthenticator(auth_settings(issuer, oidc=oidc, **kwargs), **extra)
        made.append(authenticator)
        if start:
            await authenticator.start()
        return authenticator

    yield make
    for authenticator in made:
        await authenticator.close()


class FakeClock:
    """A settable clock for wall time or monotonic time."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
