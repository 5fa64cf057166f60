"""OIDC resource server: verifies bearer tokens (JWS-signed JWTs) against the issuer's published keys.

Contract:
- `OIDCAuthenticator(settings)`: `await start()` (opens the HTTP session and tries to fetch the keys once;
  an unreachable issuer does not fail the start), `await authenticate(headers) -> Principal`,
  `await close()`.
- Answers: `Unauthenticated` (401, `WWW-Authenticate: Bearer error="invalid_token"`) for a missing,
  malformed, badly signed, expired, not-yet-valid, wrong-issuer, wrong-audience token or a `kid` still
  unknown after a refresh that started after the token arrived; `IssuerUnavailable` (503) only while no key set was ever fetched; `Forbidden` (403)
  from the X-User rules. The client never learns which check failed; the reason goes to the debug log,
  without the token or its claims.

How (the decisions that matter):
- Discovery (`{issuer}/.well-known/openid-configuration`, validated with authlib's
  `OpenIDProviderMetadata`; its `issuer` must equal the configured one) then the JWKS from `jwks_uri`.
- The key set is replaced as a whole on every successful fetch, so keys removed by a rotation stop
  verifying at once. Fetches are single-flight (every caller that wants one while it runs shares it) and
  start at most once per `jwksRefreshMinIntervalSeconds` (at most 1 s). A token whose `kid` is unknown
  waits for a fetch that *starts after it arrived* (the next one the rate allows, so at most about a
  second plus the fetch) and is refused only if that fetch does not publish its key either: a garbage
  token that caused a fetch just before the issuer rotates its key cannot lock anyone out, and a flood
  of made-up kids still costs at most one fetch per interval (they all wait for the same one). A failed
  refresh keeps the old keys. A key set older than `jwksMaxAgeSeconds` is refreshed in the background.
- Only the configured asymmetric algorithms are accepted (settings forbid `none` and HS*); the header's
  `alg` is checked before any key is looked up, a JWK whose own `alg` differs is not used, and joserfc
  checks the key type against the algorithm.
- Claims: `iss` and `aud` required and matched, `exp` required; `nbf` and `iat` checked when present;
  all with `leewaySeconds`.
- Verified tokens are cached by SHA-256 of the token (bounded LRU) until their `exp`, and only while the
  key set that verified them is current (after a refresh, e.g. a rotation, they are verified again).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from authlib.oidc.discovery import OpenIDProviderMetadata, get_well_known_url
from joserfc import jws, jwt
from joserfc.errors import ClaimError, JoseError
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey, import_key
from joserfc.jwt import JWTClaimsRegistry

from gateway.auth import Principal
from gateway.auth.identity import TokenIdentity, header_value, resolve_principal, user_name, x_user
from gateway.auth.settings import AuthSettings, OIDCSettings, check_secure_url
from gateway.errors import BadRequest, GatewayError, Unauthenticated

log = structlog.get_logger(__name__)

# Discovery documents and key sets are small; refuse to buffer anything that is not.
_MAX_DOCUMENT_BYTES = 1 << 20
_ACCEPTED_TYP = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})
_KEY_TYPES_BY_ALG_PREFIX: dict[str, tuple[type[Key], ...]] = {
    "RS": (RSAKey,), "PS": (RSAKey,), "ES": (ECKey,), "Ed": (OKPKey,),
}


class IssuerUnavailable(GatewayError):
    """The identity provider's keys were never fetched, so no token can be verified (503, not 401)."""

    status, reason = 503, "ServiceUnavailable"


class _Rejected(Exception):
    """A token failed a check; the message is the reason for the debug log (never shown to the client)."""


class _FetchFailed(Exception):
    """Discovery or the JWKS fetch failed; the message is safe to log."""


@dataclass(frozen=True, slots=True)
class _KeySet:
    """One fetched JWKS: signing keys by kid. A refresh builds new key objects, so object identity tells
    whether a key belongs to the current set."""

    by_kid: Mapping[str, Key]
    keys: tuple[Key, ...]
    fetched_at: float


@dataclass(slots=True)
class AuthStats:
    """Counters for tests, benchmarks and /metrics."""

    signature_checks: int = 0
    verified: int = 0
    cache_hits: int = 0
    rejected: int = 0
    unavailable: int = 0
    jwks_fetches: int = 0
    jwks_fetch_failures: int = 0

    def snapshot(self) -> dict[str, int]:
        """The outcomes `gateway.metrics.Metrics.track_oidc` exports."""
        return {"verified": self.verified, "cached": self.cache_hits, "rejected": self.rejected,
                "unavailable": self.unavailable, "jwks_ok": self.jwks_fetches, "jwks_failed": self.jwks_fetch_failures}


