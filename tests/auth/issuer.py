"""A local OIDC issuer for tests and benchmarks: real HTTP on loopback, real keys, really signed tokens.

Serves `{issuer}/.well-known/openid-configuration` and `{issuer}/jwks`, counts every request, and mints
tokens with arbitrary claims and headers. Keys (RSA and EC) can be added, rotated and removed; the server
can be stopped and started again on the same port to simulate "issuer down".

It also signs browsers in, as an identity provider does for a web application: the authorization code
flow with PKCE (RFC 7636, S256 only). `register_client(client_id, redirect_uri)` first; then
`GET {issuer}/auth?response_type=code&client_id&redirect_uri&state&nonce&code_challenge&
code_challenge_method=S256` shows a sign-in form (user name; groups from `issuer.groups`), whose POST
redirects to `redirect_uri?code&state`; `POST {issuer}/token` (grant_type=authorization_code, code,
redirect_uri, client_id, code_verifier) answers `{id_token, access_token, token_type, expires_in}` once per
code, the ID token carrying `aud` = client id, `nonce` and `azp`; anything wrong is the OAuth error answer
(`invalid_grant`, `invalid_client`, `invalid_request`).

    async with LocalIssuer() as issuer:
        token = issuer.mint(user="alice", groups=["team-a"])
        issuer.rotate("EC")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal, Self
from urllib.parse import urlencode

from aiohttp import web
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey

KeyKind = Literal["RSA", "EC"]
DEFAULT_AUDIENCE = "clever-gateway"


def b64url(data: bytes) -> str:
    """Base64url without padding (JWS segments)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


# RSA generation is slow on a shared 2-core box; the n-th key of a kind is the same in every issuer of
# this process, which is harmless since every issuer (and verifier) is independent.
_KEY_POOL: dict[tuple[str, int], Key] = {}


def _new_key(kind: KeyKind) -> Key:
    return RSAKey.generate_key(2048) if kind == "RSA" else ECKey.generate_key("P-256")


def _pooled_key(kind: KeyKind, index: int) -> Key:
    if (kind, index) not in _KEY_POOL:
        _KEY_POOL[(kind, index)] = _new_key(kind)
    return _KEY_POOL[(kind, index)]


