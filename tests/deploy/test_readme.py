"""deploy/kubernetes/README.md shows real things: its render excerpt is today's render, its example overlay
(with the files it lists) renders a complete install that replaces every placeholder of the base, and its
RBAC kustomization renders."""

from __future__ import annotations

import base64
import re
from collections import Counter
from pathlib import Path

import yaml

from tests.deploy.conftest import KUBERNETES, ROOT, documents, find, kustomize, one
from tests.deploy.test_manifests import config_text, gateway_pod, paths_in, projected_files

README = (KUBERNETES / "README.md").read_text()
DOCUMENTATION_NETS = ("192.0.2.", "198.51.100.", "203.0.113.")


def fenced(after: str, language: str) -> str:
    """The first ```language block after the text `after`."""
    start = README.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.DOTALL).search(README, start)
    assert match, after
    return match[1]


def test_render_excerpt_is_todays_render(renders: dict[str, str]) -> None:
    block = fenced("The render of the base", "")
    counted = Counter(f"kind: {doc['kind']}" for doc in documents(renders["production"]))
    expected = "".join(f"{n:7d} {kind}\n" for kind, n in sorted(counted.items()))
    assert expected in block
    (container,) = gateway_pod(documents(renders["production"]))["spec"]["containers"]
    assert f"image: {container['image']}\n" in block


def write_overlay(tmp_path: Path) -> Path:
    """The README's clever-install/ beside a checkout named clever-gateway, with the files it lists."""
    (tmp_path / "clever-gateway").symlink_to(ROOT)
    install = tmp_path / "clever-install"
    (install / "secrets" / "c1").mkdir(parents=True)
    (install / "secrets" / "c2").mkdir()
    (install / "kustomization.yaml").write_text(fenced("test_readme.py renders this kustomization", "yaml"))
    example = (KUBERNETES / "base" / "config.example.yaml").read_text()
    (install / "config.yaml").write_text(example.replace("https://idp.example.com/realms/clever",
                                                         "https://login.corp.example/realms/clever"))
    (install / "secrets" / "redis-password").write_text("pw\n")
    (install / "secrets" / "ui-session-keys").write_text("WQ2Xq3oN8ZrS7mBrXj8Xy3a7cW0pO8rCKZdV7l5pB3Y=\n")
    (install / "secrets" / "c1" / "token").write_text("token-of-c1\n")
    (install / "secrets" / "c1" / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (install / "secrets" / "c2" / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    return install


def test_example_overlay_renders_a_complete_install(tmp_path: Path) -> None:
    docs = documents(kustomize(write_overlay(tmp_path)))
    (container,) = gateway_pod(docs)["spec"]["containers"]
    assert container["image"] == ("registry.corp.example/platform/clever-gateway@sha256:"
                                  "4b1c0a6fbf1cf7e6a3f2bd8a2a4c38fbc1d0e7d5e4b4d0ab8f2f8c3b9a7e6d51")
    assert "login.corp.example" in config_text(docs)
    files = projected_files(docs)
    assert paths_in(yaml.safe_load(config_text(docs))) <= set(files)
    secrets = list(find(docs, "Secret"))
    assert len(secrets) == 4
    for secret in secrets:
        for value in secret["data"].values():
            assert b"REPLACE-ME" not in base64.b64decode(value), secret["metadata"]["name"]
    for policy in find(docs, "NetworkPolicy"):
        text = yaml.safe_dump(policy["spec"])
        assert not any(net in text for net in DOCUMENTATION_NETS), policy["metadata"]["name"]
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert one(docs, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_rbac_example_renders(tmp_path: Path) -> None:
    (tmp_path / "clever-gateway").symlink_to(ROOT)
    target = tmp_path / "c1-rbac"
    target.mkdir()
    (target / "kustomization.yaml").write_text(fenced("For a remote target with\nboth", "yaml"))
    docs = documents(kustomize(target))
    assert {doc["metadata"]["name"] for doc in find(docs, "ClusterRole")} == {
        "clever-gateway", "clever-gateway-subjectaccessreview", "clever-job-user", "clever-gateway-impersonator"}
    assert one(docs, "Secret", "clever-gateway-token")
