"""The cluster transport's streaming reader: lines cut anywhere by the network come out whole, and a line
longer than the bound ends the stream as a bad answer (a plain aiohttp server sends the chunks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gateway.kube.credentials import Connection, NoToken
from gateway.kube.errors import ClusterBadResponse
from gateway.kube.transport import _MAX_LINE, Transport

CHUNKS: dict[str, list[bytes]] = {}


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for chunk in CHUNKS[request.match_info["name"]]:
        await response.write(chunk)
        await asyncio.sleep(0)  # each its own read on the other side
    await response.write_eof()
    return response


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    app = web.Application()
    app.router.add_get("/{name}", _stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    connection = Connection(server=f"http://127.0.0.1:{port}", ssl=None, tls_server_name=None, proxy=None,
                            credentials=NoToken(), source="test")
    made = Transport("t", connection, timeout=5)
    await made.start()
    yield made
    await made.close()
    await runner.cleanup()


async def _lines(transport: Transport, name: str) -> list[bytes]:
    return [line async for line in transport.stream_lines(f"/{name}", verb="watch", query={}, read_timeout=5)]


async def test_lines_cut_anywhere_come_out_whole(transport: Transport) -> None:
    long = b'{"x":"' + b"a" * 200_000 + b'"}'
    text = b'{"a":1}\n\n' + long + b'\n{"b":2}\n{"c":3}'  # the last one without its newline
    CHUNKS["cut"] = [text[i:i + 1000] for i in range(0, len(text), 1000)]
    assert await _lines(transport, "cut") == [b'{"a":1}', long, b'{"b":2}', b'{"c":3}']


async def test_a_line_past_the_bound_is_a_bad_answer(transport: Transport) -> None:
    CHUNKS["huge"] = [b"x" * 65536] * (_MAX_LINE // 65536 + 2)
    with pytest.raises(ClusterBadResponse):
        await _lines(transport, "huge")
