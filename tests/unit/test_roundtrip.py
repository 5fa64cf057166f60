"""Property-based round trips: spec -> cluster object -> spec, and spec -> legacy object -> spec."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kubesim import schema
from tests.unit.test_clever_reader import PROFILE
from translators.backends import from_cluster_object, to_cluster_object
from translators.backends.registry import backend_named
from translators.clever import (
    DIRECTORY_ENV,
    RESERVED_ENV,
    classify_update,
    parse_create,
    parse_update,
    render_job,
)
from translators.naming import is_dns1035_label
from translators.spec import (
    BACKENDS,
    JobIdentity,
    JobSpec,
    JobStatus,
    Replica,
    ReplicaType,
    Resources,
    RunPolicy,
    Volume,
)

ROOMY_PROFILE = replace(PROFILE, max_replicas_per_job=64, max_gpus_per_job=64)  # above what specs generate
RICH_PROFILE = replace(PROFILE, volumes=(Volume("data", "/clever", claim_name="clever-data"),),
                       image_pull_secrets=("regcred",), scheduler_name="volcano", queue="q", priority_class="p")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIRECTORY_VARIABLES = {variable for _, _, variable in DIRECTORY_ENV}
TF_OPERATOR_SPEC_FIELDS = {"activeDeadlineSeconds", "ttlSecondsAfterFinished", "cleanPodPolicy", "backoffLimit"}

# Free text as the reader accepts it: anything but NUL, the other C0 controls except tab/newlines, DEL.
texts = st.text(alphabet=st.characters(exclude_categories=("Cs",),
                                       exclude_characters="".join(map(chr, [*range(9), 11, 12, *range(14, 32), 127]))))
names = st.text(min_size=1, max_size=63).filter(
    lambda s: s == s.strip() and s.isprintable() and "/" not in s)
segments = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))
paths = st.lists(segments, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
optional_paths = st.one_of(st.just(""), paths)
cpus = st.one_of(st.integers(1, 64).map(str), st.integers(1, 9999).map(lambda m: f"{m}m"),
                 st.sampled_from(["0.5", "1.5", "2.25", "2e-1", "1E1"]))
memories = st.one_of(st.integers(1, 4096).map(lambda n: f"{n}Mi"), st.integers(1, 64).map(lambda n: f"{n}Gi"),
                     st.integers(1, 10**10).map(str), st.sampled_from(["1.5Gi", "500M", "2e9"]))
resources = st.builds(Resources, cpu=cpus, memory=memories, gpu=st.integers(0, 2))
env_names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,15}\Z").filter(
    lambda n: n not in RESERVED_ENV and n not in DIRECTORY_VARIABLES)
environments = st.lists(st.tuples(env_names, texts.map(lambda t: t[:30])), max_size=5, unique_by=lambda kv: kv[0])
run_policies = st.builds(
    RunPolicy,
    active_deadline_seconds=st.none() | st.integers(1, 10**7),
    ttl_seconds_after_finished=st.none() | st.integers(0, 10**6),
    clean_pod_policy=st.none() | st.sampled_from(["All", "Running", "None"]),
    backoff_limit=st.none() | st.integers(0, 20),
    success_policy=st.none() | st.sampled_from(["", "AllWorkers"]),
)


@st.composite
def replica_sets(draw: Any) -> tuple[Replica, ...]:
    chief = draw(st.sampled_from([None, 0, 1]))
    worker = draw(st.integers(0 if chief else 1, 4))
    groups: list[tuple[ReplicaType, int | None]] = [("chief", chief), ("worker", worker), ("ps", draw(st.none() | st.integers(0, 3))),
              ("evaluator", draw(st.none() | st.integers(0, 1)))]
    return tuple(Replica(t, count, draw(resources)) for t, count in groups
                 if count is not None and not (t == "worker" and count == 0 and chief is None))


specs = st.builds(
    JobSpec,
    name=names,
    runtime=st.sampled_from(sorted(PROFILE.runtimes)),
    bootfile=paths,
    replicas=replica_sets(),
    description=texts.map(lambda t: t[:80]),
    workdir=optional_paths,
    args=st.lists(texts.map(lambda t: t[:20]), max_size=5).map(tuple),
    environment=environments.map(tuple),
    checkpoint_dir=optional_paths,
    event_dir=optional_paths,
    model_dir=optional_paths,
    log_dir=optional_paths,
    run_policy=run_policies,
)
identities = st.builds(
    JobIdentity,
    id=st.one_of(st.from_regex(r"\A[0-9a-f]{8,32}\Z"), st.text(min_size=1, max_size=40)),
    owner=st.one_of(st.from_regex(r"\A[a-z]{1,12}\Z"), st.emails(), st.text(min_size=1, max_size=40)),
    cluster=st.just("c1"),
    partition=st.from_regex(r"\A[a-z]([a-z0-9-]{0,20}[a-z0-9])?\Z"),
    created=st.just("2026-11-22T06:00:00Z"),
    updated=st.sampled_from(["2026-11-22T06:00:00Z", "2026-11-22T07:30:00.123456Z"]),
)
profiles = st.sampled_from([PROFILE, RICH_PROFILE])


def wire(body: dict[str, Any]) -> dict[str, Any]:
    """What the API server hands back: the JSON text of the body."""
    return json.loads(json.dumps(body))


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(spec=specs, identity=identities, profile=profiles)
def test_cluster_object_round_trip(backend: str, spec: JobSpec, identity: JobIdentity, profile: Any) -> None:
    assume(not backend_named(backend).check(spec))  # variables the backend's controller sets, say
    body = wire(to_cluster_object(spec, identity, replace(profile, backend=backend)))
    assert is_dns1035_label(body["metadata"]["name"])
    assert from_cluster_object(body) == (spec, identity)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(spec=specs, identity=identities, profile=profiles)
def test_generated_bodies_validate_against_the_crds(backend: str, spec: JobSpec, identity: JobIdentity,
                                                    profile: Any) -> None:
    """Nothing pruned for training-operator, Volcano and JobSet; tf-operator loses only its four spec-level
    fields."""
    assume(not backend_named(backend).check(spec))
    body = wire(to_cluster_object(spec, identity, replace(profile, backend=backend)))
    assert schema.validate(body) == []
    pruned = schema.pruned_fields(body)
    if backend == "tf-operator":
        assert {path.split(".")[-1] for path in pruned} <= TF_OPERATOR_SPEC_FIELDS
        assert all(path.count(".") == 1 and path.startswith("spec.") for path in pruned), pruned
    else:
        assert pruned == []


@SETTINGS
@given(spec=specs, identity=identities)
def test_legacy_object_round_trip(spec: JobSpec, identity: JobIdentity) -> None:
    rendered = wire(render_job(spec, identity, JobStatus(phase="running")))
    assert parse_create(rendered, partition=identity.partition, profile=ROOMY_PROFILE) == spec
    flat = rendered["spec"] | {"name": spec.name}
    assert parse_create(flat, partition=identity.partition, profile=ROOMY_PROFILE) == spec
    echoed = parse_update(rendered, current=spec, profile=ROOMY_PROFILE)
    assert echoed == spec and classify_update(spec, echoed, profile=ROOMY_PROFILE) == "unchanged"
