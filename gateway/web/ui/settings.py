"""The `ui` section of the configuration: the web dashboard, its sign-in and its sessions.

Contract: `UiSettings` is embedded by `gateway.config.Settings` under `ui`. Rules that involve the `auth`
section too (with `auth.mode: oidc` an enabled dashboard needs `clientId`, listed among
`auth.oidc.audience`, and `sessionKeyFile`) are checked by `Settings`, so a bad file fails at start
naming the key.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from gateway.auth.settings import check_secure_url


class UiSettings(BaseModel):
    """The web dashboard at /ui."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              use_attribute_docstrings=True)

    enabled: bool = False
    """Serve the dashboard at `/ui` (off: `/ui` answers 404 and the API document leaves it out)."""
    client_id: str | None = None
    """auth.mode oidc: the dashboard's OIDC client id at the issuer (a public client using PKCE). Its ID tokens
    carry it as audience, so `auth.oidc.audience` must list it."""
    client_secret_file: str | None = None
    """auth.mode oidc: a file holding the client secret, when the issuer registers the dashboard as a
    confidential client (sent with HTTP Basic to the token endpoint; PKCE is used either way)."""
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile"])
    """Scopes asked for at sign-in (`openid` is required); add the one that puts the groups claim into the ID
    token if the issuer needs it (e.g. `groups`)."""
    public_url: str | None = None
    """The dashboard's external base URL, e.g. `https://clever.example` behind an ingress: the sign-in redirect
    URI is `{publicUrl}/ui/callback` (register it at the issuer). Default: from each request's Host."""
    session_key_file: str | None = None
    """A file of session-cookie keys (Fernet keys, one per line: the first encrypts, all decrypt, so keys can
    be rotated), the same on every replica. Required with auth.mode oidc; without it (auth.mode none, the
    demo) each process makes a random key: sessions end with the process and are not shared by replicas."""
    session_seconds: int = Field(default=8 * 3600, ge=60)
    """How long a sign-in lasts, seconds (the cookie's lifetime; signing out ends it earlier in that browser)."""
    login_seconds: int = Field(default=600, ge=30)
    """How long a started sign-in may take (from the redirect to the issuer to its return), seconds."""

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_secure_url(value.rstrip("/"), what="ui.publicUrl")

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("must include 'openid' (the sign-in needs an ID token)")
        if any(not s or " " in s for s in value):
            raise ValueError("each scope is one non-empty word")
        return value
