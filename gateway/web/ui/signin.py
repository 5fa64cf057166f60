"""The dashboard's OIDC sign-in: authorization code flow with PKCE (RFC 7636) against the API's issuer.

Contract:
- `CodeFlow(settings, verifier)`: `await begin(redirect_uri) -> (authorization URL, pending)`: `pending`
  (state, nonce, PKCE code_verifier) is what the browser keeps, sealed, in the sign-in cookie until it
  comes back; `await finish(callback_url, pending, redirect_uri) -> TokenIdentity` checks the `state`,
  exchanges the code (with the `code_verifier`) at the token endpoint over aiohttp, verifies the ID token
  with the gateway's own verifier (`OIDCAuthenticator.verify`: signature by the issuer's published keys,
  `iss`, `aud` = `ui.clientId`, `exp`, ...) and then its `nonce`. `close()` closes its HTTP session.
- The protocol pieces are authlib's: `generate_token` for state, nonce and verifier,
  `create_s256_code_challenge`, `prepare_grant_uri`, `prepare_token_request`,
  `parse_authorization_code_response`, `OpenIDProviderMetadata` for the discovery document.
- Answers: the issuer refusing (an `error` on the callback, a token endpoint error, a bad ID token or
  nonce) is 401 with the issuer's error code (never its description, never a token); a callback with no
  sign-in under way or a mismatching state is 400; an issuer that cannot be reached or answers nonsense
  is 503 `IssuerUnavailable` / 502. Tokens are never logged, stored or given to the page: the access and
  refresh tokens are dropped, the ID token only proves who signed in.
"""

from __future__ import annotations

import hmac
import json
import ssl
import time
from typing import Any

