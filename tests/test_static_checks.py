"""Static gates, run as tests so CI enforces them: the layering of DESIGN §5 (import-linter),
strict typing (mypy, configured in pyproject) and lint (ruff)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("command", [
    ["lint-imports"],
    ["mypy"],
    ["ruff", "check", "gateway", "translators", "kubesim", "tests", "bench"],
], ids=["layers", "mypy-strict", "ruff"])
def test_static_check_passes(command: list[str]) -> None:
    result = subprocess.run([str(BIN / command[0]), *command[1:]], check=False, cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
