"""The suite's output: merged wrk rounds, the printed table, the JSON result file, py-spy top-N.

Result file (`bench/results/latest.json` unless `--out`): `{"suite", "started", "finished", "command",
"git", "machine", "params", "scenarios": {key: scenario}}`. A comparison scenario is `{"title", "kind":
"compare", "params", "rows": [{"target", "rps", "p50_ms", "p99_ms", "non_2xx", ...}], "ratio",
"ratio_of"}` with the measured target first and its reference second; `event_to_visible` and
`memory` carry their own figures (see the README's Benchmarks section).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.wrk import WrkResult

_STARTED = time.monotonic()


def progress(message: str) -> None:
    """One line of progress on stderr, with the seconds since the suite started."""
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def merge(runs: Sequence[WrkResult]) -> WrkResult:
    """Several runs of one target as one: counts and durations summed, percentiles the median of the runs'."""
    if len(runs) == 1:
        return runs[0]
    codes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for run in runs:
        codes.update(run.codes)
        errors.update(run.errors)
    keys = runs[0].percentiles_us.keys()
    requests = sum(r.requests for r in runs)
    mean = sum(r.latency_us.get("mean", 0) * r.requests for r in runs) / requests if requests else 0.0
    return WrkResult(connections=runs[0].connections, requests=requests,
                     duration_s=sum(r.duration_s for r in runs),
                     latency_us={"max": max(r.latency_us.get("max", 0) for r in runs), "mean": mean},
                     percentiles_us={k: statistics.median(r.percentiles_us.get(k, 0) for r in runs)
                                     for k in keys},
                     codes=dict(codes), errors=dict(errors))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(min(rank, len(ordered))) - 1]


def top_functions(raw_stacks: str, n: int = 10) -> dict[str, Any]:
    """From py-spy's raw (collapsed) stacks: the top-`n` functions by own samples (`by_own`), and the
    top-`n` functions of the project (gateway/, translators/) by inclusive samples (`by_total`: where
    the time goes, below the event loop's frames that every sample shares)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    project: set[str] = set()
    samples = 0
    for line in raw_stacks.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        count = int(count_text)
        samples += count
        own[frames[-1][0]] += count
        for name, ours in set(frames):
            total[name] += count
            if ours:
                project.add(name)

    def rows(names: Sequence[str]) -> list[dict[str, Any]]:
        return [{"function": f, "own_pct": round(100 * own[f] / max(samples, 1), 1),
                 "total_pct": round(100 * total[f] / max(samples, 1), 1)} for f in names]

    by_total = sorted(project, key=lambda f: -total[f])[:n]
    return {"samples": samples, "by_own": rows([f for f, _ in own.most_common(n)]),
            "by_total": rows(by_total)}


def _function(frame: str) -> tuple[str, bool]:
    """`name (pkg/mod.py:123)` -> (`name (pkg/mod.py)`, whether it is the project's code): the lines of
    one function merged. py-spy names files relative to their sys.path entry; full paths are cut
    after `site-packages/`."""
    name, _, where = frame.partition(" (")
    if not where:
        return name, False
    path = where.rstrip(")").rsplit(":", 1)[0].rsplit("site-packages/", 1)[-1]
    for package in ("gateway/", "translators/"):
        if path.startswith(package) or f"/{package}" in path:
            path = package + path.rsplit(package, 1)[1]
            return f"{name} ({path})", True
    return f"{name} ({path})", False


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"


def table(scenarios: dict[str, dict[str, Any]]) -> str:
    """The human table: one line per measured target, the ratio on the first line of each scenario."""
    head = (f"{'scenario':<34} {'target':<12} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>9} "
            f"{'non-2xx':>8} {'sock err':>8} {'cpu%':>5}  ratio")
    lines = [head, "-" * len(head)]
    for scenario in scenarios.values():
        kind = scenario.get("kind")
        if kind == "compare":
            for i, row in enumerate(scenario["rows"]):
                title = scenario["title"] if i == 0 else ""
                ratio = ""
                if i == 0 and scenario.get("ratio") is not None:
                    ratio = f"x{scenario['ratio']:.3f} {scenario['ratio_of']}"
                cpu = (row.get("cpu_pct") or {}).get("server")
                lines.append(f"{title[:34]:<34} {row['target'][:12]:<12} {row['connections']:>5} "
                             f"{_fmt(row['rps'], '9.1f')} {_fmt(row['p50_ms'], '8.2f')} "
                             f"{_fmt(row['p99_ms'], '9.2f')} {row['non_2xx']:>8} {row['socket_errors']:>8} "
                             f"{_fmt(cpu, '5.0f'):>5}  {ratio}")
        elif kind == "event":
            lat = scenario["latency_ms"]
            load = scenario["rows"][0] if scenario.get("rows") else None
            lines.append(f"{scenario['title'][:34]:<34} {'watch→GET':<12} {'':>5} {'':>9} "
                         f"{_fmt(lat.get('p50'), '8.2f')} {_fmt(lat.get('p99'), '9.2f')} {'':>8} {'':>8}  "
                         f"{lat.get('count', 0)}/{scenario['params']['jobs']} jobs seen")
            if load is not None:
                lines.append(f"{'  (reads in the background)':<34} {'gateway GET':<12} "
                             f"{load['connections']:>5} {_fmt(load['rps'], '9.1f')} "
                             f"{_fmt(load['p50_ms'], '8.2f')} {_fmt(load['p99_ms'], '9.2f')} "
                             f"{load['non_2xx']:>8} {load['socket_errors']:>8}")
        elif kind == "memory":
            redis = scenario["redis"]
            lines.append(f"{scenario['title'][:34]:<34} Redis "
                         f"{_fmt(redis.get('bytes_per_job'), ',.0f')} B/job "
                         f"(used_memory delta over {redis.get('jobs')} jobs); keys per job "
                         f"{_fmt(redis.get('key_bytes_per_job'), ',.0f')} B (MEMORY USAGE); gateway RSS "
                         f"{_fmt(scenario['gateway_rss_bytes'] / 2**20, '.1f')} MiB "
                         f"(at start {_fmt(scenario['gateway_rss_start_bytes'] / 2**20, '.1f')} MiB)")
    return "\n".join(lines)


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write the result file (directories created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