import aiohttp
import structlog
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.errors import MismatchingStateException, MissingCodeException
from authlib.oauth2.rfc6749.parameters import (
    parse_authorization_code_response,
    prepare_grant_uri,
    prepare_token_request,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.discovery import OpenIDProviderMetadata, get_well_known_url
from joserfc import jws
from joserfc.errors import JoseError

from gateway.auth.identity import TokenIdentity
from gateway.auth.oidc import IssuerUnavailable, OIDCAuthenticator
from gateway.auth.settings import check_secure_url
from gateway.config import Settings
from gateway.errors import BadRequest, ClusterError, Unauthenticated

log = structlog.get_logger(__name__)

_MAX_ANSWER_BYTES = 1 << 20
# Discovery is re-read at most this often (endpoints rarely move; a failure is retried at the next sign-in).
_METADATA_SECONDS = 3600.0
_VERIFIER_CHARS = 64  # RFC 7636: 43 to 128


class SignInRefused(Unauthenticated):
    """The issuer did not let the user in, or what it gave back does not check out."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class IssuerFailed(ClusterError):
    """The issuer answered something that is not an OAuth answer (502)."""


class CodeFlow:
    """Authorization code + PKCE against the configured issuer (see module docstring)."""

    def __init__(self, settings: Settings, verifier: OIDCAuthenticator) -> None:
        if settings.auth.oidc is None or settings.ui.client_id is None:
            raise ValueError("the code flow needs auth.oidc and ui.clientId")
        self._oidc = settings.auth.oidc
        self._ui = settings.ui
        self._client_id = settings.ui.client_id
        self._verifier = verifier
        self._secret: str | None = None
        if settings.ui.client_secret_file:
            with open(settings.ui.client_secret_file, encoding="utf-8") as handle:
                self._secret = handle.read().strip()
        self._http: aiohttp.ClientSession | None = None
        self._metadata: OpenIDProviderMetadata | None = None
        self._metadata_at = 0.0

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            context: ssl.SSLContext | bool = True
            if self._oidc.caFile:
                context = ssl.create_default_context(cafile=self._oidc.caFile)
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=8),
                                               timeout=aiohttp.ClientTimeout(total=self._oidc.httpTimeoutSeconds))
        return self._http

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def begin(self, redirect_uri: str) -> tuple[str, dict[str, str]]:
        """The issuer's authorization URL for a new sign-in, and what the browser keeps until it returns."""
        metadata = await self._provider()
        pending = {"state": generate_token(32), "nonce": generate_token(32),
                   "verifier": generate_token(_VERIFIER_CHARS)}
        url = prepare_grant_uri(metadata["authorization_endpoint"], self._client_id, "code",
                                redirect_uri=redirect_uri, scope=" ".join(self._ui.scopes), state=pending["state"],
                                nonce=pending["nonce"], code_challenge=create_s256_code_challenge(pending["verifier"]),
                                code_challenge_method="S256")
        return url, pending

    async def finish(self, callback_url: str, pending: dict[str, Any], *, redirect_uri: str,
                     query: dict[str, str]) -> TokenIdentity:
        """Check the callback, exchange its code and verify the ID token (see module docstring)."""
        if "error" in query:
            error = query["error"][:64]
            log.info("sign-in refused by the issuer", error=error)
            raise SignInRefused(f"the identity provider did not sign you in ({error}); start again at /ui/login")
        expected = str(pending.get("state") or "")
        try:
            params = parse_authorization_code_response(callback_url)
        except MissingCodeException as e:
            raise BadRequest("the identity provider's answer has no code; start again at /ui/login") from e
        except MismatchingStateException as e:  # not raised without a state to compare, kept for safety
            raise BadRequest("this sign-in answer belongs to another sign-in; start again at /ui/login") from e
        if not expected or not hmac.compare_digest(str(params.get("state") or "").encode(), expected.encode()):
            raise BadRequest("this sign-in answer belongs to another sign-in (state mismatch); start again at "
                             "/ui/login")
        tokens = await self._exchange(str(params["code"]), str(pending.get("verifier") or ""), redirect_uri)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise IssuerFailed("the identity provider's token answer has no ID token (is 'openid' among ui.scopes?)")
        identity = await self._verifier.verify(id_token)  # Unauthenticated when it does not check out
        nonce = _verified_claims(id_token).get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), str(pending.get("nonce")).encode()):
            raise SignInRefused("the ID token was not issued for this sign-in (nonce); start again at /ui/login")
        return identity

    async def _exchange(self, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        metadata = await self._provider()
        body = prepare_token_request("authorization_code", code=code, redirect_uri=redirect_uri,
                                     client_id=self._client_id, code_verifier=verifier)
        auth = aiohttp.BasicAuth(self._client_id, self._secret) if self._secret else None
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        try:
            async with self._session().post(metadata["token_endpoint"], data=body.encode(), headers=headers,
                                            auth=auth, allow_redirects=False) as response:
                raw = await response.content.read(_MAX_ANSWER_BYTES)
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise IssuerUnavailable("the identity provider's token endpoint cannot be reached; try again") from e
        answer = _json_object(raw)
        if status != 200:
            error = str(answer.get("error") or f"HTTP {status}")[:64]
            log.info("token endpoint refused the code", error=error, status=status)
            raise SignInRefused(f"the identity provider refused the sign-in ({error}); start again at /ui/login")
        return answer

    async def _provider(self) -> OpenIDProviderMetadata:
        """The issuer's discovery document, validated (authorization and token endpoints over https)."""
        now = time.monotonic()
        if self._metadata is not None and now - self._metadata_at < _METADATA_SECONDS:
            return self._metadata
        url = get_well_known_url(self._oidc.issuer, external=True)
        try:
            async with self._session().get(url, allow_redirects=False,
                                           headers={"Accept": "application/json"}) as response:
                raw = await response.content.read(_MAX_ANSWER_BYTES)
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise IssuerUnavailable("the identity provider cannot be reached; try again later") from e
        if status != 200:
            raise IssuerUnavailable(f"the identity provider's discovery document answered HTTP {status}")
        metadata = OpenIDProviderMetadata(_json_object(raw))
        try:
            metadata.validate_issuer()
            metadata.validate_authorization_endpoint()
            metadata.validate_token_endpoint()
            if metadata["issuer"] != self._oidc.issuer:
                raise ValueError("the discovery document names another issuer")
            for name in ("authorization_endpoint", "token_endpoint"):
                check_secure_url(str(metadata[name]), what=name)
        except (ValueError, KeyError) as e:
            raise IssuerFailed(f"the identity provider's discovery document is not usable: {e}") from e
        self._metadata, self._metadata_at = metadata, now
        return metadata


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise IssuerFailed("the identity provider answered something that is not JSON") from e
    if not isinstance(value, dict):
        raise IssuerFailed("the identity provider answered something that is not a JSON object")
    return value


def _verified_claims(token: str) -> dict[str, Any]:
    """The claims of a token the verifier already accepted (so reading them unverified here is safe)."""
    try:
        claims = json.loads(jws.extract_compact(token.encode("ascii")).payload)
    except (JoseError, ValueError, UnicodeError) as e:
        raise SignInRefused("the ID token cannot be read") from e
    return claims if isinstance(claims, dict) else {}


__all__ = ["CodeFlow", "IssuerFailed", "SignInRefused"]
