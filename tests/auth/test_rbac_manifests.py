"""deploy/rbac/: the gateway's permissions per auth mode parse and say what the modes need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac"


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((RBAC / name).read_text()) if doc]


def rules(name: str) -> list[dict[str, Any]]:
    return [rule for doc in documents(name) if doc["kind"] == "ClusterRole" for rule in doc["rules"]]


def allows(rule_list: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rule_list)


def test_every_binding_names_the_gateway_and_an_existing_role() -> None:
    for path in sorted(RBAC.rglob("*.yaml")):
        docs = documents(str(path.relative_to(RBAC)))
        roles = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "ClusterRole"}
        for doc in docs:
            if doc["kind"] == "ClusterRoleBinding":
                assert doc["roleRef"]["name"] in roles
                assert doc["subjects"] == [{"kind": "ServiceAccount", "name": "clever-gateway",
                                            "namespace": "clever-gateway"}]


def test_base_role_covers_the_gateway_operations() -> None:
    base = rules("base/clusterrole.yaml")
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        assert allows(base, "kubeflow.org", "tfjobs", verb)
        assert allows(base, "batch.volcano.sh", "jobs", verb)
    for verb in ("get", "list", "watch"):
        assert allows(base, "", "pods", verb)
        assert allows(base, "", "events", verb)
    assert not allows(base, "", "pods", "create")  # pods are the operators' business
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in base)


def test_base_role_grants_every_rule_each_backend_says_it_needs() -> None:
    from translators.backends.registry import REGISTRY

    base = rules("base/clusterrole.yaml")
    for name, backend in REGISTRY.items():
        for rule in backend.rbac_rules():
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert allows(base, group, resource, verb), (name, group, resource, verb)


def test_sar_and_impersonation_roles() -> None:
    assert allows(rules("sar/subjectaccessreview.yaml"), "authorization.k8s.io", "subjectaccessreviews", "create")
    impersonation = rules("impersonation/impersonation.yaml")
    assert allows(impersonation, "", "users", "impersonate")
    groups_rule = next(r for r in impersonation if "groups" in r["resources"])
    # Without resourceNames the gateway could impersonate system:masters.
    assert groups_rule["resourceNames"] and "system:masters" not in groups_rule["resourceNames"]
