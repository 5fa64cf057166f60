"""The dashboard's HTTP handlers: pages, static assets, sign-in and out, and the JSON the pages read.

Contract:
- Pages (`text/html`): `GET /ui` (the caller's jobs across clusters and partitions), `GET /ui/jobs/{cid}/
  {partition}/{id}` (one job); without a session both answer 303 to `/ui/login?next=<page>`. They are one
  static shell (`static/index.html`) whose script draws the page from `/ui/api/...`.
- Sign-in: `GET /ui/login`: with `auth.mode: oidc` a 303 to the issuer (authorization code + PKCE, see
  `gateway.web.ui.signin`), `GET /ui/callback` finishes it; with `auth.mode: none` a user-name prompt that
  `POST /ui/login` (form, CSRF token from the sign-in cookie) answers. `POST /ui/logout` (CSRF) ends the
  session. `next` is only ever a path under /ui (no open redirect).
- `GET /ui/static/app.js` and `app.css`: the shell's script and style sheet, from the package (no build step).
- JSON for the pages, authenticated by the session cookie (`SignInRequired` 401 without one), with the
  API's own handlers and services, so the rights are the API's: `GET /ui/api/session` (user, admin, auth
  mode, CSRF token, clusters), `GET /ui/api/jobs[?user=]` (the caller's jobs of every registered partition
  of every cluster, newest first; admins may ask for another user or `*`; partitions the caller may not use
  are left out, clusters that fail are named in `problems`), and under
  `/ui/api/clusters/{cid}/partitions/{partition}/tfjobs/{id}` GET, DELETE (CSRF), `/logs`, `/events`.
- Every answer of the dashboard carries a strict Content-Security-Policy (scripts and styles from /ui only,
  no framing), `nosniff`, `Referrer-Policy: same-origin` (no other site learns a dashboard URL) and
  `no-store`.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import re
import secrets
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote

import orjson
import structlog
from aiohttp import web

from gateway import appkeys
from gateway.auth import Principal
from gateway.auth.identity import user_name
from gateway.auth.oidc import OIDCAuthenticator
from gateway.auth.policy import ALL_OWNERS
from gateway.config import Settings
from gateway.errors import BadRequest, Forbidden, GatewayError, MethodNotAllowed, NotFound
from gateway.kube import KubeError
from gateway.web import diagnostics, handlers
from gateway.web.body import read_body
from gateway.web.errors import legacy_error
from gateway.web.middleware import PRINCIPAL
from gateway.web.ui.session import CSRF_FIELD, CookieSealer, Session, Sessions, check_origin, load_keys
from gateway.web.ui.signin import CodeFlow
from translators.errors import SpecError

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
R = TypeVar("R", bound=web.StreamResponse)

_ASSETS = {"app.js": "application/javascript", "app.css": "text/css"}
_NEXT = re.compile(r"^/ui(/[A-Za-z0-9._~-]+)*/?$")
_LISTS_AT_ONCE = 8
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: Chromium then sends `Origin: null` on same-origin form posts, which the origin check refuses.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class Dashboard:
    """The dashboard's state: settings, sessions, assets, the OIDC code flow (made at first sign-in)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions = Sessions(settings, CookieSealer(load_keys(settings)))
        package = resources.files("gateway.web.ui") / "static"
        self.shell = (package / "index.html").read_bytes()
        self.assets = {name: (package / name).read_bytes() for name in _ASSETS}
        self._flow: CodeFlow | None = None

    def code_flow(self, app: web.Application) -> CodeFlow:
        """The OIDC sign-in, verifying ID tokens with the API's own authenticator."""
        if self._flow is None:
            authenticator = app[appkeys.AUTHENTICATOR]
            if not isinstance(authenticator, OIDCAuthenticator):
                raise NotFound("sign-in through an identity provider needs auth.mode oidc")
            self._flow = CodeFlow(self.settings, authenticator)
        return self._flow

    async def close(self) -> None:
        """Close the code flow's HTTP session."""
        if self._flow is not None:
            await self._flow.close()


def _dashboard(request: web.Request) -> Dashboard:
    return request.app[appkeys.DASHBOARD]


def _secured(response: R) -> R:
    response.headers.update(_SECURITY_HEADERS)
    return response


def _json(data: Any) -> web.Response:
    return _secured(web.Response(body=orjson.dumps(data), content_type="application/json"))


def _redirect(location: str) -> web.Response:
    return _secured(web.Response(status=303, headers={"Location": location}))


def _next(value: str | None) -> str:
    """Where to go after signing in: a path under /ui, else /ui."""
    return value if value and _NEXT.fullmatch(value) and "//" not in value and "/." not in value else "/ui"


# ----- pages

