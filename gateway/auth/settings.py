"""The `auth` section of the gateway configuration (DESIGN §6), as pydantic v2 models with camelCase keys.

Contract: `AuthSettings` is embedded by `gateway.config.Settings` under the `auth` key. Every field has a
default except the OIDC issuer and audience; a bad value fails at start with its key path. Security-relevant
rules are enforced here, at load time, not at request time:

- `oidc.issuer` must be https, except `http://` on a loopback address (tests, demo).
- `oidc.algorithms` is an allow-list of asymmetric algorithms only: never `none`, never HS* (a public key
  must never be usable as an HMAC secret).
- `mode: oidc` requires an `oidc` block.

Example::

    auth:
      mode: oidc                       # oidc | none (none: X-User trusted, loud warning; demo only)
      oidc: {issuer: https://idp.example/realms/clever, audience: clever-gateway,
             usernameClaim: preferred_username, groupsClaim: groups, leewaySeconds: 30}
      adminGroups: [clever-admins]
      partitionRead:                   # who may read other users' jobs in a partition
        - {cluster: c1, partition: team-a, groups: [team-a]}
        - {cluster: "*", partition: shared, shared: true}
      partitionAccess: {mode: open}    # default for every cluster: open | static | sar
      clusters:                        # per-cluster overrides of partitionAccess
        c1: {mode: static, groups: {team-a: [team-a], clever-users: ["*"]}}
        c2: {mode: sar, cacheSeconds: 30, impersonate: true}
"""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Asymmetric JWS algorithms only. HS* is excluded on purpose: with a verifier that accepts HS256, an
# attacker can sign with the issuer's *public* key as the HMAC secret.
SUPPORTED_ALGORITHMS: tuple[str, ...] = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)

WILDCARD = "*"


def is_loopback_host(host: str | None) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_secure_url(url: str, *, what: str) -> str:
    """Require https, or http on a loopback host; raise ValueError naming `what` otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return url
    raise ValueError(f"{what} must be an https:// URL (http:// is accepted only on a loopback address): {url!r}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class OIDCSettings(_Model):
    """How bearer tokens are verified (OIDC resource server)."""

    issuer: str
    """Issuer URL, exactly as in the tokens' `iss`; discovery is `{issuer}/.well-known/openid-configuration`."""
    audience: str | list[str]
    """Accepted `aud` value(s); a token must carry at least one of them."""
    usernameClaim: str = "preferred_username"
    """Claim naming the user; a dotted path (`a.b`) reaches into nested objects when no such top-level key exists."""
    groupsClaim: str = "groups"
    """Claim listing the user's groups (list of strings, or one string); dotted path allowed (`realm_access.roles`)."""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    """Allow-list of JWS algorithms; asymmetric ones only."""
    leewaySeconds: float = Field(default=30.0, ge=0, le=300)
    """Clock skew tolerated on exp, nbf and iat, in seconds."""
    jwksRefreshMinIntervalSeconds: float = Field(default=1.0, ge=0, le=1.0)
    """At most one JWKS fetch per this many seconds (unknown `kid` floods cannot hammer the issuer). At most
    1: a token whose key was published just after a fetch waits for the next one, about this long."""
    jwksMaxAgeSeconds: float = Field(default=3600.0, gt=0)
    """Key set older than this is refreshed in the background; the old one keeps working meanwhile."""
    httpTimeoutSeconds: float = Field(default=5.0, gt=0)
    """Total timeout of one discovery or JWKS request, in seconds."""
    caFile: str | None = None
    """PEM bundle to trust for the issuer's TLS certificate (default: system store)."""
    tokenCacheSize: int = Field(default=10_000, ge=0)
    """Verified tokens remembered (keyed by SHA-256 of the token) until their expiry; 0 disables the cache."""
    maxTokenBytes: int = Field(default=16_384, gt=0)
    """Longer Authorization values are refused without parsing."""

    @field_validator("issuer")
    @classmethod
    def _issuer_secure(cls, value: str) -> str:
        return check_secure_url(value, what="auth.oidc.issuer")

    @field_validator("audience")
    @classmethod
    def _audience_nonempty(cls, value: str | list[str]) -> str | list[str]:
        values = [value] if isinstance(value, str) else value
        if not values or not all(v.strip() for v in values):
            raise ValueError("audience must be a non-empty string or list of non-empty strings")
        return value

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one algorithm is required")
        bad = [alg for alg in value if alg not in SUPPORTED_ALGORITHMS]
        if bad:
            raise ValueError(f"algorithms not allowed: {bad}; choose from {list(SUPPORTED_ALGORITHMS)} "
                             "(never 'none' or HS*)")
        return value

    @property
    def audiences(self) -> list[str]:
        """The accepted audiences as a list."""
        return [self.audience] if isinstance(self.audience, str) else list(self.audience)


