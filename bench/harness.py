"""How the suite measures: the processes it runs, the comparison of two sides under wrk, the fills.

`Harness.start()` brings up, on loopback and under one temporary directory: its own `redis-server` (no
persistence), kubesim (`python -m kubesim ... --time-scale 1 --scenario hold --kubeconfig ...`), the
gateway (`clever-gateway serve --config <generated>`: production defaults except the cluster, Redis,
auth, logging and `limits.writesPerUserPerMinute: 0`) and the baseline (`python -m bench.baseline`).
With two CPUs the gateway(s) and the baseline run on CPU 1 (`taskset -c 1`); wrk, Redis, kubesim,
py-spy and the driver itself on CPU 0, kubesim at nice 10 while reads are measured (its controllers
must not starve wrk and Redis; reads never reach it) and at 0 while filling or measuring writes.
`Harness.stop()` ends them all (also on Ctrl-C and failure).

`compare()` measures two sides (the first against the second) with the same wrk load: a warm-up per
side, then interleaved rounds (A B, B A, ...); a run in which nothing was answered is run again once,
four times as long. Requests/s sum over rounds, p50/p99 are the median of the rounds'; each row also
gives the CPU used (% of one CPU) by the serving process, Redis and kubesim during its runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import yaml
from redis import asyncio as redis_asyncio

from bench import report
from bench.baseline import KEY_PREFIX as BASELINE_PREFIX
from bench.clients import JOBS_PATH, RUNTIME, KubeSim, Legacy
from bench.fill import Filler
from bench.procs import Proc, Processes, can_pin, cpu_seconds, free_port, wait_until
from bench.wrk import Req, Wrk, WrkResult

ROOT = Path(__file__).resolve().parents[1]
KEY_PREFIX = "cg:"
TOKEN = "bench-kubesim-token"
# Who asks /api/ping for the detail (the watch state) when auth is off.
BENCH_ADMIN = "bench-admin"
MEASURE_NICENESS = 10
RUNTIMES = {
    RUNTIME: {"image": "tensorflow/tensorflow:2.15.0", "gpuImage": "tensorflow/tensorflow:2.15.0-gpu",
              "command": ["python3"]},
    "Python_2.7+Tensorflow_1.2.1": {"image": "tensorflow/tensorflow:1.2.1",
                                    "gpuImage": "tensorflow/tensorflow:1.2.1-gpu", "command": ["python2"]},
}


@dataclass
class Plan:
    """How big and how long: the full defaults, or `--quick`, then explicit options."""

    quick: bool
    jobs: int
    list_small: int
    list_large: int
    duration: float
    warmup: float
    rounds: int
    write_duration: float
    write_rounds: int
    connections: int
    list_connections: int
    mixed_connections: tuple[int, ...]
    event_jobs: int
    event_spacing: float
    event_timeout: float
    event_trigger: str
    fill_concurrency: int
    fill_timeout: float
    settle_timeout: float
    profile: bool
    log_level: str
    only: tuple[str, ...]

    @classmethod
    def from_args(cls, args: argparse.Namespace, known: Sequence[str]) -> Plan:
        """The plan of these command-line options (`known`: scenario names `--only` may name)."""
        q = args.quick

        def pick(value: Any, full: Any, quick: Any) -> Any:
            return value if value is not None else (quick if q else full)

        only = tuple(s for s in (args.only or "").split(",") if s)
        unknown = set(only) - set(known)
        if unknown:
            raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(known)}")
        return cls(
            quick=q, jobs=pick(args.jobs, 10_000, 200), list_small=pick(args.list_small, 100, 20),
            list_large=pick(args.list_large, 1000, 100), duration=pick(args.duration, 10, 1),
            warmup=pick(args.warmup, 2, 1), rounds=pick(args.rounds, 3, 1),
            write_duration=pick(args.write_duration, 5, 1), write_rounds=pick(args.write_rounds, 4, 1),
            connections=64, list_connections=pick(args.list_connections, 64, 4),
            mixed_connections=(64, 256, 1024), event_jobs=pick(args.event_jobs, 50, 5),
            event_spacing=0.1 if q else 0.2, event_timeout=pick(args.event_timeout, 120, 30),
            event_trigger=args.event_trigger, fill_concurrency=args.fill_concurrency,
            fill_timeout=pick(args.fill_timeout, 3600, 120), settle_timeout=0.5 if q else 5,
            profile=args.profile, log_level=args.gateway_log_level, only=only)

    def wants(self, scenario: str) -> bool:
        """Whether this scenario runs (`--only`)."""
        return not self.only or scenario in self.only


class Side(NamedTuple):
    """One side of a comparison: what wrk loads, and the process serving it (for its CPU use)."""

    label: str
    url: str
    script: Path
    pid: int


class Harness:
    """The processes, clients and results of one run (see module docstring)."""

    def __init__(self, plan: Plan, tmp: Path) -> None:
        self.plan = plan
        self.tmp = tmp
        self.procs = Processes(tmp)
        pinned = can_pin()
        self.server_cpu = 1 if pinned else None
        self.load_cpu = 0 if pinned else None
        wrk_binary = shutil.which("wrk")
        if wrk_binary is None:
            raise SystemExit("wrk is not installed (./run bench installs it with apt-get)")
        self.wrk = Wrk(binary=wrk_binary, workdir=tmp, cpu=self.load_cpu)
        self.bin = Path(sys.executable).parent
        self.scenarios: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []
        self.counts: dict[str, Any] = {}
        self.started = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self.load_before = os.getloadavg()

    # ----- processes ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Redis, kubesim, the gateway and the baseline, each ready."""
        report.progress(f"starting redis, kubesim, gateway and baseline under {self.tmp} (gateway and "
                        f"baseline on CPU {self.server_cpu}, the rest on CPU {self.load_cpu})")
        if self.load_cpu is not None:
            os.sched_setaffinity(0, {self.load_cpu})
        else:
            self.notes.append("fewer than 2 CPUs or no taskset: nothing pinned")
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        port = free_port()
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        (self.tmp / "redis").mkdir()
        self.redis_proc = await self.procs.start(
            "redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                      "--appendonly", "no", "--dir", str(self.tmp / "redis")], cpu=self.load_cpu)
        self.redis = redis_asyncio.Redis.from_url(self.redis_url)
        await wait_until(self.redis.ping, timeout=20, what="redis-server to answer", proc=self.redis_proc)

        kubeconfig = self.tmp / "kubeconfig"
        self.kubesim_proc = await self.procs.start(
            "kubesim", [sys.executable, "-m", "kubesim", "--port", str(free_port()), "--token", TOKEN,
                        "--namespaces", "clever,default", "--time-scale", "1", "--scenario", "hold",
                        "--kubeconfig", str(kubeconfig)], cpu=self.load_cpu, cwd=ROOT)

        async def kubeconfig_written() -> bool:
            return "kubeconfig:" in self.kubesim_proc.log.read_text()

        await wait_until(kubeconfig_written, timeout=60, what="kubesim to start", proc=self.kubesim_proc)
        cluster = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]
        self.kubesim_url, self.ca_file = cluster["server"], cluster["certificate-authority"]
        self.kube = KubeSim(self.session, self.kubesim_url, token=TOKEN, ca_file=self.ca_file)

        (self.gateway, self.gateway_url), _ = await asyncio.gather(
            self.start_gateway("gateway", {"mode": "none"}), self.start_baseline())
        self.api = Legacy(self.session, self.gateway_url)
        self.kubesim_niceness(MEASURE_NICENESS)
        report.progress("all started")

    async def start_baseline(self) -> None:
        """The baseline server, ready."""
        port = free_port()
        self.baseline_proc = await self.procs.start(
            "baseline", [sys.executable, "-m", "bench.baseline", "--port", str(port),
                         "--redis-url", self.redis_url], cpu=self.server_cpu, cwd=ROOT)
        self.baseline_url = f"http://127.0.0.1:{port}"
        await self.redis.set(BASELINE_PREFIX + "ready", b"{}")

        async def ready() -> bool:
            async with self.session.get(self.baseline_url + "/kv/ready") as r:
                return r.status == 200

        await wait_until(ready, timeout=30, what="the baseline to answer", proc=self.baseline_proc)

    def gateway_config(self, name: str, port: int, auth: dict[str, Any]) -> Path:
        """A gateway configuration file (production defaults but for what the module docstring says;
        no write limit: the fill and the write scenarios are one user writing fast)."""
        config = {
            "listen": {"host": "127.0.0.1", "port": port},
            "redis": {"url": self.redis_url, "keyPrefix": KEY_PREFIX},
            "auth": auth,
            "limits": {"writesPerUserPerMinute": 0},
            "logging": {"level": self.plan.log_level, "format": "json"},
            "clusters": [{"id": "c1", "server": self.kubesim_url, "token": TOKEN, "caFile": self.ca_file,
                          "backend": "training-operator", "runtimes": RUNTIMES}],
        }
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    async def start_gateway(self, name: str, auth: dict[str, Any],
                            admin_headers: Mapping[str, str] | None = None) -> tuple[Proc, str]:
        """Start one gateway process; ready once /api/ping answers 200 with the cluster's watch live.
        Only an admin is told the watch's state: with auth off the harness's own admin user, else the
        caller's `admin_headers` (an admin's token)."""
        if admin_headers is None:
            if auth.get("mode") != "none":
                raise ValueError("start_gateway needs admin_headers unless auth is off")
            auth = {**auth, "adminUsers": [BENCH_ADMIN]}
            admin_headers = {"X-User": BENCH_ADMIN}
        port = free_port()
        config = self.gateway_config(name, port, auth)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLEVER_GATEWAY")}
        executable = self.bin / "clever-gateway"
        command = str(executable) if executable.exists() else "clever-gateway"
        proc = await self.procs.start(name, [command, "serve", "--config", str(config)], cpu=self.server_cpu,
                                      env=env, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"

        async def ready() -> bool:
            async with self.session.get(url + "/api/ping", headers=admin_headers) as r:
                body = await r.json(content_type=None)
                return r.status == 200 and bool(body["clusters"]["c1"].get("watchLive"))

        await wait_until(ready, timeout=60, what=f"{name} to be ready (watch live)", proc=proc)
        return proc, url

    def kubesim_niceness(self, niceness: int) -> None:
        """kubesim's scheduling priority (see module docstring)."""
        try:
            os.setpriority(os.PRIO_PROCESS, self.kubesim_proc.pid, niceness)
        except OSError as e:
            note = f"could not set kubesim's niceness to {niceness}: {e}"
            if note not in self.notes:
                self.notes.append(note)

    async def stop(self) -> None:
        """Everything down (idempotent)."""
        report.progress("stopping everything")
        self.wrk.kill_all()
        await self.procs.stop_all()
        for closing in ("redis", "session"):
            if hasattr(self, closing):
                with contextlib.suppress(Exception):
                    await (self.redis.aclose() if closing == "redis" else self.session.close())

    # ----- loads and sides ---------------------------------------------------------------------------

    def script(self, pools: dict[str, list[Req]], pattern: Sequence[str] | None = None) -> Path:
        """A wrk script for this load shape."""
        return self.wrk.write_script(pools, pattern)

    @staticmethod
    def get_reqs(user: str, ids: Sequence[str]) -> list[Req]:
        """The GET of each of these jobs."""
        return [Req("GET", f"{JOBS_PATH}/{i}", {"X-User": user}) for i in ids]

    def gateway_side(self, script: Path) -> Side:
        """The gateway under this load."""
        return Side("gateway", self.gateway_url, script, self.gateway.pid)

    def baseline_side(self, payload: str) -> Side:
        """The baseline serving one stored payload (see `store_payload`)."""
        return Side("baseline", self.baseline_url, self.script({"b": [Req("GET", f"/kv/{payload}")]}),
                    self.baseline_proc.pid)

    def kubesim_side(self, script: Path) -> Side:
        """kubesim itself under this load."""
        return Side("kubesim", self.kubesim_url, script, self.kubesim_proc.pid)

    async def store_payload(self, name: str, payload: bytes) -> None:
        """Put bytes the gateway answered where the baseline serves them."""
        await self.redis.set(BASELINE_PREFIX + name, payload)

    # ----- measuring ---------------------------------------------------------------------------------

    async def settle(self) -> None:
        """Wait (at most `settle_timeout`) until the gateway is idle (< 5% of a CPU over 0.25 s), so
        that background work left by a run (the watch events of its writes) is not billed to the next."""
        deadline = time.monotonic() + self.plan.settle_timeout
        while time.monotonic() < deadline:
            before = cpu_seconds(self.gateway.pid)
            await asyncio.sleep(0.25)
            if cpu_seconds(self.gateway.pid) - before < 0.05 * 0.25:
                return

    async def measured(self, side: Side, connections: int,
                       duration: float) -> tuple[WrkResult, dict[str, float]]:
        """One wrk run, with the CPU use (% of one CPU) of the serving process, Redis and kubesim."""
        pids = {"server": side.pid, "redis": self.redis_proc.pid, "kubesim": self.kubesim_proc.pid}
        before = {k: cpu_seconds(pid) for k, pid in pids.items()}
        start = time.monotonic()
        result = await self.wrk.run(side.url, side.script, connections=connections, duration=duration)
        elapsed = time.monotonic() - start
        return result, {k: 100 * (cpu_seconds(pid) - before[k]) / elapsed for k, pid in pids.items()}

    async def compare(self, key: str, title: str, sides: Sequence[Side], *, connections: int,
                      ratio: str = "rps", rounds: int | None = None, duration: float | None = None,
                      writes: bool = False, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Measure `sides[0]` against `sides[1]` (see module docstring) and record scenario `key`. Ratio
        `rps`: req/s of the first / of the second; `p50`: p50 of the first / of the second. With
        `writes`, the gateway settles before every run and kubesim runs at full priority (both sides
        need it); otherwise kubesim is niced, reads never touch it."""
        started = time.monotonic()
        rounds = rounds or self.plan.rounds
        duration = duration or self.plan.duration
        report.progress(f"[{key}] {title}: {rounds} round(s) x {duration:g}s, {connections} connections")
        self.kubesim_niceness(0 if writes else MEASURE_NICENESS)  # writes need kubesim on both sides
        try:
            return await self._compare(key, title, sides, connections=connections, ratio=ratio, rounds=rounds,
                                       duration=duration, writes=writes, params=params or {}, started=started)
        finally:
            self.kubesim_niceness(MEASURE_NICENESS)

    async def _compare(self, key: str, title: str, sides: Sequence[Side], *, connections: int, ratio: str,
                       rounds: int, duration: float, writes: bool, params: dict[str, Any],
                       started: float) -> dict[str, Any]:
        await self.settle()
        for side in sides:
            if writes:
                await self.settle()
            await self.wrk.run(side.url, side.script, connections=connections, duration=self.plan.warmup)
        runs: dict[str, list[WrkResult]] = {side.label: [] for side in sides}
        cpu: dict[str, list[dict[str, float]]] = {side.label: [] for side in sides}
        extended: Counter[str] = Counter()
        for r in range(rounds):
            for side in sides if r % 2 == 0 else list(reversed(sides)):
                if writes:
                    await self.settle()
                result, used = await self.measured(side, connections, duration)
                if result.requests == 0:  # nothing answered in time (a stalled kubesim): once, 4x longer
                    extended[side.label] += 1
                    result, used = await self.measured(side, connections, 4 * duration)
                runs[side.label].append(result)
                cpu[side.label].append(used)
        merged = {label: report.merge(results) for label, results in runs.items()}
        rows = [{"target": side.label, **merged[side.label].to_json(),
                 "rounds_rps": [round(x.rps, 1) for x in runs[side.label]],
                 "extended_runs": extended[side.label],
                 "cpu_pct": {k: round(statistics.mean(u[k] for u in cpu[side.label]), 1)
                             for k in ("server", "redis", "kubesim")}}
                for side in sides]
        first, second = merged[sides[0].label], merged[sides[1].label]
        value: float | None
        if ratio == "rps":
            value = first.rps / second.rps if second.rps else None
        else:
            value = first.pct_ms(50) / second.pct_ms(50) if second.pct_ms(50) else None
        self.scenarios[key] = {
            "title": title, "kind": "compare", "rows": rows,
            "ratio": round(value, 4) if value is not None else None,
            "ratio_of": f"{'req/s' if ratio == 'rps' else 'p50'} {sides[0].label}/{sides[1].label}",
            "params": {"connections": connections, "rounds": rounds, "duration_s": duration,
                       "kubesim_niceness": 0 if writes else MEASURE_NICENESS, **params},
            "elapsed_s": round(time.monotonic() - started, 1)}
        self.print_rows(key)
        return self.scenarios[key]

    def print_rows(self, key: str) -> None:
        """One scenario's lines of the table, as soon as measured."""
        print(report.table({key: self.scenarios[key]}).split("\n", 2)[-1], file=sys.stderr, flush=True)

    async def profile(self, key: str, script: Path, connections: int) -> None:
        """py-spy on the gateway during one more run of this load: its top functions, kept in `key`."""
        local = self.bin / "py-spy"
        pyspy = str(local) if local.exists() else shutil.which("py-spy")
        if pyspy is None:
            self.notes.append("--profile: py-spy not found (pip install py-spy into .venv); no profile taken")
            return
        seconds = max(3, round(self.plan.duration))
        out = self.tmp / f"profile-{key}.txt"
        # --gil: only samples holding the GIL, i.e. Python at work (not idle executor threads, not epoll)
        argv = [pyspy, "record", "--pid", str(self.gateway.pid), "--duration", str(seconds), "--gil",
                "--rate", "100", "--format", "raw", "--output", str(out)]
        if self.load_cpu is not None:
            argv = ["taskset", "-c", str(self.load_cpu), *argv]
        await self.settle()
        spy = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.PIPE, start_new_session=True)
        err = b""
        try:
            await asyncio.sleep(0.5)
            load = await self.wrk.run(self.gateway_url, script, connections=connections, duration=seconds + 1)
            _, err = await asyncio.wait_for(spy.communicate(), timeout=seconds + 30)
        finally:
            if spy.returncode is None:
                spy.kill()
                await spy.wait()
        if not out.exists():
            self.notes.append(f"--profile {key}: py-spy wrote nothing: {err.decode(errors='replace')[-300:]}")
            return
        self.scenarios[key]["profile"] = {"tool": "py-spy record --gil --rate 100 --format raw",
                                          "seconds": seconds, "connections": connections,
                                          "load_rps": round(load.rps, 1),
                                          **report.top_functions(out.read_text())}

    # ----- filling -----------------------------------------------------------------------------------

    async def fill(self, targets: dict[str, int], label: str) -> dict[str, int]:
        """Bring users to these job counts through the gateway (bounded by `fill_timeout`; kubesim at
        full priority meanwhile); the counts reached."""
        filler = Filler(self.api, concurrency=self.plan.fill_concurrency, label=label)
        start = time.monotonic()
        self.kubesim_niceness(0)
        try:
            counts = await filler.fill(targets, deadline=start + self.plan.fill_timeout)
        finally:
            self.kubesim_niceness(MEASURE_NICENESS)
        self.counts.setdefault("fills", []).append({
            "label": label, "targets": sum(targets.values()), "reached": sum(counts.values()),
            "created": filler.created, "failed_creates": filler.failures,
            "seconds": round(time.monotonic() - start, 1)})
        return counts
