"""Request bodies: read whole, bounded in size and time, parsed by one strict JSON parser.

Contract:
- `read_json_object(request, limits=)` returns the body as a JSON object (dict) or raises a
  `gateway.errors` error answered in the legacy shape:
  - 413 when the body is larger than `limits.maxBodyBytes`, whatever the framing (Content-Length or
    chunked): aiohttp's `request.read()` enforces the app's `client_max_size`;
  - 408 when the body does not arrive in full within `limits.bodyReadTimeoutSeconds` (a body shorter
    than its Content-Length, a stalled chunked upload), never a 5xx;
  - 400 for a broken body (the connection ended mid-body, bad chunk framing);
  - 415 for a Content-Type that is clearly not JSON;
  - 400 naming the problem for anything `parse_json_object` refuses.
  The body is read to its end before anything is parsed, so trailing bytes after a valid document
  (sent in a later packet or not) make the whole body invalid: a request is judged on all of it.
- `parse_json_object(raw)` is the one JSON parser for client input: orjson, which refuses invalid
  UTF-8, lone surrogates (escaped or raw), NaN/Infinity and trailing content; plus a nesting bound
  (`MAX_DEPTH`) and a duplicate-key check, which orjson does not make (it keeps the last value).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
from aiohttp import web

from gateway.config import LimitsSettings
from gateway.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from translators.clever import json_type

# A legacy job body is two or three levels deep; 32 leaves room for any honest client.
MAX_DEPTH = 32

_JSON_TYPES = ("application/json", "text/json")
# Legacy clients were written against a server that read any body as JSON; `curl -d '{...}'` labels it
# form-urlencoded. Accept these when the body parses as JSON; refuse types that are clearly something else.
_TOLERATED_TYPES = ("text/plain", "application/x-www-form-urlencoded", "application/octet-stream")


def _check_content_type(request: web.Request) -> None:
    content_type = request.headers.get("Content-Type")
    if content_type is None:
        return
    mime = content_type.split(";", 1)[0].strip().lower()
    is_json = mime in _JSON_TYPES or (mime.startswith("application/") and mime.endswith("+json"))
    if not is_json and mime not in _TOLERATED_TYPES:
        raise UnsupportedMediaType(f"send the job as JSON (Content-Type: application/json), not {mime[:100]!r}")


async def read_body(request: web.Request, *, limits: LimitsSettings) -> bytes:
    """The whole request body (see module docstring for the errors)."""
    limit = limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    try:
        async with asyncio.timeout(limits.body_read_timeout_seconds):
            return await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise PayloadTooLarge(f"request body larger than {limit} bytes") from e
    except TimeoutError as e:
        raise RequestTimeout(f"the request body did not arrive in full within "
                             f"{limits.body_read_timeout_seconds:g} s (is it shorter than its Content-Length?)") from e
    except (ConnectionError, OSError, ValueError) as e:
        # aiohttp's ContentLengthError / TransferEncodingError (bad framing, connection closed mid-body)
        raise BadRequest("the request body is incomplete or badly framed") from e


async def read_json_object(request: web.Request, *, limits: LimitsSettings) -> dict[str, Any]:
    """The request body as a JSON object (see module docstring)."""
    if request.content_length is not None and request.content_length > limits.max_body_bytes:
        raise PayloadTooLarge(f"request body larger than {limits.max_body_bytes} bytes")
    _check_content_type(request)
    return parse_json_object(await read_body(request, limits=limits))


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse client JSON strictly; BadRequest naming the problem."""
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the request body is not valid JSON: {_explain(e)}") from e
    depth = _depth(data)
    if depth > MAX_DEPTH:
        raise BadRequest(f"the request body is nested {depth} levels deep; at most {MAX_DEPTH} are accepted")
    if not isinstance(data, dict):
        raise BadRequest(f"the request body must be a JSON object, not {json_type(data)}")
    duplicate = _duplicate_key(raw)
    if duplicate is not None:
        raise BadRequest(f"the request body gives the key {duplicate[:100]!r} twice in one object; "
                         "give each key once")
    return data


def _explain(error: orjson.JSONDecodeError) -> str:
    # orjson's messages name the problem ("str is not valid UTF-8: surrogates not allowed", "depth limit
    # exceeded", "unexpected content after document") and a position; never the input itself.
    return str(error)[:300]


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), iteratively: input depth must not become ours."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        current, level = stack.pop()
        if isinstance(current, dict):
            children: Any = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level) for child in children)
    return deepest


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


_PAIRS_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def _duplicate_key(raw: bytes) -> str | None:
    """The first key given twice in one object, if any. orjson keeps the last value silently; the stdlib
    decoder reports the pairs. It only ever sees input orjson accepted and `_depth` bounded, so it cannot
    recurse deeply or meet invalid UTF-8."""
    if raw.count(b'"') < 4:  # fewer than two keys: nothing to repeat
        return None
    try:
        _PAIRS_DECODER.decode(raw.decode("utf-8"))
    except _DuplicateKey as e:
        return e.key
    return None
