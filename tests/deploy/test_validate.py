"""Every render is valid Kubernetes (kubernetes-validate --strict; the prometheus-operator kinds against
their schema) and passes checkov with no finding; the Dockerfile passes hadolint and checkov."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.conftest import DEPLOY, GATEWAY_RENDERS, RENDERS, documents, find, lint_tool, one

# The oldest Kubernetes minor the install is checked against, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
OPERATOR_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
MONITORING_SCHEMAS = yaml.safe_load((Path(__file__).parent / "schemas" / "monitoring.coreos.com-v1.yaml")
                                    .read_text())["kinds"]


def kubernetes_validate(paths: list[Path], version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(lint_tool("kubernetes-validate")), "--strict", "-k", version, *map(str, paths)],
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_render_is_valid_kubernetes(version: str, render_files: dict[str, Path]) -> None:
    result = kubernetes_validate([render_files[name] for name in RENDERS], version)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # kubernetes-validate knows the core API only. It may pass over the prometheus-operator kinds
    # (checked against their schema below) and nothing else; everything else passed, file by file.
    skipped = re.findall(r"Couldn't find schema for kind (\S+) with api version (\S+)", result.stdout)
    assert {(api, kind) for kind, api in skipped} <= OPERATOR_KINDS, result.stdout
    assert all(line.startswith("INFO ") and " passed for resource " in line
               for line in lines if "Couldn't find schema" not in line), result.stdout
    for name in RENDERS:
        core = [doc for doc in documents(render_files[name].read_text())
                if (doc["apiVersion"], doc["kind"]) not in OPERATOR_KINDS]
        passed = [line for line in lines if line.startswith(f"INFO {render_files[name]} passed")]
        assert core and len(passed) == len(core), (name, len(passed), len(core))


def test_strict_validation_rejects_an_unknown_field(renders: dict[str, str], tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt field of the Deployment fails it."""
    docs = documents(renders["production"])
    deployment = one(docs, "Deployment", "clever-gateway")
    deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["nodeTaintPolicy"] = "Honor"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    result = kubernetes_validate([broken], KUBERNETES_VERSIONS[0])
    assert result.returncode != 0
    assert "nodeTaintPolicy" in result.stdout


@pytest.mark.parametrize("render", GATEWAY_RENDERS)
def test_monitoring_resources_match_the_operator_schema(render: str, renders: dict[str, str]) -> None:
    docs = documents(renders[render])
    for api_version, kind in sorted(OPERATOR_KINDS):
        (doc,) = [d for d in find(docs, kind) if d["apiVersion"] == api_version]
        jsonschema.validate(doc, MONITORING_SCHEMAS[kind])


def test_the_operator_schema_rejects_a_misspelt_field(renders: dict[str, str]) -> None:
    monitor = one(documents(renders["production"]), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        jsonschema.validate(monitor, MONITORING_SCHEMAS["ServiceMonitor"])


def failures(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(Path(f["file_path"]).name, f["check_id"]) for f in report["results"]["failed_checks"]}


@pytest.fixture(scope="module")
def checkov_reports(render_files: dict[str, Path], renders: dict[str, str],
                    tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One checkov run (it takes seconds to start) over every render, the Dockerfile and a canary: the
    production Deployment with the mistakes checkov reported before this install, so that a pass
    cannot come from checkov reading nothing. Reports by framework."""
    scan = tmp_path_factory.mktemp("checkov")
    for path in render_files.values():
        (scan / path.name).write_text(path.read_text())
    (scan / "Dockerfile").write_text((DEPLOY / "Dockerfile").read_text())
    docs = documents(renders["production"])
    canary = one(docs, "Deployment", "clever-gateway")
    pod = canary["spec"]["template"]["spec"]
    pod["automountServiceAccountToken"] = True
    container = pod["containers"][0]
    container["image"] = "registry.example.com/clever/clever-gateway:0.1.0"
    del container["imagePullPolicy"]
    container["env"] = [{"name": "CLEVER_GATEWAY__REDIS__PASSWORD",
                         "valueFrom": {"secretKeyRef": {"name": "clever-gateway-redis", "key": "password"}}}]
    (scan / "canary.yaml").write_text(yaml.safe_dump(canary))
    result = subprocess.run([str(lint_tool("checkov")), "-d", str(scan), "--framework", "kubernetes", "dockerfile",
                             "--output", "json", "--skip-download"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.stdout.strip(), result.stderr[-3000:]
    report = json.loads(result.stdout)
    return {r["check_type"]: r for r in (report if isinstance(report, list) else [report])}


def test_checkov_finds_nothing_in_any_render(checkov_reports: dict[str, dict[str, Any]],
                                             render_files: dict[str, Path]) -> None:
    report = checkov_reports["kubernetes"]
    found = failures(report)
    assert {f for f in found if f[0] != "canary.yaml"} == set(), sorted(found)
    assert {("canary.yaml", check) for check in ("CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_38", "CKV_K8S_43")} <= found
    scanned = {Path(p["file_path"]).name for p in report["results"]["passed_checks"]}
    assert {path.name for path in render_files.values()} <= scanned


def test_dockerfile_passes_checkov(checkov_reports: dict[str, dict[str, Any]]) -> None:
    report = checkov_reports["dockerfile"]
    assert failures(report) == set()
    assert report["summary"]["passed"] > 0


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([str(lint_tool("hadolint")), "--format", "json", "--failure-threshold", "style",
                             str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and json.loads(result.stdout) == [], result.stdout + result.stderr


def test_hadolint_reads_the_dockerfile(tmp_path: Path) -> None:
    """hadolint is not passing an empty or unparsed file: the same Dockerfile with an unpinned pip
    install added gets DL3013."""
    broken = tmp_path / "Dockerfile"
    broken.write_text((DEPLOY / "Dockerfile").read_text() + "RUN pip install --no-cache-dir requests\n")
    result = subprocess.run([str(lint_tool("hadolint")), "--format", "json", str(broken)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert {finding["code"] for finding in json.loads(result.stdout)} == {"DL3013"}