async def jobs_page(request: web.Request) -> web.StreamResponse:
    """GET /ui: the caller's jobs."""
    return _shell(request)


async def job_page(request: web.Request) -> web.StreamResponse:
    """GET /ui/jobs/{cid}/{partition}/{id}: one job."""
    return _shell(request)


def _shell(request: web.Request) -> web.StreamResponse:
    dashboard = _dashboard(request)
    if dashboard.sessions.current(request) is None:
        return _redirect("/ui/login?next=" + quote(_next(request.path), safe="/"))
    return _secured(web.Response(body=dashboard.shell, content_type="text/html", charset="utf-8"))


async def asset(request: web.Request) -> web.StreamResponse:
    """GET /ui/static/app.js, /ui/static/app.css"""
    name = request.path.rsplit("/", 1)[-1]
    body = _dashboard(request).assets.get(name)
    if body is None:
        raise NotFound(f"no dashboard asset {name[:64]!r}")
    response = _secured(web.Response(body=body, content_type=_ASSETS[name], charset="utf-8"))
    response.headers["Cache-Control"] = "no-cache"  # revalidate: a new gateway version brings new assets
    return response


# ----- sign-in and out

async def login(request: web.Request) -> web.StreamResponse:
    """GET /ui/login: to the issuer (oidc), or the user-name prompt (auth none)."""
    dashboard = _dashboard(request)
    target = _next(request.query.get("next"))
    if "signedOut" in request.query:
        return _page("Signed out", f'<p>You are signed out.</p><p><a href="/ui/login?next={quote(target)}">Sign in '
                                   "again</a></p>")
    if dashboard.settings.auth.mode == "oidc":
        flow = dashboard.code_flow(request.app)
        url, pending = await flow.begin(_callback_uri(request))
        response = _redirect(url)
        dashboard.sessions.begin_signin(request, response, {**pending, "next": target})
        return response
    token = _new_token()
    body = (f'<form method="post" action="/ui/login" class="signin">'
            f'<label for="user">User name</label>'
            f'<input id="user" name="user" autocomplete="username" required maxlength="253" autofocus>'
            f'<input type="hidden" name="{CSRF_FIELD}" value="{html.escape(token)}">'
            f'<input type="hidden" name="next" value="{html.escape(target)}">'
            f'<button type="submit">Sign in</button></form>'
            "<p class=\"warning\">Authentication is off (auth.mode: none): whoever you name, you are. "
            "Demo only.</p>")
    response = _page("Sign in", body)
    dashboard.sessions.begin_signin(request, response, {"csrf": token, "next": target})
    return response


async def login_submit(request: web.Request) -> web.StreamResponse:
    """POST /ui/login (auth none): sign in as the named user."""
    dashboard = _dashboard(request)
    if dashboard.settings.auth.mode != "none":
        raise MethodNotAllowed("sign in at the identity provider: GET /ui/login", headers={"Allow": "GET, HEAD"})
    check_origin(request, dashboard.sessions.origin(request))
    form = await _form(request)
    pending = dashboard.sessions.pending_signin(request)
    sent = form.get(CSRF_FIELD, "")
    if pending is None or not isinstance(pending.get("csrf"), str) or not _same(sent, pending["csrf"]):
        raise Forbidden("the sign-in form expired or was not ours; open /ui/login again",
                        details={"field": CSRF_FIELD})
    user = user_name(form.get("user", "").strip(" "), source="the user name")
    response = _redirect(_next(form.get("next") or pending.get("next")))
    dashboard.sessions.start(request, response, user=user, groups=frozenset())
    log.info("dashboard sign-in", user=user, mode="none")
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    """GET /ui/callback: the issuer sends the browser back with a code."""
    dashboard = _dashboard(request)
    flow = dashboard.code_flow(request.app)
    pending = dashboard.sessions.pending_signin(request)
    if pending is None or "state" not in pending:
        raise BadRequest("no sign-in is under way in this browser (it took longer than ui.loginSeconds, or "
                         "cookies are blocked); start again at /ui/login")
    identity = await flow.finish(str(request.url), pending, redirect_uri=_callback_uri(request),
                                 query=dict(request.query))
    response = _redirect(_next(pending.get("next")))
    dashboard.sessions.start(request, response, user=identity.user, groups=identity.groups)
    log.info("dashboard sign-in", user=identity.user, mode="oidc")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /ui/logout: end the session (CSRF-checked)."""
    dashboard = _dashboard(request)
    session = dashboard.sessions.current(request)
    response = _redirect("/ui/login?signedOut=1")
    if session is not None:
        form = await _form(request) if request.content_type == "application/x-www-form-urlencoded" else {}
        dashboard.sessions.check_write(request, session, form_token=form.get(CSRF_FIELD))
        log.info("dashboard sign-out", user=session.user)
    dashboard.sessions.end(response)
    return response


def _callback_uri(request: web.Request) -> str:
    return _dashboard(request).sessions.base_url(request) + "/ui/callback"


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def _form(request: web.Request) -> dict[str, str]:
    """A small urlencoded form, read whole within the body limits (408/413 as for the API)."""
    raw = await read_body(request, limits=request.app[appkeys.SETTINGS].limits)
    try:
        return dict(parse_qsl(raw.decode("utf-8"), max_num_fields=16))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest("the form is not valid UTF-8 url-encoded fields") from e


def _page(title: str, body: str) -> web.Response:
    document = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · '
                'clever-gateway</title><meta name="viewport" content="width=device-width, initial-scale=1">'
                '<link rel="stylesheet" href="/ui/static/app.css"></head><body class="plain">'
                f'<header class="top"><a class="brand" href="/ui">clever-gateway</a></header>'
                f'<main class="narrow"><h1>{html.escape(title)}</h1>{body}</main></body></html>')
    return _secured(web.Response(text=document, content_type="text/html"))


# ----- JSON for the pages

def signed_in(handler: Handler, *, write: bool = False) -> Handler:
    """`handler` with the session's principal as `request[PRINCIPAL]` (401 without a session); `write`
    also checks the CSRF token and origin."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        sessions = _dashboard(request).sessions
        session = sessions.required(request)
        if write:
            sessions.check_write(request, session)
        request[PRINCIPAL] = sessions.principal(session)
        response = await handler(request)
        return response if response.prepared else _secured(response)  # a followed log is already on its way

    wrapped.__name__ = wrapped.__qualname__ = f"ui_{handler.__name__}"
    wrapped.__doc__ = handler.__doc__
    return wrapped


