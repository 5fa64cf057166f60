"""HTTP/1.1 over a raw socket, for requests no HTTP client library would send: bytes exactly as given,
in pieces with pauses between them (slow writes, a body after its headers, trailing garbage), and the
answer parsed by hand (Content-Length, chunked, or up to the close).

`send(host, port, pieces, pause=)` (asyncio) and `send_blocking(...)` (plain sockets, for Hypothesis
tests that run outside an event loop) return a `RawResponse`, or None when the server closed the
connection without answering.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    """One parsed HTTP answer."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive)."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def request(method: str, path: str, *, headers: dict[str, str] | list[tuple[str, str]] | None = None,
            body: bytes | None = None, content_length: int | None = None) -> bytes:
    """A request head (+ body); `content_length` overrides the true length (to lie about it)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway"]
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    lines += [f"{k}: {v}" for k, v in pairs]
    if body is not None or content_length is not None:
        lines.append(f"Content-Length: {content_length if content_length is not None else len(body or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


def chunked(parts: list[bytes]) -> bytes:
    """`parts` in chunked transfer coding, with the final empty chunk."""
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"


def _parse(readline: Callable[[], bytes], read: Callable[[int], bytes], read_all: Callable[[], bytes],
           *, head_only: bool) -> RawResponse | None:
    status_line = readline()
    if not status_line:
        return None
    status = int(status_line.split(b" ", 2)[1])
    headers: list[tuple[str, str]] = []
    while True:
        line = readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    response = RawResponse(status, headers, b"")
    if head_only or status in (204, 304):
        return response
    length = response.header("Content-Length")
    if (response.header("Transfer-Encoding") or "").lower() == "chunked":
        body = b""
        while True:
            size = int(readline().split(b";")[0].strip(), 16)
            if size == 0:
                readline()
                break
            body += read(size)
            readline()
        response.body = body
    elif length is not None:
        response.body = read(int(length))
    else:
        response.body = read_all()
    return response


async def send(host: str, port: int, pieces: list[bytes], *, pause: float = 0.0, head_only: bool = False,
               timeout: float = 15.0) -> RawResponse | None:
    """Send `pieces` (pausing between them) and read one answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for i, piece in enumerate(pieces):
            if i and pause:
                await asyncio.sleep(pause)
            try:
                writer.write(piece)
                await writer.drain()
            except ConnectionError:
                break  # the server answered and closed early; read what it said
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        data = bytearray()
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - loop.time()))
            except (TimeoutError, ConnectionError, OSError):
                break
            if not chunk:
                break
            data.extend(chunk)
            if _complete(bytes(data), head_only=head_only):
                break
        return _parse_bytes(bytes(data), head_only=head_only)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def send_blocking(host: str, port: int, pieces: list[bytes], *, pause: float = 0.0, head_only: bool = False,
                  timeout: float = 15.0) -> RawResponse | None:
    """`send` with a plain socket (no event loop)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        for i, piece in enumerate(pieces):
            if i and pause:
                time.sleep(pause)
            try:
                sock.sendall(piece)
            except OSError:
                break
        data = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                break
            if not chunk:
                break
            data.extend(chunk)
            if _complete(bytes(data), head_only=head_only):
                break
    return _parse_bytes(bytes(data), head_only=head_only)


def _parse_bytes(data: bytes, *, head_only: bool) -> RawResponse | None:
    position = 0

    def readline() -> bytes:
        nonlocal position
        end = data.find(b"\n", position)
        end = len(data) if end < 0 else end + 1
        line, position = data[position:end], end
        return line

    def read(n: int) -> bytes:
        nonlocal position
        out, position = data[position:position + n], position + n
        return out

    def read_all() -> bytes:
        nonlocal position
        out, position = data[position:], len(data)
        return out

    try:
        return _parse(readline, read, read_all, head_only=head_only)
    except (ValueError, IndexError):
        raise AssertionError(f"not an HTTP answer: {data[:200]!r}") from None


def _complete(data: bytes, *, head_only: bool) -> bool:
    """Whether `data` holds a whole answer (so there is no need to wait for the close)."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    if head_only:
        return True
    head = data[:head_end].decode("latin-1").lower()
    body = data[head_end + 4:]
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip() == "content-length":
            return len(body) >= int(value.strip())
        if name.strip() == "transfer-encoding" and "chunked" in value:
            return body.endswith(b"0\r\n\r\n")
    return False
