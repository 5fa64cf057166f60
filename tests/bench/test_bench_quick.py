"""`./run bench --quick` end to end: the suite starts everything, runs every scenario for about a second
and writes a result file in which every scenario carries its numbers. Never a threshold: the figures of
a one-second run on a shared machine mean nothing, only their presence does."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Spelled out (not imported from bench.suite) so that a scenario dropped from the suite fails here.
COMPARE = ("get_one_job", "list_small", "list_large", "patch_sequential", "patch_in_flight", "mixed_64",
           "mixed_256", "mixed_1024", "oidc_get", "get_one_job_at_n", "list_small_of_n", "create_sequential",
           "create_in_flight")
ROW_NUMBERS = ("connections", "requests", "duration_s", "rps", "p50_ms", "p90_ms", "p99_ms", "non_2xx",
               "socket_errors")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_run_reports_every_scenario_with_numbers(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    run = subprocess.run([str(ROOT / "run"), "bench", "--quick", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=420, check=False)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-6000:]}"
    result = json.loads(out.read_text())
    scenarios = result["scenarios"]
    assert set(scenarios) == {*COMPARE, "memory", "event_to_visible"}, sorted(scenarios)
    assert result["quick"] is True and result["complete"] is True

    for key in COMPARE:
        scenario = scenarios[key]
        assert scenario["kind"] == "compare", (key, scenario)
        # A LIST is also measured against the bare server answering the same bytes (its third row).
        targets = [row["target"] for row in scenario["rows"]]
        assert targets[1:] in ([targets[1]], [targets[1], "baseline-same-bytes"]), (key, targets)
        assert len(targets) == (3 if key.startswith("list_") else 2), (key, targets)
        assert key.startswith("list_") == ("ratio_same_bytes" in scenario), key
        for row in scenario["rows"]:
            assert all(_number(row[field]) for field in ROW_NUMBERS), (key, row)
            assert all(isinstance(n, int) for n in row["codes"].values()), (key, row)
        assert scenario["ratio"] is None or _number(scenario["ratio"]), (key, scenario["ratio"])
        assert scenario["ratio_of"], key

    event = scenarios["event_to_visible"]
    assert event["kind"] == "event"
    assert event["params"]["jobs"] > 0 and _number(event["latency_ms"]["count"])
    assert all(_number(v) for v in event["latency_ms"].values()), event["latency_ms"]
    assert all(_number(event["rows"][0][field]) for field in ROW_NUMBERS), event["rows"]

    memory = scenarios["memory"]
    assert memory["kind"] == "memory"
    assert memory["redis"]["jobs"] > 0
    assert all(_number(memory["redis"][f]) for f in ("bytes_per_job", "key_bytes_per_job", "used_memory"))
    assert all(_number(f["avg_bytes"]) and f["keys"] > 0 for f in memory["redis"]["families"].values())
    assert _number(memory["gateway_rss_bytes"]) and memory["gateway_rss_bytes"] > 0
