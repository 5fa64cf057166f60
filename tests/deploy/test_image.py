"""The image, without a Docker engine: its Dockerfile's build steps run here (deploy/build-venv.sh on the
very files the Dockerfile copies) and the resulting venv is what the image ships. It holds exactly the
hash-locked runtime dependencies (with the `tracing` extra) plus gateway and translators: no kubesim, no
fakeredis, no test tool. The locks are in step with pyproject.toml."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.deploy.conftest import DEPLOY, ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = DEPLOY / "requirements.lock"
BUILD_LOCK = DEPLOY / "requirements-build.lock"
# uv locks for `--python-version 3.11`, i.e. any 3.11.x: markers are judged at 3.11.0 on Linux.
LOCK_ENVIRONMENT = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
                    "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
                    "platform_python_implementation": "CPython", "platform_machine": "x86_64"}


def read_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a `pip-compile --generate-hashes`-style lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in path.read_text().splitlines():
        pinned = re.match(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)", line)
        if pinned:
            name = canonicalize_name(pinned[1])
            entries[name] = (pinned[2], [])
        for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            entries[name][1].append(digest)
    return entries


def pins(requirements: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in requirements:
        requirement = Requirement(text)
        (spec,) = requirement.specifier
        assert spec.operator == "==", text
        out[canonicalize_name(requirement.name)] = spec.version
    return out


def test_lock_holds_every_runtime_pin_hashed() -> None:
    lock = read_lock(LOCK)
    assert "./run lock" in LOCK.read_text().split("\n", 3)[1]
    # The image can trace: the `tracing` extra is part of its runtime.
    runtime = pins([*PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"]["tracing"]])
    assert {name: lock[name][0] for name in runtime if name in lock} == runtime
    assert all(hashes for _version, hashes in lock.values())
    # Only runtime dependencies: nothing of the demo, test or lint sets unless the runtime needs it too.
    others = {canonicalize_name(Requirement(r).name)
              for r in [*PYPROJECT["project"]["optional-dependencies"]["demo"],
                        *PYPROJECT["project"]["optional-dependencies"]["test"],
                        *PYPROJECT["dependency-groups"]["lint"]]} - set(runtime)
    assert not others & set(lock), others & set(lock)
    assert {"fakeredis", "jsonschema", "pytest", "kubesim"}.isdisjoint(lock)


def test_build_lock_satisfies_the_build_system() -> None:
    lock = read_lock(BUILD_LOCK)
    assert all(hashes for _version, hashes in lock.values())
    for text in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        version, _ = lock[canonicalize_name(requirement.name)]
        assert SpecifierSet(str(requirement.specifier)).contains(version), (text, version)


# ----- the Dockerfile


def stages(dockerfile: str) -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.splitlines()
                                              if not line.lstrip().startswith("#")))
    out: list[list[str]] = []
    for line in (line.strip() for line in joined.splitlines() if line.strip()):
        if line.upper().startswith("FROM "):
            out.append([])
        out[-1].append(line)
    return out


def build_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY of the build stage, in order."""
    (build,) = [s for s in stages((DEPLOY / "Dockerfile").read_text()) if s[0].endswith(" AS build")]
    copies = []
    for line in build:
        if line.upper().startswith("COPY "):
            words = line.split()[1:]
            assert not any(w.startswith("--") for w in words), line
            copies.append((words[:-1], words[-1]))
    return copies


def test_dockerfile_pins_its_base_once_and_runs_unprivileged() -> None:
    all_stages = stages((DEPLOY / "Dockerfile").read_text())
    froms = [stage[0].split()[1:] for stage in all_stages]
    assert froms[0][0].startswith("python:3.11-slim-bookworm@sha256:") and froms[0][1:] == ["AS", "base"]
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", froms[0][0])
    assert [f[0] for f in froms[1:]] == ["base", "base"]  # build and runtime stages reuse that base
    runtime = all_stages[-1]
    users = [line.split()[1] for line in runtime if line.upper().startswith("USER ")]
    assert users and re.fullmatch(r"[1-9]\d{4,}:[1-9]\d{4,}", users[-1])  # numeric, non-root, high
    runtime_copies = [line for line in runtime if line.upper().startswith("COPY ")]
    assert runtime_copies == ["COPY --from=build /opt/clever-gateway /opt/clever-gateway"]


