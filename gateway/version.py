"""Build identity of the running gateway, served by `GET /api/version`.

The gateway's own version, commit and build date only: nothing about the runtime (Python, aiohttp),
which would tell an attacker which known bugs to try.

`gitCommit` and `buildDate` come from the environment (`CLEVER_GATEWAY_GIT_COMMIT`,
`CLEVER_GATEWAY_BUILD_DATE`, set by the image build); in a source checkout the commit falls back to
`git rev-parse HEAD`, and to "unknown" when neither is available.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

VERSION = "0.1.0"
API_VERSIONS: tuple[str, ...] = ("v1alpha1", "v1alpha2")


@functools.cache
def git_commit() -> str:
    """The commit the gateway was built from, or "unknown"."""
    from_env = os.environ.get("CLEVER_GATEWAY_GIT_COMMIT")
    if from_env:
        return from_env
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=2, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def version_info() -> dict[str, Any]:
    """The legacy version object."""
    return {
        "version": VERSION,
        "gitCommit": git_commit(),
        "buildDate": os.environ.get("CLEVER_GATEWAY_BUILD_DATE", "unknown"),
        "apiVersions": list(API_VERSIONS),
    }
