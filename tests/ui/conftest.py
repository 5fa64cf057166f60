"""Fixtures for the dashboard's tests: gateways with `ui.enabled`, in the demo's mode (auth none, the name
prompt) and in OIDC mode against the local issuer (code flow + PKCE), and helpers that sign in the way a
browser does (cookies kept by the aiohttp test client's jar)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from cryptography.fernet import Fernet

from tests.auth.issuer import LocalIssuer
from tests.conftest import Gateway

CLIENT_ID = "clever-dashboard"
ADMIN_GROUP = "clever-admins"


@pytest.fixture
async def issuer() -> AsyncIterator[LocalIssuer]:
    async with LocalIssuer() as running:
        yield running


@pytest.fixture
def session_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "session-keys"
    path.write_text(f"# dashboard session keys\n{Fernet.generate_key().decode()}\n")
    return path


@pytest.fixture
def ui_gateway(make_gateway: Callable[..., Awaitable[Gateway]]) -> Callable[..., Awaitable[Gateway]]:
    """A gateway serving the dashboard with auth.mode none (`admin` is an admin)."""

    async def start(**overrides: Any) -> Gateway:
        return await make_gateway(ui={"enabled": True}, auth={"mode": "none", "adminUsers": ["admin"]}, **overrides)

    return start


@pytest.fixture
def oidc_gateway(make_gateway: Callable[..., Awaitable[Gateway]], issuer: LocalIssuer,
                 session_key_file: Path) -> Callable[..., Awaitable[Gateway]]:
    """A gateway serving the dashboard with auth.mode oidc against the local issuer; the client registered
    with the gateway's callback once it listens."""

    async def start(**overrides: Any) -> Gateway:
        gw = await make_gateway(
            ui={"enabled": True, "clientId": CLIENT_ID, "sessionKeyFile": str(session_key_file)},
            auth={"mode": "oidc", "adminGroups": [ADMIN_GROUP],
                  "oidc": {"issuer": issuer.issuer, "audience": [issuer.audience, CLIENT_ID]}}, **overrides)
        issuer.register_client(CLIENT_ID, str(gw.client.make_url("/ui/callback")))
        return gw

    return start


async def name_prompt_sign_in(gw: Gateway, user: str, *, next_page: str = "/ui") -> aiohttp.ClientResponse:
    """Sign in through the name prompt (auth none) as a browser does; the 303 answer."""
    page = await gw.client.get(f"/ui/login?next={next_page}", allow_redirects=False)
    assert page.status == 200, await page.text()
    token = re.search(r'name="csrfToken" value="([^"]+)"', await page.text())
    assert token is not None
    answer = await gw.client.post("/ui/login", data={"user": user, "csrfToken": token.group(1), "next": next_page},
                                  allow_redirects=False)
    assert answer.status == 303, await answer.text()
    return answer


async def oidc_sign_in(gw: Gateway, issuer: LocalIssuer, user: str, *,
                       next_page: str = "/ui") -> tuple[aiohttp.ClientResponse, dict[str, list[str]]]:
    """The code flow as a browser runs it: gateway → issuer's form → callback. The callback's answer and
    the authorization request's parameters."""
    start = await gw.client.get(f"/ui/login?next={next_page}", allow_redirects=False)
    assert start.status == 303, await start.text()
    location = start.headers["Location"]
    assert location.startswith(issuer.issuer + "/auth?")
    params = parse_qs(urlsplit(location).query)
    async with aiohttp.ClientSession() as browser:
        form = await browser.get(location)
        assert form.status == 200, await form.text()
        fields = {k: v[0] for k, v in params.items()} | {"user": user}
        back = await browser.post(f"{issuer.issuer}/auth", data=fields, allow_redirects=False)
        assert back.status == 302, await back.text()
        callback = back.headers["Location"]
    parts = urlsplit(callback)
    answer = await gw.client.get(f"{parts.path}?{parts.query}", allow_redirects=False)
    return answer, params
