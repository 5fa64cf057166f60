"""Every reproduction of the hostile-input report (issue 9), over a raw socket, as a regression test.

Each request is one an attacker (or a broken client) really sent; each must get a clean legacy 4xx
(`{"code", "reason", "message", "details": {"requestId"}}`), never a 5xx or aiohttp's own text answer,
and must change nothing: the job's record and the cluster stay as they were.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from structlog.testing import capture_logs

from kubesim.store import TFJOBS
from tests.conftest import Gateway
from tests.service import rawhttp
from tests.service.rawhttp import RawResponse
from tests.service.seed_bodies import minimal

USER = {"X-User": "alice"}
BODY_TIMEOUT = 0.5


@pytest.fixture
async def gw(make_gateway: Any) -> Gateway:
    """A gateway with a short body-read timeout, so short bodies are answered quickly."""
    gateway: Gateway = await make_gateway(limits={"bodyReadTimeoutSeconds": BODY_TIMEOUT})
    gateway.sim.controllers.set_default_scenario("hold")
    return gateway


def address(gw: Gateway) -> tuple[str, int]:
    """The gateway's host and port."""
    server = gw.client.server
    return str(server.host), int(server.port or 0)


async def raw(gw: Gateway, pieces: list[bytes], *, pause: float = 0.0, head_only: bool = False) -> RawResponse:
    """Send raw bytes to the gateway; the answer must exist."""
    host, port = address(gw)
    response = await rawhttp.send(host, port, pieces, pause=pause, head_only=head_only)
    assert response is not None, "the gateway closed the connection without answering"
    return response


def assert_legacy(response: RawResponse, status: int | tuple[int, ...]) -> dict[str, Any]:
    """A legacy error body with the expected status; returns it."""
    expected = (status,) if isinstance(status, int) else status
    assert response.status in expected, (response.status, response.body[:300])
    assert response.header("Content-Type", ) is not None and "json" in (response.header("Content-Type") or "")
    body = response.json()
    assert set(body) == {"code", "reason", "message", "details"}, body
    assert body["code"] == response.status and body["reason"] and body["message"], body
    assert body["details"]["requestId"], body
    assert (response.header("Server") or "") == "clever-gateway"
    return dict(body)


async def create(gw: Gateway, name: str) -> dict[str, Any]:
    """A job created the ordinary way."""
    response = await gw.client.post(gw.jobs_url(), json=minimal(name), headers=USER)
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def snapshot(gw: Gateway) -> tuple[set[str], list[str], Any]:
    """Redis keys about jobs, the TFJob names on the cluster, and alice's list as served."""
    objects = sorted(o["metadata"]["name"] for o in gw.sim.store.list(TFJOBS)[0])
    listing = await (await gw.client.get(gw.jobs_url(), headers=USER)).json()
    return await gw.keys(), objects, [(i["metadata"]["id"], i["spec"]) for i in listing["items"]]


def path(gw: Gateway, job_id: str | None = None) -> str:
    """A job or the collection."""
    return gw.jobs_url() + (f"/{job_id}" if job_id else "")


# ----- 1. bodies are read whole


async def test_patch_with_smuggled_prefix_then_garbage_changes_nothing(gw: Gateway) -> None:
    job = await create(gw, "smuggle")
    before = await snapshot(gw)
    body = b'{"description":"SMUGGLED"}' + b" " * 400_000 + b"garbage"
    for pause in (0.0, 0.05):  # one write, and the garbage in later packets
        pieces = [rawhttp.request("PATCH", path(gw, job["metadata"]["id"]), headers=USER, body=body)]
        if pause:
            whole = pieces[0]
            pieces = [whole[:len(whole) - 5000], whole[len(whole) - 5000:]]
        error = assert_legacy(await raw(gw, pieces, pause=pause), 400)
        assert "not valid JSON" in error["message"] and "SMUGGLED" not in error["message"]
    assert await snapshot(gw) == before


async def test_valid_job_followed_later_by_trailing_garbage_is_refused(gw: Gateway) -> None:
    before = await snapshot(gw)
    body = json.dumps(minimal("trailing")).encode() + b"}}garbage"
    head = rawhttp.request("POST", path(gw), headers=USER, body=body)
    split = len(head) - len(b"}}garbage")
    assert_legacy(await raw(gw, [head[:split], head[split:]], pause=0.3), 400)
    assert await snapshot(gw) == before


async def test_chunked_patch_is_judged_on_all_its_chunks(gw: Gateway) -> None:
    job = await create(gw, "chunks")
    url = path(gw, job["metadata"]["id"])
    before = await snapshot(gw)
    head = rawhttp.request("PATCH", url, headers={**USER, "Transfer-Encoding": "chunked"})
    bad = rawhttp.chunked([b'{"description":"FIRST"}', b" trailing garbage"])
    assert_legacy(await raw(gw, [head, bad[:30], bad[30:]], pause=0.05), 400)
    assert await snapshot(gw) == before
    good = rawhttp.chunked([b'{"descrip', b'tion":"from two chunks"}'])
    answer = await raw(gw, [head, good[:20], good[20:]], pause=0.05)
    assert answer.status == 200, answer.body
    assert answer.json()["spec"]["description"] == "from two chunks"


