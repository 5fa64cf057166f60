"""Dashboard sessions: who is signed in, in an encrypted and authenticated cookie; CSRF protection.

Contract:
- `CookieSealer(keys)`: `seal(payload) -> str` and `open(token, max_age=) -> dict | None`. Fernet (AES-CBC +
  HMAC-SHA256 over a timestamp) under a MultiFernet: the first key seals, every key opens (rotation). A
  cookie that does not open (altered, sealed under another key, older than `max_age`) is no cookie.
- `load_keys(settings)`: the keys of `ui.sessionKeyFile` (one Fernet key a line; `#` comments), or one random
  key when no file is configured (allowed only with `auth.mode: none`, see `UiSettings`).
- `Sessions(settings, sealer)`: the two cookies, both `Path=/ui; HttpOnly; SameSite=Lax`, and `Secure`
  unless the dashboard is reached over http on a loopback host (`Secure` follows `ui.publicUrl` when set):
  - `cg_session`: the signed-in user (`user`, `groups`, the auth mode it was made under, a CSRF token),
    for `ui.sessionSeconds`. No token is kept: the gateway checked the ID token once, at sign-in, and the
    session stands for that check. Admin rights are decided again on every request from the config.
  - `cg_signin`: a sign-in under way (OIDC `state`, `nonce`, PKCE `code_verifier`, the page to return to;
    or the CSRF token of the name prompt), for `ui.loginSeconds`.
  SameSite=Lax: the issuer's redirect back to /ui/callback is a top-level GET from another site and must
  carry `cg_signin`; cross-site POSTs, DELETEs and sub-requests carry neither cookie.
- CSRF: each session has a random token that the page's script reads from `GET /ui/api/session` (only the
  dashboard's own origin can read that answer: the cookie is HttpOnly and no CORS header is ever sent).
  `check_write(request, session)` requires it back in `X-CSRF-Token` (or the form field `csrfToken`),
  compared in constant time, and, when the browser sends `Origin`, that origin to be the dashboard's own.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import structlog
from aiohttp import web
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from gateway.auth import Principal
from gateway.auth.settings import is_loopback_host
from gateway.config import ConfigError, Settings
from gateway.errors import Forbidden, GatewayError

log = structlog.get_logger(__name__)

SESSION_COOKIE = "cg_session"
SIGNIN_COOKIE = "cg_signin"
COOKIE_PATH = "/ui"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrfToken"
# Browsers keep cookies up to 4096 bytes (name and attributes included).
_MAX_COOKIE_BYTES = 3900


class SignInRequired(GatewayError):
    """No (valid) dashboard session: sign in at /ui/login."""

    status, reason = 401, "Unauthorized"

    def __init__(self, message: str = "sign in first: /ui/login") -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Cookie realm="clever-gateway" '
                                                              'form-action="/ui/login"'})


def load_keys(settings: Settings) -> list[bytes]:
    """The session keys (see module docstring); ConfigError naming the key when the file is unusable."""
    path = settings.ui.session_key_file
    if path is None:
        log.warning("ui.sessionKeyFile not set: dashboard sessions use a random key of this process "
                    "(they end with it and other replicas do not know them)")
        return [Fernet.generate_key()]
    try:
        lines = Path(path).read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeError) as e:
        raise ConfigError(f"ui.sessionKeyFile: {path}: cannot be read ({e})") from e
    keys = [line.strip().encode() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except ValueError as e:
            raise ConfigError(f"ui.sessionKeyFile: {path}: key {number} is not a Fernet key (32 url-safe "
                              "base64-encoded bytes; make one with `python3 -c 'import base64, os; "
                              "print(base64.urlsafe_b64encode(os.urandom(32)).decode())'`)") from e
    if not keys:
        raise ConfigError(f"ui.sessionKeyFile: {path}: holds no key")
    return keys


class CookieSealer:
    """Encrypts and authenticates cookie payloads (see module docstring)."""

    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def seal(self, payload: dict[str, Any]) -> str:
        """The payload, encrypted and authenticated, as a cookie-safe string."""
        return self._fernet.encrypt(orjson.dumps(payload)).decode("ascii")

    def open(self, token: str | None, *, max_age: int) -> dict[str, Any] | None:
        """The payload of a token sealed with one of the keys at most `max_age` seconds ago, else None."""
        if not token:
            return None
        try:
            data = orjson.loads(self._fernet.decrypt(token.encode("ascii"), ttl=max_age))
        except (InvalidToken, UnicodeError, orjson.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in dashboard user."""

    user: str
    groups: frozenset[str]
    csrf: str