@dataclass(slots=True)
class _CachedToken:
    identity: TokenIdentity
    expires_at: float
    key: Key


class JWKSCache:
    """The issuer's signing keys: discovery, fetch, rate-limited single-flight refresh."""

    def __init__(self, settings: OIDCSettings, *, session: Callable[[], aiohttp.ClientSession],
                 stats: AuthStats, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._session = session
        self._stats = stats
        self._monotonic = monotonic
        self._keys: _KeySet | None = None
        self._jwks_uri: str | None = None
        self._last_attempt: float | None = None  # when the last fetch started
        self._inflight: asyncio.Task[bool] | None = None
        self._inflight_started = 0.0
        self._background: set[asyncio.Task[None]] = set()
        self.last_error: str | None = None

    @property
    def loaded(self) -> bool:
        """Whether a key set was ever fetched."""
        return self._keys is not None

    def publishes(self, key: Key) -> bool:
        """Whether `key` belongs to the current key set (False after any refresh: tokens are then re-verified)."""
        return self._keys is not None and any(key is current for current in self._keys.keys)

    def _next_allowed_in(self) -> float:
        """Seconds until the rate allows the next fetch (0: now)."""
        if self._last_attempt is None:
            return 0.0
        return max(0.0, self._last_attempt + self._settings.jwksRefreshMinIntervalSeconds - self._monotonic())

    def _start_fetch(self) -> asyncio.Task[bool]:
        """Start the one fetch in flight (the caller checked that none is)."""
        self._last_attempt = self._inflight_started = self._monotonic()
        task = asyncio.get_running_loop().create_task(self._fetch_and_swap(), name="jwks-fetch")
        self._inflight = task

        def done(finished: asyncio.Task[bool]) -> None:
            if self._inflight is finished:
                self._inflight = None
            if not finished.cancelled():
                finished.exception()  # retrieved: every waiter may have gone (their requests timed out)

        task.add_done_callback(done)
        return task

    async def refresh(self, *, force: bool = False) -> bool:
        """Fetch the key set unless a fetch started too recently (`force`: regardless); a fetch in flight is
        joined, not repeated. True if the keys were replaced."""
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        if not force and self._next_allowed_in() > 0:
            return False
        return await asyncio.shield(self._start_fetch())

    async def refresh_after(self, arrived: float) -> None:
        """Return once a fetch that started at or after `arrived` (monotonic) has finished: join the one in
        flight if it started late enough, else wait for the rate to allow the next and share it."""
        while True:
            inflight = self._inflight
            if inflight is not None:
                started = self._inflight_started
                await asyncio.shield(inflight)
                if started >= arrived:
                    return
                continue
            if self._last_attempt is not None and self._last_attempt >= arrived:
                return  # one started after the token arrived, and is done
            wait = self._next_allowed_in()
            if wait > 0:
                # Then look again: another waiter may have woken first and started (or even finished) it.
                await asyncio.sleep(wait)
                continue
            await asyncio.shield(self._start_fetch())
            return

    async def _fetch_and_swap(self) -> bool:
        try:
            keys = await self._fetch()
        except _FetchFailed as e:
            self._stats.jwks_fetch_failures += 1
            self.last_error = str(e)
            self._jwks_uri = None  # rediscover next time: the issuer may have moved its key set
            log.warning("oidc key set fetch failed", issuer=self._settings.issuer, error=str(e),
                        keys_cached=self._keys is not None)
            return False
        self._keys = keys
        self.last_error = None
        log.info("oidc key set loaded", issuer=self._settings.issuer, keys=len(keys.keys))
        return True

    async def key_for(self, kid: str | None, alg: str) -> Key:
        """The key to verify a token with header (kid, alg); raise `_Rejected` or `IssuerUnavailable`."""
        if self._keys is None:
            await self.refresh()
            if self._keys is None:
                raise IssuerUnavailable("the identity provider cannot be reached; try again later",
                                        headers={"Retry-After": str(max(1, math.ceil(
                                            self._settings.jwksRefreshMinIntervalSeconds)))})
        key = self._pick(self._keys, kid, alg)
        if key is None:
            # Perhaps published after the last fetch: wait for the next one (bounded by the rate limit).
            await self.refresh_after(self._monotonic())
            key = self._pick(self._keys, kid, alg)
            if key is None:
                raise _Rejected("no published key matches the token's kid and alg")
        elif (self._monotonic() - self._keys.fetched_at >= self._settings.jwksMaxAgeSeconds
              and self._inflight is None and self._next_allowed_in() == 0):
            self._refresh_in_background()
        return key

    def _refresh_in_background(self) -> None:
        task = asyncio.get_running_loop().create_task(self._quiet_refresh())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _quiet_refresh(self) -> None:
        await self.refresh()

    async def close(self) -> None:
        """Cancel background refreshes and a fetch in flight."""
        tasks = [*self._background, *([self._inflight] if self._inflight is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def _pick(keys: _KeySet, kid: str | None, alg: str) -> Key | None:
        wanted = _KEY_TYPES_BY_ALG_PREFIX.get(alg[:2], ())
        if kid is not None:
            candidates: list[Key] = [keys.by_kid[kid]] if kid in keys.by_kid else []
        else:
            candidates = [k for k in keys.keys if isinstance(k, wanted)]
            if len(candidates) != 1:  # without a kid, only an unambiguous key set is usable
                return None
        for key in candidates:
            if isinstance(key, wanted) and key.alg in (None, alg):
                return key
        return None

    async def _fetch(self) -> _KeySet:
        if self._jwks_uri is None:
            self._jwks_uri = await self._discover()
        document = await self._get_json(self._jwks_uri, what="key set")
        raw_keys = document.get("keys")
        if not isinstance(raw_keys, list):
            raise _FetchFailed("key set has no 'keys' list")
        by_kid: dict[str, Key] = {}
        keys: list[Key] = []
        for raw in raw_keys:
            if not isinstance(raw, dict) or raw.get("use", "sig") != "sig":
                continue
            try:
                key = _import_public_key(raw)
            except (JoseError, ValueError, TypeError, KeyError):
                continue  # RFC 7517 §5: ignore keys we cannot use rather than failing the whole set
            keys.append(key)
            if isinstance(raw.get("kid"), str):
                by_kid.setdefault(raw["kid"], key)
        if not keys:
            raise _FetchFailed("key set holds no usable signing key")
        self._stats.jwks_fetches += 1
        return _KeySet(by_kid=by_kid, keys=tuple(keys), fetched_at=self._monotonic())

    async def _discover(self) -> str:
        issuer = self._settings.issuer
        document = await self._get_json(get_well_known_url(issuer, external=True), what="discovery document")
        metadata = OpenIDProviderMetadata(document)
        try:
            metadata.validate_issuer()
            metadata.validate_jwks_uri()
        except ValueError as e:
            raise _FetchFailed(f"invalid discovery document: {e}") from e
        if metadata["issuer"] != issuer:
            raise _FetchFailed("discovery document names another issuer")
        jwks_uri = metadata["jwks_uri"]
        try:
            return check_secure_url(jwks_uri, what="jwks_uri")
        except ValueError as e:
            raise _FetchFailed(str(e)) from e

    async def _get_json(self, url: str, *, what: str) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=self._settings.httpTimeoutSeconds)
        try:
            async with self._session().get(url, timeout=timeout, allow_redirects=False,
                                           headers={"Accept": "application/json"}) as response:
                if response.status != 200:
                    raise _FetchFailed(f"{what}: HTTP {response.status}")
                body = await response.content.read(_MAX_DOCUMENT_BYTES + 1)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise _FetchFailed(f"{what}: {type(e).__name__}") from e
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise _FetchFailed(f"{what}: larger than {_MAX_DOCUMENT_BYTES} bytes")
        try:
            document = json.loads(body)
        except ValueError as e:
            raise _FetchFailed(f"{what}: not JSON") from e
        if not isinstance(document, dict):
            raise _FetchFailed(f"{what}: not a JSON object")
        return document


def _import_public_key(raw: dict[str, Any]) -> Key:
    """Import only the public half of a JWK (an issuer that leaks private parts must not make us hold them)."""
    kty = str(raw.get("kty"))
    public_fields = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}.get(kty)
    if public_fields is None:
        raise ValueError("unsupported key type")
    data: dict[str, str] = {name: str(raw[name]) for name in public_fields}
    data["kty"] = kty
    for name in ("kid", "alg", "use"):
        if isinstance(raw.get(name), str):
            data[name] = raw[name]
    return import_key(data, kty)  # type: ignore[call-overload, no-any-return]


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name; a dotted name reaches into nested objects when no top-level key has that name."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _bearer_token(headers: Mapping[str, str]) -> str | None:
    authorization = header_value(headers, "Authorization")
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


@dataclass
class _TokenCache:
    """Bounded LRU of verified tokens by SHA-256 digest."""

    capacity: int
    entries: OrderedDict[bytes, _CachedToken] = field(default_factory=OrderedDict)

    def get(self, digest: bytes) -> _CachedToken | None:
        entry = self.entries.get(digest)
        if entry is not None:
            self.entries.move_to_end(digest)
        return entry

    def put(self, digest: bytes, entry: _CachedToken) -> None:
        if self.capacity <= 0:
            return
        self.entries[digest] = entry
        self.entries.move_to_end(digest)
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)

    def drop(self, digest: bytes) -> None:
        self.entries.pop(digest, None)