async def test_body_shorter_than_its_content_length_is_408_and_creates_nothing(gw: Gateway) -> None:
    before = await snapshot(gw)
    body = json.dumps(minimal("short-body")).encode()
    request = rawhttp.request("POST", path(gw), headers=USER, body=body, content_length=len(body) + 100)
    loop = asyncio.get_running_loop()
    started = loop.time()
    error = assert_legacy(await raw(gw, [request]), 408)
    assert loop.time() - started < BODY_TIMEOUT + 2, "answered within the body timeout, not the request timeout"
    assert "Content-Length" in error["message"]
    assert await snapshot(gw) == before


async def test_content_length_with_no_body_is_408_not_504(gw: Gateway) -> None:
    before = await snapshot(gw)
    assert_legacy(await raw(gw, [rawhttp.request("POST", path(gw), headers=USER, content_length=100)]), 408)
    assert await snapshot(gw) == before


async def test_large_valid_body_and_a_body_in_two_writes_are_accepted(gw: Gateway) -> None:
    # 500 kB: long args plus an unknown key the reader ignores, well under limits.maxBodyBytes (1 MiB).
    big = minimal("big", args=["--x=" + "y" * 150_000], comment="z" * 350_000)
    body = json.dumps(big).encode()
    assert len(body) > 500_000
    request = rawhttp.request("POST", path(gw), headers=USER, body=body)
    answer = await raw(gw, [request[:len(request) // 3], request[len(request) // 3:]], pause=0.05)
    assert answer.status == 200, answer.body[:300]
    assert answer.json()["spec"]["args"] == big["args"]
    small = json.dumps(minimal("two-writes")).encode()
    request = rawhttp.request("POST", path(gw), headers=USER, body=small)
    answer = await raw(gw, [request[:-60], request[-60:]], pause=0.2)
    assert answer.status == 200, answer.body[:300]


async def test_body_over_the_limit_is_413_chunked_or_not(make_gateway: Any) -> None:
    gw: Gateway = await make_gateway(limits={"maxBodyBytes": 4096})
    before = await snapshot(gw)
    body = json.dumps(minimal("huge", description="d" * 900, comment="c" * 10_000)).encode()
    assert_legacy(await raw(gw, [rawhttp.request("POST", path(gw), headers=USER, body=body)]), 413)
    head = rawhttp.request("POST", path(gw), headers={**USER, "Transfer-Encoding": "chunked"})
    assert_legacy(await raw(gw, [head, rawhttp.chunked([body[:3000], body[3000:]])]), 413)
    assert await snapshot(gw) == before


# ----- 3, 5 and lesser: JSON and text that must be refused


@pytest.mark.parametrize("raw_body", [
    b'{"description": "a\\ud800b"}',
    b'{"args": ["a\\udc00"]}',
    b'{"environment": "A=\\ud83d"}',
    b'{"bootfile": "/clever/a\\ud800.py"}',
    b'{"description": "a\xed\xa0\x80b"}',
    b'{"args": "caf\xe9"}',
    b'{"description": "a\\u0000b"}',
    b'{"args": ["x\\u0000"]}',
    b'{"environment": {"A": "nul\\u0000"}}',
    b'{"description": "x", "description": "y"}',
    b'[' * 10_000 + b']' * 10_000,
    b'{"a":' * 40 + b'1' + b'}' * 40,
    b'{"cpu": NaN}',
    b'{"count": "1_0"}',
    b'{"count": "\xef\xbc\x92"}',
    b'{"count": "\xd9\xa1"}',
    b'{"count": 2.5}',
], ids=lambda b: repr(b[:28]))
async def test_bad_json_and_text_are_400_on_post_and_patch(gw: Gateway, raw_body: bytes) -> None:
    job = await create(gw, "target")
    before = await snapshot(gw)
    base = json.dumps(minimal("fresh")).encode()
    post_body = raw_body if not raw_body.startswith(b"{") else base[:-1] + b", " + raw_body[1:]
    for method, url, body in (("POST", path(gw), post_body), ("PATCH", path(gw, job["metadata"]["id"]), raw_body)):
        error = assert_legacy(await raw(gw, [rawhttp.request(method, url, headers=USER, body=body)]), 400)
        assert "\\ud8" not in error["message"] and "\x00" not in error["message"]
    assert await snapshot(gw) == before


async def test_named_json_problems(gw: Gateway) -> None:
    async def message(body: bytes) -> str:
        return str(assert_legacy(await raw(gw, [rawhttp.request("POST", path(gw), headers=USER, body=body)]),
                                 400)["message"])

    assert "surrogate" in await message(b'{"name": "a\\ud800"}')
    assert "UTF-8" in await message(b'{"name": "caf\xe9"}')
    assert "depth" in await message(b"[" * 10_000 + b"]" * 10_000)
    assert "nested" in await message(b'{"a":' * 40 + b"1" + b"}" * 40)
    assert "twice" in await message(b'{"name": "a", "name": "b"}')


# ----- 4 and lesser: who is calling


@pytest.mark.parametrize("x_user", [b"caf\xe9", b"\xff", b"\xed\xa0\x80", "\u0430dmin".encode(),
                                    "ad\u200bmin".encode(), "ad\u202emin".encode(), "e\u0301".encode(),
                                    b"tab\tbed"], ids=repr)
async def test_unusable_x_user_is_400_on_every_route(gw: Gateway, x_user: bytes) -> None:
    job = await create(gw, "victim")
    before = await snapshot(gw)
    url = path(gw, job["metadata"]["id"])
    body = json.dumps(minimal("by-bad-user")).encode()
    for method, target, payload in (("GET", path(gw), None), ("POST", path(gw), body), ("GET", url, None),
                                    ("PATCH", url, b'{"description": "x"}'), ("DELETE", url, None)):
        head = rawhttp.request(method, target, body=payload).split(b"\r\n\r\n", 1)
        request = head[0] + b"\r\nX-User: " + x_user + b"\r\n\r\n" + head[1]
        assert_legacy(await raw(gw, [request]), 400)
    assert await snapshot(gw) == before


async def test_two_x_user_headers_are_400(gw: Gateway) -> None:
    request = rawhttp.request("GET", path(gw), headers=[("X-User", "alice"), ("X-User", "admin")])
    assert "more than once" in assert_legacy(await raw(gw, [request]), 400)["message"]


async def test_a_valid_non_latin_user_is_fine(gw: Gateway) -> None:
    for user in ("Иван", "山田たろう", "jürgen@example.com"):
        response = await gw.client.get(gw.jobs_url(), headers={"X-User": user})
        assert response.status == 200, await response.text()


# ----- protocol errors: the legacy shape, nothing echoed, one warning line


MALFORMED = [
    b"GET /api/version HTTP/1.1\r\nHost: g\r\nX-Bad: a\x01b\r\n\r\n",
    b"GET /api/version HTTP/1.1\r\nHost: g\r\nX-Fold: a\r\n  folded\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: g\r\n\r\n",
    b"POST /api/version HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
    b"POST /api/version HTTP/1.1\r\nHost: g\r\nContent-Length: -1\r\n\r\n",
    b"POST /api/version HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /api/version HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n",
    b"POST /api/version HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: \x0bchunked\r\n\r\n",
    b"G\x00T /api/version HTTP/1.1\r\nHost: g\r\n\r\n",
    b"GET /api/version HTTP/1.2\r\nHost: g\r\n\r\n",
    b"GET /api/version HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
]


@pytest.mark.parametrize("request_bytes", MALFORMED, ids=lambda b: repr(b[:40]))
async def test_malformed_requests_get_the_legacy_shape_without_echo(gw: Gateway, request_bytes: bytes,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        answer = await raw(gw, [request_bytes])
    if answer.status < 400:
        # HTTP/1.1 without Host is tolerated by aiohttp; what matters is a clean answer.
        assert answer.status == 200 and answer.json()["version"]
        return
    body = assert_legacy(answer, (400, 405, 413, 414, 431, 501))
    assert b"folded" not in answer.body and b"aaaa" not in answer.body and b"\\x01" not in answer.body
    assert body["message"] and len(answer.body) < 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.records
    warnings = [e for e in logs if e.get("event") == "malformed request refused"]
    if warnings:  # refused by the HTTP parser (not by the app's router, which logs its own request line)
        assert len(warnings) == 1 and warnings[0]["log_level"] == "warning" and warnings[0]["request_id"]


async def test_unknown_and_unrouted_methods_are_legacy_4xx(gw: Gateway) -> None:
    # aiohttp's parser refuses methods it does not know (400); a known one without a route is a 405.
    answer = await raw(gw, [b"FOO " + path(gw).encode() + b" HTTP/1.1\r\nHost: g\r\nX-User: alice\r\n\r\n"])
    assert_legacy(answer, 400)
    answer = await raw(gw, [b"PUT " + path(gw).encode() + b" HTTP/1.1\r\nHost: g\r\nX-User: alice\r\n\r\n"])
    assert "allowed" in assert_legacy(answer, 405)["message"] and answer.header("Allow")


# ----- banners and HEAD


async def test_no_version_banner_and_head_works_where_get_does(gw: Gateway) -> None:
    job = await create(gw, "headed")
    for url in ("/api/version", "/api/ping", "/healthz", "/metrics", path(gw), path(gw, job["metadata"]["id"])):
        get = await gw.client.get(url, headers=USER)
        head = await gw.client.head(url, headers=USER)
        assert head.status == get.status == 200, (url, head.status, get.status)
        assert await head.read() == b""
        assert get.headers["Server"] == head.headers["Server"] == "clever-gateway"
    version = await (await gw.client.get("/api/version")).json()
    assert "pythonVersion" not in version and "Python" not in json.dumps(version)
