"""Shared by the deploy checks: the renders of every kustomization and the tools that judge them.

The tools (kubernetes-validate, checkov, hadolint, uv) are pyproject's `lint` dependency group, which
`./run test` installs into a venv of their own and names in $CLEVER_LINT_VENV. kubectl (for
`kubectl kustomize`) and redis-server come from Debian, also installed by `./run test`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
RBAC = DEPLOY / "rbac"

# Every kustomization an operator applies, by name. "rbac-all-modes" is the kustomization the README
# shows for a remote target with both optional auth modes; it is written out by `rbac_all_modes_dir`.
KUSTOMIZATIONS: dict[str, Path] = {
    "production": KUBERNETES,
    "demo": KUBERNETES / "overlays" / "demo",
    "redis-sentinel": KUBERNETES / "overlays" / "redis-sentinel",
    "rbac-base": RBAC / "base",
    "rbac-remote": RBAC / "remote",
}
RENDERS = [*KUSTOMIZATIONS, "rbac-all-modes"]
GATEWAY_RENDERS = ["production", "demo", "redis-sentinel"]


def lint_tool(name: str) -> Path:
    """The executable `name` of the lint venv; fails (never skips) when the venv is missing."""
    venv = Path(os.environ.get("CLEVER_LINT_VENV") or ROOT / ".venv" / "lint")
    tool = venv / "bin" / name
    assert tool.exists(), (f"{tool} is missing: run the tests with ./run test, which installs pyproject's "
                           "`lint` dependency group there")
    return tool


def system_tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not on PATH: ./run test installs it (apt)"
    return found


def kustomize(directory: Path) -> str:
    result = subprocess.run([system_tool("kubectl"), "kustomize", str(directory)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def rbac_all_modes_kustomization(rbac: Path, at: Path) -> str:
    """The README's kustomization for a remote target cluster with the sar and impersonation modes."""
    rel = os.path.relpath(rbac, at)
    return (f"resources:\n  - {rel}/remote\n"
            f"components:\n  - {rel}/sar\n  - {rel}/impersonation\n")


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """`kubectl kustomize` of every kustomization, by name (rendered once per session)."""
    out = {name: kustomize(path) for name, path in KUSTOMIZATIONS.items()}
    all_modes = tmp_path_factory.mktemp("rbac-all-modes")
    (all_modes / "kustomization.yaml").write_text(rbac_all_modes_kustomization(RBAC, all_modes))
    out["rbac-all-modes"] = kustomize(all_modes)
    return out


@pytest.fixture(scope="session")
def render_files(renders: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each render written to a file `<name>.yaml` in one directory."""
    directory = tmp_path_factory.mktemp("renders")
    files = {}
    for name, text in renders.items():
        files[name] = directory / f"{name}.yaml"
        files[name].write_text(text)
    return files


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> Iterator[dict[str, Any]]:
    for doc in docs:
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name):
            yield doc


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = list(find(docs, kind, name))
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in found])
    return found[0]


def generated(docs: list[dict[str, Any]], kind: str, prefix: str) -> dict[str, Any]:
    """The generated ConfigMap/Secret whose name is `prefix` plus kustomize's hash suffix."""
    found = [d for d in find(docs, kind) if d["metadata"]["name"].rsplit("-", 1)[0] == prefix]
    assert len(found) == 1, (kind, prefix)
    return found[0]
