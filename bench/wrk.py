"""wrk as the load generator: a Lua script per load shape, one JSON summary from wrk's `done()` hook.

A load shape is a set of named request pools and a pattern: request k goes to pool `pattern[k % len]`,
and each pool hands out its requests round-robin from a random start. A request body (or path) may hold `@@UNIQ@@`, replaced
per request by 12 lowercase hex digits unique within the suite run (a nonce given to each wrk run, the
wrk thread, a counter): create names, job ids and PATCH descriptions are new on every request, also
when one script serves the warm-up and several rounds.

The script counts every response status in `response()`, and `done()` prints one line
`WRK_JSON {...}`: requests, duration, socket errors, latency percentiles (µs) and the status counts,
summed over wrk's threads. Nothing is scraped from wrk's human output. `run_wrk` stops wrk with SIGINT
when its `stop` event is set (wrk then reports what it did so far), else after `duration` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UNIQ = "@@UNIQ@@"
PERCENTILES = (50, 75, 90, 99, 99.9)
_nonces = itertools.count(int.from_bytes(os.urandom(2), "big") << 4)


@dataclass(frozen=True)
class Req:
    """One request of a pool (`path`/`body` may contain `@@UNIQ@@`)."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None


@dataclass
class WrkResult:
    """What one wrk run measured."""

    connections: int
    requests: int
    duration_s: float
    latency_us: dict[str, float]
    percentiles_us: dict[str, float]
    codes: dict[str, int]
    errors: dict[str, int]

    @property
    def rps(self) -> float:
        """Completed requests per second (any status)."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def non_2xx(self) -> int:
        """Answers with a status outside 200-299."""
        return self.requests - sum(n for code, n in self.codes.items() if code.startswith("2"))

    @property
    def socket_errors(self) -> int:
        """Connect/read/write errors and timeouts (requests with no answer at all)."""
        return sum(self.errors.get(k, 0) for k in ("connect", "read", "write", "timeout"))

    def pct_ms(self, q: float) -> float:
        """Latency percentile q in milliseconds."""
        return self.percentiles_us.get(_q(q), 0.0) / 1000

    def to_json(self) -> dict[str, Any]:
        """The row of the result file."""
        return {"connections": self.connections, "requests": self.requests,
                "duration_s": round(self.duration_s, 3), "rps": round(self.rps, 1),
                "p50_ms": round(self.pct_ms(50), 3), "p90_ms": round(self.pct_ms(90), 3),
                "p99_ms": round(self.pct_ms(99), 3), "max_ms": round(self.latency_us.get("max", 0) / 1000, 3),
                "non_2xx": self.non_2xx, "codes": dict(sorted(self.codes.items())),
                "socket_errors": self.socket_errors, "errors": self.errors}


def _q(q: float) -> str:
    return f"{q:g}"


def lua_string(text: str) -> str:
    """`text` as a Lua string literal (bytes outside printable ASCII as decimal escapes)."""
    out = []
    for byte in text.encode():
        if 32 <= byte < 127 and byte not in (34, 92):
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def _lua_req(req: Req) -> str:
    headers = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in req.headers.items())
    body = lua_string(req.body) if req.body is not None else "nil"
    dynamic = "true" if UNIQ in req.path or (req.body is not None and UNIQ in req.body) else "false"
    return (f"{{method = {lua_string(req.method)}, path = {lua_string(req.path)}, headers = {{{headers}}}, "
            f"body = {body}, dyn = {dynamic}}}")


_LUA_BODY = r"""
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  nonce = args[1] or "00000"
  math.randomseed(tonumber(nonce, 16) + (tid or 0))
  codes = {}
  counter = 0
  pos = {}
  step = tid or 0
  prebuilt = {}
  for name, pool in pairs(pools) do
    -- a random start: a run does not begin with the jobs the previous run's last requests still hold
    pos[name] = math.random(#pool) - 1
    prebuilt[name] = {}
    for i, r in ipairs(pool) do
      if not r.dyn then prebuilt[name][i] = wrk.format(r.method, r.path, r.headers, r.body) end
    end
  end
end

function request()
  step = step + 1
  local name = pattern[(step - 1) % #pattern + 1]
  local pool = pools[name]
  local i = pos[name] % #pool + 1
  pos[name] = i
  local ready = prebuilt[name][i]
  if ready then return ready end
  local r = pool[i]
  counter = counter + 1
  local uniq = string.format("%s%x%06x", nonce, tid or 0, counter)
  local body = r.body
  if body then body = body:gsub("@@UNIQ@@", uniq) end
  return wrk.format(r.method, (r.path:gsub("@@UNIQ@@", uniq)), r.headers, body)
end

function response(status, headers, body)
  local key = tostring(status)
  codes[key] = (codes[key] or 0) + 1
end

function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    local c = t:get("codes") or {}
    for k, v in pairs(c) do agg[k] = (agg[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(agg) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  local pct = {}
  for _, q in ipairs(percentiles) do
    pct[#pct + 1] = string.format('"%s":%d', q[2], latency:percentile(q[1]))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f},"percentiles_us":{%s},"codes":{%s}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(pct, ","), table.concat(parts, ",")))
end
"""


def lua_script(pools: Mapping[str, Sequence[Req]], pattern: Sequence[str] | None = None) -> str:
    """The wrk script for these pools (pattern: which pool each request comes from, cyclically)."""
    if not pools or any(not reqs for reqs in pools.values()):
        raise ValueError("every pool needs at least one request")
    pattern = list(pattern or [next(iter(pools))])
    unknown = set(pattern) - set(pools)
    if unknown:
        raise ValueError(f"pattern names unknown pools: {sorted(unknown)}")
    lines = ["-- generated by bench/wrk.py",
             "percentiles = {" + ", ".join(f"{{{q}, {lua_string(_q(q))}}}" for q in PERCENTILES) + "}",
             "pattern = {" + ", ".join(lua_string(p) for p in pattern) + "}", "pools = {}"]
    for name, reqs in pools.items():
        lines.append(f"pools[{lua_string(name)}] = {{")
        lines.extend(f"  {_lua_req(r)}," for r in reqs)
        lines.append("}")
    return "\n".join(lines) + "\n" + _LUA_BODY


def parse_output(text: str, connections: int) -> WrkResult:
    """The `WRK_JSON` line of wrk's output."""
    for line in text.splitlines():
        if line.startswith("WRK_JSON "):
            data = json.loads(line[len("WRK_JSON "):])
            return WrkResult(connections=connections, requests=int(data["requests"]),
                             duration_s=data["duration_us"] / 1e6, latency_us=data["latency_us"],
                             percentiles_us={k: float(v) for k, v in data["percentiles_us"].items()},
                             codes={k: int(v) for k, v in data["codes"].items()}, errors=data["errors"])
    raise RuntimeError(f"wrk printed no WRK_JSON line:\n{text[-2000:]}")


class Wrk:
    """Runs wrk (pinned to a CPU when given) with scripts written under `workdir`."""

    def __init__(self, *, binary: str, workdir: Path, cpu: int | None, threads: int = 1,
                 timeout_s: float = 30.0) -> None:
        self.binary = binary
        self.workdir = workdir
        self.cpu = cpu
        self.threads = threads
        self.timeout_s = timeout_s
        self._scripts = itertools.count()
        self.running: set[asyncio.subprocess.Process] = set()

    def write_script(self, pools: Mapping[str, Sequence[Req]], pattern: Sequence[str] | None = None) -> Path:
        """Write a script for this load shape; returns its path."""
        path = self.workdir / f"load-{next(self._scripts)}.lua"
        path.write_text(lua_script(pools, pattern))
        return path

    async def run(self, url: str, script: Path, *, connections: int, duration: float,
                  stop: asyncio.Event | None = None) -> WrkResult:
        """Run wrk against `url` for `duration` seconds (whole seconds, at least 1) or until `stop`."""
        threads = max(1, min(self.threads, connections))
        argv = [self.binary, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
                f"--timeout={max(1, round(self.timeout_s))}s", "-s", str(script), url,
                "--", f"{next(_nonces) % 0x100000:05x}"]
        if self.cpu is not None:
            argv = ["taskset", "-c", str(self.cpu), *argv]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        self.running.add(proc)
        try:
            communicate = asyncio.ensure_future(proc.communicate())
            if stop is not None:
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({communicate, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not communicate.done():
                    proc.send_signal(signal.SIGINT)  # wrk reports what it measured so far
                stopper.cancel()
            out, _ = await communicate
        finally:
            self.running.discard(proc)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        return parse_output(out.decode(errors="replace"), connections)

    def kill_all(self) -> None:
        """Kill every wrk still running (Ctrl-C or failure)."""
        for proc in list(self.running):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
