"""bench/bench_kubesim.py works: its --quick mode starts `python -m kubesim`, fills it (with TFJobs, or with
JobSets) and writes its JSON.

Only that the script runs and reports is checked: no rate or time is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["tfjob", "jobset"])
def test_quick_mode_fills_kubesim_and_writes_the_result(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "kubesim.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_kubesim.py"), "--quick", "--kind", kind,
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["jobs"] == 300 and result["kind"] == kind and result["concurrency"] == 16
    assert [(band["first"], band["last"]) for band in result["bands"]] == [(0, 100), (100, 200), (200, 300)]
    assert all(band["creates_per_s"] > 0 for band in result["bands"]) and result["last_to_first"] > 0
    assert result["pods_running"] == 300 and result["settle_seconds"] is not None
    assert "last band / first band" in done.stdout and f"written: {out}" in done.stdout
