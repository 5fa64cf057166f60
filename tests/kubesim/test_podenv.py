"""kubesim.podenv: a container's environment as the kubelet builds it (downward API, ConfigMaps, `$(VAR)`)."""

from __future__ import annotations

from typing import Any

import pytest

from kubesim.podenv import container_env, expand, resolve_field


@pytest.mark.parametrize(("text", "expected"), [
    ("$(A)-$(B)", "1-two"),
    ("$$(A)", "$(A)"),  # an escaped reference stays literal
    ("$(MISSING)", "$(MISSING)"),
    ("cost $5", "cost $5"),
    ("open $(A", "open $(A"),
    ("end $", "end $"),
    ('{"index":$(A)}', '{"index":1}'),
])
def test_expand_follows_kubelet_rules(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "two"}) == expected


POD: dict[str, Any] = {
    "metadata": {"name": "j1-worker-0-2-abcde", "namespace": "team-a", "uid": "u-1",
                 "labels": {"batch.kubernetes.io/job-completion-index": "2"},
                 "annotations": {"batch.kubernetes.io/job-completion-index": "2"}},
    "spec": {"nodeName": "kubesim-node-1"},
    "status": {"podIP": "10.244.0.7"},
}


def test_fields_of_the_downward_api() -> None:
    assert resolve_field(POD, "metadata.labels['batch.kubernetes.io/job-completion-index']") == "2"
    assert resolve_field(POD, "metadata.annotations['nope']") == ""
    assert resolve_field(POD, "metadata.name") == "j1-worker-0-2-abcde"
    assert resolve_field(POD, "status.podIP") == "10.244.0.7"
    assert resolve_field(POD, "spec.containers") is None


def test_container_env_in_order_with_references_only_backwards() -> None:
    container = {"envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}], "env": [
        {"name": "EARLY", "value": "$(TF_TASK_INDEX)"},  # defined later: stays as written
        {"name": "TF_TASK_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
        {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "TF_CONFIG", "value": '{"task":{"index":$(TF_TASK_INDEX)},"host":"$(HOST)","lr":"$(CFG_LR)"}'},
        {"name": "FROM_MAP", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LR"}}},
        {"name": "MISSING_MAP", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "x"}}},
    ]}
    maps = {("team-a", "settings"): {"data": {"LR": "0.1"}}}
    env = container_env(POD, container, config_map=lambda ns, name: maps.get((ns, name)))
    assert env == {"CFG_LR": "0.1", "EARLY": "$(TF_TASK_INDEX)", "TF_TASK_INDEX": "2",
                   "HOST": "j1-worker-0-2-abcde",
                   "TF_CONFIG": '{"task":{"index":2},"host":"j1-worker-0-2-abcde","lr":"0.1"}',
                   "FROM_MAP": "0.1"}
    assert list(env) == ["CFG_LR", "EARLY", "TF_TASK_INDEX", "HOST", "TF_CONFIG", "FROM_MAP"]
