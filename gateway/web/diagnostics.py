"""HTTP handlers of a job's diagnostics: `…/tfjobs/{id}/logs` and `…/tfjobs/{id}/events` (DESIGN §7).

Contract (thin: parse → `gateway.diagnostics.JobDiagnostics` → render):
- `job_logs`: `?replica=worker-0&tail=N&follow=true|false` → `text/plain; charset=utf-8`, the bytes as the
  container wrote them, with `X-Replica` and `X-Pod` naming what was read. `follow=true` streams (chunked)
  until the container ends, the client leaves, `limits.logFollowMaxBytes` were sent or
  `limits.logFollowMaxSeconds` passed, whichever comes first (then the answer simply ends; follow again
  to go on). A followed log is not cut by `limits.requestTimeoutSeconds`. HEAD never follows.
  Bad parameters are 400 `Invalid` with `details.fields` (`replica`, `tail`, `follow`); errors before the
  first byte are the legacy error body (see `gateway.diagnostics`); once streaming, a broken cluster stream
  ends the answer (logged).
- `job_events`: `{"metadata": {"total": N}, "items": [Event...]}`, oldest first.
The principal is `request[PRINCIPAL]`: the API's middleware sets it from the bearer token / X-User, the
dashboard's session wrapper (`gateway.web.ui.handlers`) from its cookie; the rights are GET's either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog
from aiohttp import web

from gateway import appkeys
from gateway.diagnostics import PodLog
from gateway.errors import ValidationFailed
from gateway.kube import KubeError
from gateway.web.handlers import json_answer
from gateway.web.middleware import DEADLINE, PRINCIPAL

log = structlog.get_logger(__name__)

MAX_TAIL_LINES = 1_000_000
# How often a followed log whose container is silent checks that its client is still there, seconds.
_CLIENT_CHECK_SECONDS = 2.0
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")
_DIAGNOSTIC_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def log_query(query: Mapping[str, str]) -> tuple[str | None, int | None, bool]:
    """(replica, tail, follow) from the query; ValidationFailed naming each bad parameter."""
    problems: list[dict[str, str]] = []
    replica = query.get("replica") or None
    tail: int | None = None
    raw_tail = query.get("tail")
    if raw_tail is not None and raw_tail != "":
        if raw_tail.isascii() and raw_tail.isdigit() and int(raw_tail) <= MAX_TAIL_LINES:
            tail = int(raw_tail)
        else:
            problems.append({"path": "tail", "message": f"a whole number of lines from 0 to {MAX_TAIL_LINES}"})
    raw_follow = (query.get("follow") or "").lower()
    if raw_follow not in _TRUE + _FALSE:
        problems.append({"path": "follow", "message": "true or false"})
    if problems:
        raise ValidationFailed("invalid log query: " + "; ".join(f"{p['path']}: {p['message']}" for p in problems),
                               problems)
    return replica, tail, raw_follow in _TRUE


async def job_logs(request: web.Request) -> web.StreamResponse:
    """GET …/tfjobs/{id}/logs"""
    replica, tail, follow = log_query(request.query)
    found = await request.app[appkeys.DIAGNOSTICS].pod_log(
        request[PRINCIPAL], cluster_id=request.match_info["cid"], partition=request.match_info["partition"],
        job_id=request.match_info["id"], replica=replica, tail=tail, follow=follow and request.method != "HEAD")
    headers = {**_DIAGNOSTIC_HEADERS, "X-Replica": found.replica, "X-Pod": found.pod}
    if found.stream is None:
        return web.Response(body=found.body, headers=headers, content_type="text/plain", charset="utf-8")
    return await _follow(request, found, headers)


async def _follow(request: web.Request, found: PodLog, headers: dict[str, str]) -> web.StreamResponse:
    assert found.stream is not None
    stream = found.stream
    limits = request.app[appkeys.SETTINGS].limits
    loop = asyncio.get_running_loop()
    # The request timeout would cut a followed log mid-stream: this answer has bounds of its own.
    deadline = request.get(DEADLINE)
    if deadline is not None:
        deadline.reschedule(loop.time() + limits.log_follow_max_seconds + 2 * _CLIENT_CHECK_SECONDS)
    response = web.StreamResponse(headers=headers)
    response.content_type, response.charset = "text/plain", "utf-8"
    response.enable_chunked_encoding()
    sent, why = 0, "container ended"
    try:
        await response.prepare(request)
        async with asyncio.timeout(limits.log_follow_max_seconds):
            while sent < limits.log_follow_max_bytes:
                try:
                    chunk = await asyncio.wait_for(stream.read(), timeout=_CLIENT_CHECK_SECONDS)
                except TimeoutError:
                    if request.transport is None or request.transport.is_closing():
                        why = "client left"
                        return response
                    continue
                if not chunk:
                    break
                chunk = chunk[:limits.log_follow_max_bytes - sent]
                await response.write(chunk)
                sent += len(chunk)
            else:
                why = "logFollowMaxBytes reached"
    except TimeoutError:
        why = "logFollowMaxSeconds reached"
    except KubeError as e:
        why = f"cluster stream ended: {e.kind}"
    except (ConnectionError, RuntimeError):
        why = "client left"  # aiohttp: writing to a closed transport
        return response
    finally:
        stream.close()
        log.info("log follow ended", pod=found.pod, bytes=sent, why=why)
    await response.write_eof()
    return response


async def job_events(request: web.Request) -> web.Response:
    """GET …/tfjobs/{id}/events"""
    items = await request.app[appkeys.DIAGNOSTICS].events(
        request[PRINCIPAL], cluster_id=request.match_info["cid"], partition=request.match_info["partition"],
        job_id=request.match_info["id"])
    response = json_answer({"metadata": {"total": len(items)}, "items": items})
    response.headers.update(_DIAGNOSTIC_HEADERS)
    return response
