"""The backend seam: every declared backend is registered and complete; unknown names and kinds are errors.

mypy proves each registered backend implements `JobBackend` (translators.backends.registry types every
entry so); these tests prove the registry covers exactly `translators.spec.BACKENDS`, that nothing falls
back to TFJob, and that each backend's declared resource, selector and RBAC match what it builds.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from tests.unit.test_clever_reader import MINIMAL, PROFILE
from translators import labels
from translators.backends import (
    from_cluster_object,
    in_place_patch,
    job_resource,
    job_status,
    to_cluster_object,
)
from translators.backends.registry import REGISTRY, UnknownBackend, backend_for_object, backend_named
from translators.clever import classify_update, parse_create
from translators.errors import NotTranslatable, SpecError
from translators.spec import BACKENDS, JobIdentity

IDENTITY = JobIdentity(id="abc123", owner="u", cluster="c1", partition="clever",
                       created="2026-01-01T00:00:00Z", updated="2026-01-01T00:00:00Z")
UNKNOWN = replace(PROFILE, backend="mpi")  # type: ignore[arg-type]  # as a bad config would say


def test_the_registry_is_exactly_the_declared_backends() -> None:
    assert set(REGISTRY) == set(BACKENDS) and len(BACKENDS) == len(set(BACKENDS))
    assert "jobset" in BACKENDS


@pytest.mark.parametrize("name", BACKENDS)
def test_every_declared_name_resolves_to_its_backend(name: str) -> None:
    backend = backend_named(name)
    assert backend.name == name
    assert backend.in_place_fields < {"active_deadline_seconds", "ttl_seconds_after_finished",
                                      "clean_pod_policy", "backoff_limit", "success_policy"}


@pytest.mark.parametrize("name", ["mpi", "", "TFJob", "Volcano", "training_operator", "jobset "])
def test_an_unknown_name_is_an_error(name: str) -> None:
    with pytest.raises(UnknownBackend) as caught:
        backend_named(name)
    assert repr(name) in str(caught.value) and "jobset" in str(caught.value)


def test_no_facade_falls_back_to_tfjob() -> None:
    spec = parse_create(MINIMAL, partition="clever", profile=PROFILE)
    calls = [lambda: job_resource(UNKNOWN), lambda: to_cluster_object(spec, IDENTITY, UNKNOWN),
             lambda: in_place_patch(spec, spec, IDENTITY, UNKNOWN),
             lambda: job_status(None, [], profile=UNKNOWN),
             lambda: classify_update(spec, spec, profile=UNKNOWN),
             lambda: parse_create(MINIMAL, partition="clever", profile=UNKNOWN)]
    for call in calls:
        with pytest.raises(UnknownBackend):
            call()
    body = to_cluster_object(spec, IDENTITY, PROFILE)
    for mutate in ({"apiVersion": None}, {"apiVersion": "batch/v1", "kind": "Job"},
                   {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob"}):
        obj = {**body, **mutate}
        with pytest.raises(NotTranslatable):
            from_cluster_object(obj)
        with pytest.raises(NotTranslatable):
            job_status(obj, [], profile=PROFILE)


def test_objects_find_their_backend_and_the_profile_picks_the_dialect() -> None:
    tfjob = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob"}
    assert backend_for_object(tfjob).name == "training-operator"
    assert backend_for_object(tfjob, prefer="tf-operator").name == "tf-operator"
    assert backend_for_object(tfjob, prefer="volcano").name == "training-operator"
    assert backend_for_object({"apiVersion": "jobset.x-k8s.io/v1alpha2"}).name == "jobset"


@pytest.mark.parametrize("name", BACKENDS)
def test_each_backend_builds_what_it_declares(name: str) -> None:
    backend = backend_named(name)
    profile = replace(PROFILE, backend=name)  # type: ignore[arg-type]
    spec = parse_create({**MINIMAL, "replicas": [{"type": "worker", "count": 2}, {"type": "ps", "count": 1}]},
                        partition="clever", profile=profile)
    body: dict[str, Any] = json.loads(json.dumps(backend.build(spec, IDENTITY, profile)))
    assert (body["apiVersion"], body["kind"]) == (backend.resource.api_version, backend.resource.kind)
    assert job_resource(profile) == backend.resource
    assert body["metadata"]["name"] == backend.object_name(spec.name, IDENTITY.id)
    assert backend_for_object(body, prefer=name) is backend
    assert backend.from_object(body) == (spec, IDENTITY)
    assert backend.pod_selector(IDENTITY.id) == labels.pod_selector(IDENTITY.id)
    assert backend.classify_update(spec, spec) == "unchanged"


@pytest.mark.parametrize("name", BACKENDS)
def test_each_backend_says_which_permissions_it_needs(name: str) -> None:
    backend = backend_named(name)
    rules = backend.rbac_rules()

    def allows(group: str, resource: str, verb: str) -> bool:
        return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
                   for r in rules)

    for verb in ("get", "list", "watch", "create", "patch", "delete"):
        assert allows(backend.resource.group, backend.resource.plural, verb)
    for verb in ("get", "list", "watch"):
        assert allows("", "pods", verb)
    assert allows("", "pods/log", "get")
    assert not allows("", "pods", "create")  # pods are the controllers' business
    assert all(set(r) == {"apiGroups", "resources", "verbs"} for r in rules)
    assert not any("*" in r["verbs"] or "*" in r["resources"] or "*" in r["apiGroups"] for r in rules)


@pytest.mark.parametrize(("variable", "refused_on"), [
    ("TF_CONFIG", set(BACKENDS)),  # TensorFlow's cluster spec: the legacy reader refuses it everywhere
    ("VK_TASK_INDEX", {"volcano"}), ("VC_TASK_INDEX", {"volcano"}),
    ("TF_TASK_INDEX", {"jobset"}), ("JOB_COMPLETION_INDEX", {"jobset"}),
])
def test_variables_a_backend_sets_are_refused_on_that_backend_only(variable: str,
                                                                   refused_on: set[str]) -> None:
    for name in BACKENDS:
        profile = replace(PROFILE, backend=name)  # type: ignore[arg-type]
        try:
            parse_create({**MINIMAL, "environment": f"{variable}=1"}, partition="clever", profile=profile)
            refused = False
        except SpecError as e:
            assert [f.path for f in e.fields] == ["environment"]
            refused = True
        assert refused == (name in refused_on), name