class LocalIssuer:
    """An OIDC issuer on 127.0.0.1 (see module docstring)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, path: str = "/realms/clever",
                 audience: str = DEFAULT_AUDIENCE, kinds: tuple[KeyKind, ...] = ("RSA", "EC"),
                 pooled_keys: bool = True) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.audience = audience
        self.requests: Counter[str] = Counter()
        self.jwks_status = 200
        self.discovery_overrides: dict[str, Any] = {}
        self._private: dict[str, Key] = {}
        self._order: list[str] = []
        self._counter = 0
        self._pooled_keys = pooled_keys  # False: keys of its own (e.g. an attacker's issuer)
        self._runner: web.AppRunner | None = None
        self.clients: dict[str, set[str]] = {}
        self.groups: dict[str, list[str]] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_errors: Counter[str] = Counter()
        self.id_token_overrides: dict[str, Any] = {}  # claims to put into (or, None, take out of) ID tokens
        for kind in kinds:
            self.add_key(kind)

    # --- server -------------------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The issuer URL (what tokens carry in `iss`)."""
        return f"http://{self.host}:{self.port}{self.path}"

    @property
    def jwks_requests(self) -> int:
        """How many times the key set was fetched."""
        return self.requests["jwks"]

    async def start(self) -> None:
        """Listen (on the same port as before when restarted)."""
        app = web.Application()
        app.router.add_get(f"{self.path}/.well-known/openid-configuration", self._discovery)
        app.router.add_get(f"{self.path}/jwks", self._jwks)
        app.router.add_get(f"{self.path}/auth", self._authorize)
        app.router.add_post(f"{self.path}/auth", self._sign_in)
        app.router.add_post(f"{self.path}/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening: connections are refused until `start()`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _discovery(self, request: web.Request) -> web.Response:
        self.requests["discovery"] += 1
        document = {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/jwks",
            "authorization_endpoint": f"{self.issuer}/auth",
            "token_endpoint": f"{self.issuer}/token",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            **self.discovery_overrides,
        }
        return web.json_response(document)

    async def _jwks(self, request: web.Request) -> web.Response:
        self.requests["jwks"] += 1
        if self.jwks_status != 200:
            return web.json_response({"error": "unavailable"}, status=self.jwks_status)
        return web.json_response(self.public_jwks())

    # --- the authorization code flow (PKCE) ---------------------------------------------------------

    def register_client(self, client_id: str, redirect_uri: str) -> None:
        """Allow a client to sign users in and be sent back to `redirect_uri`."""
        self.clients.setdefault(client_id, set()).add(redirect_uri)

    def _authorization_problem(self, params: Mapping[str, str]) -> str | None:
        if params.get("response_type") != "code":
            return "unsupported_response_type"
        if params.get("redirect_uri") not in self.clients.get(params.get("client_id", ""), set()):
            return "unauthorized_client"
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return "invalid_request"  # PKCE is required, S256 only
        if "openid" not in params.get("scope", "").split():
            return "invalid_scope"
        return None

    async def _authorize(self, request: web.Request) -> web.Response:
        self.requests["authorize"] += 1
        problem = self._authorization_problem(request.query)
        if problem is not None:
            # Never redirect to an unregistered redirect_uri: the error is shown here.
            return web.Response(status=400, text=f"authorization request refused: {problem}")
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in request.query.items())
        page = (f"<!doctype html><title>Local issuer</title><h1>Sign in to the local issuer</h1>"
                f'<form method="post" action="{self.path}/auth">{hidden}'
                '<label>User <input id="issuer-user" name="user" autofocus></label>'
                '<button id="issuer-submit" type="submit">Sign in</button></form>')
        return web.Response(text=page, content_type="text/html")

    async def _sign_in(self, request: web.Request) -> web.Response:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        problem = self._authorization_problem(params)
        user = params.get("user", "").strip()
        if problem is not None or not user:
            return web.Response(status=400, text=f"sign-in refused: {problem or 'no user'}")
        code = secrets.token_urlsafe(24)
        self.codes[code] = {"client_id": params["client_id"], "redirect_uri": params["redirect_uri"],
                            "challenge": params["code_challenge"], "nonce": params.get("nonce"), "user": user,
                            "issued": time.time()}
        query = urlencode({"code": code, "state": params.get("state", "")})
        raise web.HTTPFound(f"{params['redirect_uri']}?{query}")

    async def _token(self, request: web.Request) -> web.Response:
        self.requests["token"] += 1
        form = {k: str(v) for k, v in (await request.post()).items()}

        def refuse(error: str, status: int = 400) -> web.Response:
            self.token_errors[error] += 1
            return web.json_response({"error": error}, status=status)

        if form.get("grant_type") != "authorization_code":
            return refuse("unsupported_grant_type")
        grant = self.codes.pop(form.get("code", ""), None)  # one use only
        if grant is None or time.time() - grant["issued"] > 600:
            return refuse("invalid_grant")
        if form.get("client_id") != grant["client_id"]:
            return refuse("invalid_client", 401)
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return refuse("invalid_grant")
        verifier = form.get("code_verifier", "")
        if not 43 <= len(verifier) <= 128 or not hmac.compare_digest(
                create_s256_code_challenge(verifier), grant["challenge"]):
            return refuse("invalid_grant")
        user = grant["user"]
        claims = self.claims(user=user, groups=self.groups.get(user, []), aud=grant["client_id"],
                             azp=grant["client_id"], nonce=grant["nonce"])
        claims = {k: v for k, v in {**claims, **self.id_token_overrides}.items() if v is not None}
        return web.json_response({"id_token": self.mint(claims=claims), "access_token": self.mint(user=user),
                                  "token_type": "Bearer", "expires_in": 300})

    # --- keys ---------------------------------------------------------------------------------------

    def public_jwks(self) -> dict[str, Any]:
        """The published key set (public halves only)."""
        keys = []
        for kid in self._order:
            key = self._private[kid]
            keys.append({**key.as_dict(private=False), "kid": kid, "use": "sig", "alg": self.alg_for(kid)})
        return {"keys": keys}

    def add_key(self, kind: KeyKind = "RSA", *, kid: str | None = None) -> str:
        """Generate and publish a new key; return its kid."""
        self._counter += 1
        kid = kid or f"{kind.lower()}-{self._counter}"
        key = _pooled_key(kind, self._counter) if self._pooled_keys else _new_key(kind)
        self._private[kid] = key
        self._order.append(kid)
        return kid

    def remove_key(self, kid: str) -> None:
        """Stop publishing a key (its tokens must stop verifying)."""
        self._order.remove(kid)

    def rotate(self, kind: KeyKind = "RSA") -> str:
        """Replace every published key with one new key; return the new kid."""
        self._order.clear()
        return self.add_key(kind)

    def kid_of(self, kind: KeyKind) -> str:
        """The first published kid of this kind."""
        for kid in self._order:
            if isinstance(self._private[kid], RSAKey if kind == "RSA" else ECKey):
                return kid
        raise KeyError(kind)

    def alg_for(self, kid: str) -> str:
        """The algorithm a key signs with."""
        return "RS256" if isinstance(self._private[kid], RSAKey) else "ES256"

    def private_key(self, kid: str) -> Key:
        """The private key behind a kid (published or not)."""
        return self._private[kid]

    def public_pem(self, kid: str) -> bytes:
        """The public key as PEM (what an attacker uses as an HMAC secret)."""
        key = self._private[kid]
        assert isinstance(key, (RSAKey, ECKey))
        return key.as_pem(private=False)

    # --- tokens -------------------------------------------------------------------------------------

    def claims(self, *, user: str = "alice", groups: list[str] | None = None, lifetime: int = 300,
               **overrides: Any) -> dict[str, Any]:
        """Standard claims for `user`; overrides replace (value None removes the claim)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": f"sub-{user}", "preferred_username": user,
            "groups": groups if groups is not None else [], "iat": now, "nbf": now, "exp": now + lifetime,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(self, *, kind: KeyKind | None = None, kid: str | None = None, alg: str | None = None,
             header: dict[str, Any] | None = None, signing_key: Key | None = None,
             claims: dict[str, Any] | None = None, **claim_args: Any) -> str:
        """A signed token. By default signed by the first published RSA key with its kid in the header."""
        kid = kid or (self.kid_of(kind) if kind else self._order[0])
        key = signing_key or self._private[kid]
        alg = alg or self.alg_for(kid)
        full_header = {"alg": alg, "kid": kid, "typ": "JWT", **(header or {})}
        full_header = {k: v for k, v in full_header.items() if v is not None}
        body = claims if claims is not None else self.claims(**claim_args)
        return jwt.encode(full_header, body, key, algorithms=[alg])

    def mint_raw_rs256(self, header: dict[str, Any], claims: dict[str, Any] | None = None, *,
                       kid: str | None = None) -> str:
        """RS256-sign any header as is (joserfc would refuse e.g. unknown `crit` entries when signing)."""
        kid = kid or self.kid_of("RSA")
        private = self._private[kid].private_key
        assert isinstance(private, rsa.RSAPrivateKey)
        signing_input = f"{_segment({'alg': 'RS256', 'kid': kid, **header})}.{_segment(claims or self.claims())}"
        signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def mint_unsigned(self, **claim_args: Any) -> str:
        """`alg: none` — no signature at all."""
        return f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(self.claims(**claim_args))}."

    def mint_hmac_with_public_key(self, kid: str, *, secret: bytes | None = None, **claim_args: Any) -> str:
        """HS256 signed with the issuer's *public* key as the secret (the classic key-confusion attack)."""
        signing_input = f"{_segment({'alg': 'HS256', 'kid': kid, 'typ': 'JWT'})}.{_segment(self.claims(**claim_args))}"
        mac = hmac.new(secret if secret is not None else self.public_pem(kid), signing_input.encode(),
                       hashlib.sha256).digest()
        return f"{signing_input}.{b64url(mac)}"