class Sessions:
    """The dashboard's cookies (see module docstring)."""

    def __init__(self, settings: Settings, sealer: CookieSealer) -> None:
        self._settings = settings
        self._ui = settings.ui
        self._sealer = sealer
        self._mode = settings.auth.mode

    # ----- the session

    def current(self, request: web.Request) -> Session | None:
        """The request's session, if it carries a valid one made under the current auth mode."""
        data = self._sealer.open(request.cookies.get(SESSION_COOKIE), max_age=self._ui.session_seconds)
        if data is None or data.get("m") != self._mode:
            return None
        user, groups, csrf = data.get("u"), data.get("g"), data.get("c")
        if not isinstance(user, str) or not isinstance(csrf, str) or not isinstance(groups, list):
            return None
        return Session(user=user, groups=frozenset(g for g in groups if isinstance(g, str)), csrf=csrf)

    def required(self, request: web.Request) -> Session:
        """The request's session; SignInRequired (401) without one."""
        session = self.current(request)
        if session is None:
            raise SignInRequired()
        return session

    def principal(self, session: Session) -> Principal:
        """Who the session acts as; admin rights as the configuration says now."""
        return Principal(user=session.user, groups=session.groups,
                         is_admin=self._settings.auth.is_admin(user=session.user, groups=session.groups))

    def start(self, request: web.Request, response: web.StreamResponse, *, user: str,
              groups: frozenset[str]) -> None:
        """Sign `user` in on `response` (and end the sign-in under way)."""
        payload = {"u": user, "g": sorted(groups), "m": self._mode, "c": secrets.token_urlsafe(32)}
        value = self._sealer.seal(payload)
        if len(value) + len(SESSION_COOKIE) > _MAX_COOKIE_BYTES:
            raise Forbidden(f"the identity provider gives user {user!r} too many groups ({len(groups)}) to keep in "
                            "a session cookie; ask for a token with fewer groups (a narrower groups claim)")
        self._set(request, response, SESSION_COOKIE, value, max_age=self._ui.session_seconds)
        self.forget(response, SIGNIN_COOKIE)

    def end(self, response: web.StreamResponse) -> None:
        """Sign out on `response`."""
        self.forget(response, SESSION_COOKIE)

    # ----- a sign-in under way

    def begin_signin(self, request: web.Request, response: web.StreamResponse, pending: dict[str, Any]) -> None:
        """Remember a sign-in under way (OIDC state/nonce/verifier, or the prompt's CSRF token)."""
        self._set(request, response, SIGNIN_COOKIE, self._sealer.seal({**pending, "m": self._mode}),
                  max_age=self._ui.login_seconds)

    def pending_signin(self, request: web.Request) -> dict[str, Any] | None:
        """The sign-in under way in this browser, if any (and not older than `ui.loginSeconds`)."""
        data = self._sealer.open(request.cookies.get(SIGNIN_COOKIE), max_age=self._ui.login_seconds)
        return data if data is not None and data.get("m") == self._mode else None

    # ----- CSRF

    def check_write(self, request: web.Request, session: Session, *, form_token: str | None = None) -> None:
        """A state-changing request must carry the session's CSRF token and come from our own origin."""
        check_origin(request, self.origin(request))
        sent = request.headers.get(CSRF_HEADER) or form_token or ""
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise Forbidden("missing or wrong CSRF token (reload the page)", details={"field": CSRF_HEADER})

    # ----- where the dashboard is

    def origin(self, request: web.Request) -> str:
        """The dashboard's origin: `ui.publicUrl`, else the request's own scheme and host."""
        if self._ui.public_url:
            parts = urlsplit(self._ui.public_url)
            return f"{parts.scheme}://{parts.netloc}"
        return f"{request.scheme}://{request.host}"

    def base_url(self, request: web.Request) -> str:
        """Where /ui lives, for absolute URLs (the OIDC redirect URI)."""
        return self._ui.public_url or self.origin(request)

    def _secure(self, request: web.Request) -> bool:
        parts = urlsplit(self.base_url(request))
        return parts.scheme == "https" or not is_loopback_host(parts.hostname)

    def _set(self, request: web.Request, response: web.StreamResponse, name: str, value: str, *,
             max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True,
                            secure=self._secure(request), samesite="Lax")

    @staticmethod
    def forget(response: web.StreamResponse, name: str) -> None:
        """Expire a cookie."""
        response.del_cookie(name, path=COOKIE_PATH)


def check_origin(request: web.Request, origin: str) -> None:
    """Forbidden when the browser says the request comes from another origin (`Origin`, sent by browsers on
    every cross-origin request and on same-origin non-GET ones)."""
    sent = request.headers.get("Origin")
    if sent is not None and sent != origin:
        raise Forbidden("this request comes from another site", details={"origin": sent[:200]})
