"""The `auth` configuration section (load-time security rules) and `auth.mode: none`."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from gateway.auth import (
    NO_AUTH_WARNING,
    NoAuthAuthenticator,
    OIDCAuthenticator,
    Principal,
    auth_warning,
    build_authenticator,
)
from gateway.auth.settings import AuthSettings
from gateway.errors import BadRequest, Unauthenticated


def oidc(**overrides: Any) -> dict[str, Any]:
    return {"mode": "oidc", "oidc": {"issuer": "https://idp.example/realms/clever", "audience": "clever-gateway",
                                     **overrides}}


@pytest.mark.parametrize("issuer", [
    "https://idp.example/realms/clever", "http://127.0.0.1:8080/realms/x", "http://localhost:9000",
    "http://[::1]:9000/x", "http://127.5.6.7",
])
def test_secure_or_loopback_issuers_are_accepted(issuer: str) -> None:
    settings = AuthSettings.model_validate(oidc(issuer=issuer))
    assert settings.oidc is not None and settings.oidc.issuer == issuer


@pytest.mark.parametrize("issuer", [
    "http://idp.example/realms/clever", "http://10.0.0.1", "http://127.0.0.1.nip.io", "ftp://127.0.0.1",
    "idp.example", "https://",
])
def test_insecure_issuers_fail_with_the_key_path(issuer: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AuthSettings.model_validate(oidc(issuer=issuer))
    assert caught.value.errors()[0]["loc"] == ("oidc", "issuer")


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"], ["RS256", "HS512"], []])
def test_algorithm_allow_list_refuses_none_and_hmac(algorithms: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        AuthSettings.model_validate(oidc(algorithms=algorithms))
    assert caught.value.errors()[0]["loc"] == ("oidc", "algorithms")


def test_other_bad_files_fail_at_load() -> None:
    for bad in ({"mode": "oidc"}, {"mode": "basic"}, oidc(leewaySeconds=3600), oidc(audience=""),
                oidc(surprise=True), {**oidc(), "partitionAccess": {"mode": "everyone"}}):
        with pytest.raises(ValidationError):
            AuthSettings.model_validate(bad)


def test_full_example_loads() -> None:
    settings = AuthSettings.model_validate({
        **oidc(usernameClaim="email", groupsClaim="realm_access.roles", audience=["a", "b"]),
        "adminGroups": ["ops"], "adminUsers": ["root"],
        "partitionRead": [{"cluster": "c1", "partition": "team-a", "groups": ["team-a"]},
                          {"partition": "shared", "shared": True}],
        "partitionAccess": {"mode": "static", "groups": {"team-a": ["team-a"]}},
        "clusters": {"c2": {"mode": "sar", "cacheSeconds": 5, "impersonate": True}},
    })
    assert settings.oidc is not None and settings.oidc.audiences == ["a", "b"]
    assert settings.access_for("c1").mode == "static"
    assert settings.access_for("c2").impersonate is True
    assert settings.is_admin(user="root", groups=frozenset())
    assert settings.is_admin(user="x", groups=frozenset({"ops"}))
    assert not settings.is_admin(user="x", groups=frozenset({"team-a"}))


def test_build_authenticator_and_warning() -> None:
    oidc_settings = AuthSettings.model_validate(oidc())
    assert isinstance(build_authenticator(oidc_settings), OIDCAuthenticator)
    assert auth_warning(oidc_settings) is None
    none_settings = AuthSettings(mode="none")
    assert isinstance(build_authenticator(none_settings), NoAuthAuthenticator)
    warning = auth_warning(none_settings)
    assert warning is not None and "auth.mode: none" in warning


async def test_no_auth_trusts_x_user_and_refuses_anonymous() -> None:
    authenticator = NoAuthAuthenticator(AuthSettings(mode="none", adminUsers=["root"]))
    with capture_logs() as logs:
        await authenticator.start()
    assert [(entry["log_level"], entry["warning"]) for entry in logs] == [("warning", NO_AUTH_WARNING)]
    assert await authenticator.authenticate({"X-User": "alice"}) == Principal(user="alice")
    assert await authenticator.authenticate({"x-user": "root"}) == Principal(user="root", is_admin=True)
    for headers in ({}, {"X-User": "  "}, {"Authorization": "Bearer whatever"}):
        with pytest.raises(Unauthenticated) as caught:
            await authenticator.authenticate(headers)
        assert caught.value.status == 401
    # A name that is there but unusable is the client's mistake in a field, not missing credentials.
    with pytest.raises(BadRequest) as refused:
        await authenticator.authenticate({"X-User": "a\x00b"})
    assert refused.value.status == 400
    await authenticator.close()