class PartitionReadRule(_Model):
    """Lets users read (never write) other users' jobs in matching partitions."""

    cluster: str = WILDCARD
    """Cluster id, or `*`."""
    partition: str = WILDCARD
    """Partition name, or `*`."""
    groups: list[str] = Field(default_factory=list)
    """Members of any of these groups may read every job in the partition."""
    shared: bool = False
    """Every authenticated user may read every job in the partition."""

    def matches(self, *, cluster: str, partition: str) -> bool:
        """Whether this rule applies to (cluster, partition)."""
        return self.cluster in (WILDCARD, cluster) and self.partition in (WILDCARD, partition)


class PartitionAccessSettings(_Model):
    """Who may use a partition of one cluster, and how the gateway calls that cluster."""

    mode: Literal["open", "static", "sar"] = "open"
    """open: everyone; static: `groups` map; sar: a SubjectAccessReview on the target cluster."""
    groups: dict[str, list[str]] = Field(default_factory=dict)
    """static mode: group → partitions it may use (`*` = all partitions)."""
    cacheSeconds: float = Field(default=30.0, ge=0)
    """sar mode: how long an answer (allow or deny) is cached, in seconds; 0 disables the cache."""
    impersonate: bool = False
    """Call this cluster's API as the user (Impersonate-User/-Group headers)."""


class AuthSettings(_Model):
    """The `auth` configuration section."""

    mode: Literal["oidc", "none"] = "oidc"
    """oidc: bearer token required; none: X-User trusted (demo only, warned at start)."""
    oidc: OIDCSettings | None = None
    """Required when mode is oidc."""
    adminGroups: list[str] = Field(default_factory=lambda: ["clever-admins"])
    """Members see and manage every job and may act on behalf of another user via X-User."""
    adminUsers: list[str] = Field(default_factory=list)
    """Users that are admins regardless of groups (also the only way to have an admin with mode none)."""
    partitionRead: list[PartitionReadRule] = Field(default_factory=list)
    """Read sharing between users of a partition."""
    partitionAccess: PartitionAccessSettings = Field(default_factory=PartitionAccessSettings)
    """Partition access for clusters without an entry in `clusters`."""
    clusters: dict[str, PartitionAccessSettings] = Field(default_factory=dict)
    """Per-cluster partition access (replaces `partitionAccess` for that cluster)."""

    @model_validator(mode="after")
    def _oidc_required(self) -> AuthSettings:
        if self.mode == "oidc" and self.oidc is None:
            raise ValueError("auth.oidc is required when auth.mode is 'oidc'")
        return self

    def access_for(self, cluster: str) -> PartitionAccessSettings:
        """The partition-access settings that apply to `cluster`."""
        return self.clusters.get(cluster, self.partitionAccess)

    def is_admin(self, *, user: str, groups: frozenset[str] | set[str]) -> bool:
        """Whether this user (with these groups) is an admin."""
        return user in self.adminUsers or not groups.isdisjoint(self.adminGroups)