class OIDCAuthenticator:
    """Bearer-token authenticator for `auth.mode: oidc`."""

    def __init__(self, settings: AuthSettings, *, session: aiohttp.ClientSession | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if settings.oidc is None:
            raise ValueError("auth.oidc is required for the OIDC authenticator")
        self._settings = settings
        self._oidc = settings.oidc
        self._clock = clock
        self._own_session = session is None
        self._http: aiohttp.ClientSession | None = session
        self.stats = AuthStats()
        self.keys = JWKSCache(self._oidc, session=self._client_session, stats=self.stats, monotonic=monotonic)
        self._cache = _TokenCache(capacity=self._oidc.tokenCacheSize)

    def _client_session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            ssl_context: ssl.SSLContext | bool = True
            if self._oidc.caFile:
                ssl_context = ssl.create_default_context(cafile=self._oidc.caFile)
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context, limit=4))
            self._own_session = True
        return self._http

    async def start(self) -> None:
        """Open the HTTP session and try a first key fetch (failure is logged; requests then answer 503)."""
        self._client_session()
        await self.keys.refresh(force=True)

    async def close(self) -> None:
        """Stop background refreshes and close the session if we opened it."""
        await self.keys.close()
        if self._own_session and self._http is not None:
            await self._http.close()
        self._http = None

    def health(self) -> dict[str, Any]:
        """For /api/ping: whether keys are loaded and the last fetch error (no secrets)."""
        return {"issuer": self._oidc.issuer, "keysLoaded": self.keys.loaded, "lastError": self.keys.last_error}

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """Verify the bearer token, then apply the X-User rules."""
        identity = await self.verify(_bearer_token(headers))
        return resolve_principal(identity, x_user=x_user(headers), settings=self._settings)

    async def verify(self, token: str | None) -> TokenIdentity:
        """The identity in a valid token; `Unauthenticated` otherwise (`IssuerUnavailable` on a cold start)."""
        try:
            if token is None:
                raise _Rejected("no bearer token")
            if len(token) > self._oidc.maxTokenBytes:
                raise _Rejected("token too long")
            digest = hashlib.sha256(token.encode()).digest()
            cached = self._cache.get(digest)
            if cached is not None:
                if cached.expires_at > self._clock() and self.keys.publishes(cached.key):
                    self.stats.cache_hits += 1
                    return cached.identity
                self._cache.drop(digest)
            identity, expires_at, key = await self._verify_signed(token)
        except _Rejected as e:
            self.stats.rejected += 1
            log.debug("bearer token rejected", reason=str(e))
            raise Unauthenticated() from None
        except IssuerUnavailable:
            self.stats.unavailable += 1
            raise
        self.stats.verified += 1
        self._cache.put(digest, _CachedToken(identity=identity, expires_at=expires_at, key=key))
        return identity

    async def _verify_signed(self, token: str) -> tuple[TokenIdentity, float, Key]:
        try:
            header = jws.extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, TypeError, UnicodeError) as e:
            raise _Rejected("malformed token") from e
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._oidc.algorithms:
            raise _Rejected("algorithm not allowed")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP):
            raise _Rejected("token type not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _Rejected("malformed kid")
        key = await self.keys.key_for(kid, alg)

        self.stats.signature_checks += 1
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
        except (JoseError, ValueError, TypeError) as e:
            raise _Rejected(f"signature not verified ({type(e).__name__})") from e

        registry = JWTClaimsRegistry(
            now=lambda: int(self._clock()),
            leeway=int(self._oidc.leewaySeconds),
            iss={"essential": True, "value": self._oidc.issuer},
            aud={"essential": True, "values": self._oidc.audiences},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except ClaimError as e:
            # joserfc's messages name the claim, never its value.
            raise _Rejected(f"claims not accepted ({e.error}: {e.description})") from e
        except (TypeError, ValueError) as e:
            raise _Rejected("claims not accepted (malformed)") from e

        user = _claim(claims, self._oidc.usernameClaim)
        if not isinstance(user, str) or not user.strip():
            raise _Rejected("username claim missing or not a string")
        try:
            user_name(user.strip(), source="the token's username claim")
        except BadRequest as e:
            raise _Rejected(e.message) from e
        raw_groups = _claim(claims, self._oidc.groupsClaim)
        if isinstance(raw_groups, str):
            raw_groups = [raw_groups]
        groups = frozenset(g for g in raw_groups if isinstance(g, str)) if isinstance(raw_groups, list) \
            else frozenset()
        return TokenIdentity(user=user.strip(), groups=groups), float(claims["exp"]), key