def test_build_context_is_what_the_dockerfile_copies() -> None:
    sources = {source.rstrip("/") for sources, _ in build_copies() for source in sources}
    assert sources == {"deploy/build-venv.sh", "deploy/requirements.lock", "deploy/requirements-build.lock",
                       "pyproject.toml", "README.md", "gateway", "translators"}
    patterns = [line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"  # everything out, then only these back in:
    assert {p[1:].rstrip("/") for p in patterns if p.startswith("!")} == sources


def assemble_context(target: Path) -> Path:
    """The build stage's /src: each COPY of the Dockerfile, from this checkout, minus the ignored."""
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc")
    for sources, destination in build_copies():
        for source in sources:
            into = target / destination / Path(source).name if destination.endswith("/") else target / destination
            into.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, into, ignore=ignored)
            else:
                shutil.copy2(ROOT / source, into)
    return target


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/opt/clever-gateway as the Dockerfile builds it: `build-venv.sh deps`, then `app` on /src.
    pip sees plain PyPI, as in a Docker build (this machine's pip configuration is left out)."""
    src = assemble_context(tmp_path_factory.mktemp("src"))
    venv = tmp_path_factory.mktemp("opt") / "clever-gateway"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHON": sys.executable}
    for step in (["deps", str(venv)], ["app", str(venv), str(src)]):
        result = subprocess.run(["sh", str(src / "deploy" / "build-venv.sh"), *step], cwd=src, env=env,
                                capture_output=True, text=True, timeout=900, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "No broken requirements found" in result.stdout  # the `pip check` of the app step
    return venv


def in_venv(venv: Path, code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Python of the venv, isolated (-I) and away from the checkout, so nothing leaks in from here."""
    return subprocess.run([str(venv / "bin" / "python"), "-I", "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)


def distributions(venv: Path, tmp_path: Path) -> dict[str, dict[str, Any]]:
    result = in_venv(venv, "import json, importlib.metadata as m; print(json.dumps([{'name': d.metadata['Name'], "
                           "'version': d.version, 'requires': d.requires or [], 'files': [str(f) for f in d.files or []]}"
                           " for d in m.distributions()]))", tmp_path)
    assert result.returncode == 0, result.stderr
    return {canonicalize_name(d["name"]): d for d in json.loads(result.stdout)}


def test_image_venv_holds_exactly_the_lock_and_the_gateway(image_venv: Path, tmp_path: Path) -> None:
    installed = distributions(image_venv, tmp_path)
    lock = read_lock(LOCK)
    assert {name: d["version"] for name, d in installed.items() if name != "clever-gateway"} == \
        {name: version for name, (version, _) in lock.items()}
    assert installed["clever-gateway"]["version"] == PYPROJECT["project"]["version"]
    packages = {f.split("/")[0] for f in installed["clever-gateway"]["files"]
                if "/" in f and not f.startswith("..") and not f.split("/")[0].endswith(".dist-info")}
    assert packages == {"gateway", "translators"}
    for absent in ("kubesim", "fakeredis", "jsonschema", "pytest"):
        result = in_venv(image_venv, f"import {absent}", tmp_path)
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, absent


def test_lock_is_the_closure_of_pyproject(image_venv: Path, tmp_path: Path) -> None:
    """Nothing missing (pip check passed) and nothing stale: the lock is what the gateway's requirements
    with the `tracing` extra pull in, transitively, for CPython 3.11 on Linux."""
    installed = distributions(image_venv, tmp_path)
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [("clever-gateway", frozenset({"tracing"}))]
    while todo:
        item = todo.pop()
        if item in seen:
            continue
        seen.add(item)
        name, extras = item
        for text in installed[name]["requires"]:
            requirement = Requirement(text)
            marker: Marker | None = requirement.marker
            if marker is not None and not any(marker.evaluate(LOCK_ENVIRONMENT | {"extra": extra})
                                               for extra in (extras or {""})):
                continue
            todo.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    needed = {name for name, _ in seen} - {"clever-gateway"}
    assert needed == set(read_lock(LOCK))


def test_image_gateway_starts_from_its_own_files(image_venv: Path, tmp_path: Path) -> None:
    """Every module but the demo imports with only the runtime set; the example config passes
    `serve --check` with the image's entry point."""
    code = ("import importlib, pkgutil, gateway, translators\n"
            "for package in (gateway, translators):\n"
            "    for module in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
            "        if module.name != 'gateway.demo':\n"
            "            importlib.import_module(module.name)\n"
            "print('imported')")
    result = in_venv(image_venv, code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "imported", result.stderr
    # `--check` also reads every file the config names (mounted Secrets in a pod): give it some here.
    env = dict(os.environ)
    for key, name in (("CLUSTERS__0__TOKEN_FILE", "token"), ("CLUSTERS__0__CA_FILE", "ca.crt"),
                      ("CLUSTERS__1__KUBECONFIG", "kubeconfig"), ("REDIS__PASSWORD_FILE", "redis-password"),
                      ("UI__SESSION_KEY_FILE", "session-keys")):
        (tmp_path / name).write_text("x")
        env[f"CLEVER_GATEWAY__{key}"] = str(tmp_path / name)
    check = subprocess.run([str(image_venv / "bin" / "clever-gateway"), "serve", "--config",
                            str(DEPLOY / "config.example.yaml"), "--check"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60, check=False, env=env)
    assert check.returncode == 0 and "configuration OK: 2 cluster(s)" in check.stdout, check.stderr


def test_image_can_trace(image_venv: Path, tmp_path: Path) -> None:
    """The image holds the `tracing` extra: an OTLP endpoint in the environment turns tracing on (before
    this, the same setting stopped the image at start: the packages were missing)."""
    code = ("from gateway import tracing\n"
            "on = tracing.configure({'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:4318'})\n"
            "print(on, tracing.enabled())\n"
            "tracing.install(None)\n")
    result = in_venv(image_venv, code, tmp_path)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "True True", result.stdout + result.stderr
    assert "tracing on" in result.stdout