async def session_info(request: web.Request) -> web.StreamResponse:
    """GET /ui/api/session"""
    dashboard = _dashboard(request)
    session: Session = dashboard.sessions.required(request)
    principal = dashboard.sessions.principal(session)
    return _json({"user": principal.user, "isAdmin": principal.is_admin, "authMode": dashboard.settings.auth.mode,
                  "csrfToken": session.csrf, "clusters": request.app[appkeys.CLUSTERS].ids()})


async def my_jobs(request: web.Request) -> web.StreamResponse:
    """GET /ui/api/jobs: the caller's jobs of every registered partition, newest first."""
    dashboard = _dashboard(request)
    principal = dashboard.sessions.principal(dashboard.sessions.required(request))
    requested = (request.query.get("user") or "").strip(" ") or principal.user
    if requested != ALL_OWNERS:
        requested = user_name(requested, source="?user=")
    clusters = request.app[appkeys.CLUSTERS].ids()
    registry = await request.app[appkeys.STATE].partitions.of(clusters)
    places = [(cid, partition) for cid in clusters for partition in registry.get(cid, [])]
    gate = asyncio.Semaphore(_LISTS_AT_ONCE)
    results = await asyncio.gather(*(_list_one(request, principal, cid, p, requested, gate) for cid, p in places))
    items = [job for found, _ in results for job in found]
    items.sort(key=lambda j: str((j.get("metadata") or {}).get("creationTime") or ""), reverse=True)
    problems = [problem for _, problem in results if problem is not None]
    return _json({"metadata": {"total": len(items)}, "items": items, "user": requested,
                  "partitions": [{"cluster": cid, "partition": p} for cid, p in places], "problems": problems})


async def _list_one(request: web.Request, principal: Principal, cluster: str, partition: str, requested: str,
                    gate: asyncio.Semaphore) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    service = request.app[appkeys.SERVICE]
    try:
        async with gate:
            body = await service.list(principal, cluster_id=cluster, partition=partition, requested_user=requested)
    except Forbidden as e:
        # A partition the caller may not use holds nothing of theirs; asking for someone else's jobs there is
        # worth telling.
        if requested == principal.user:
            return [], None
        return [], {"cluster": cluster, "partition": partition, "message": e.message}
    except GatewayError as e:
        return [], {"cluster": cluster, "partition": partition, "message": e.message}
    except KubeError as e:
        return [], {"cluster": cluster, "partition": partition, "message": legacy_error(e).message}
    except SpecError as e:
        return [], {"cluster": cluster, "partition": partition, "message": e.message}
    items = orjson.loads(body).get("items") or []
    return [i for i in items if isinstance(i, dict)], None


get_job = signed_in(handlers.get_job)
delete_job = signed_in(handlers.delete_job, write=True)
job_logs = signed_in(diagnostics.job_logs)
job_events = signed_in(diagnostics.job_events)
