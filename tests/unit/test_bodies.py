"""Cluster bodies: TFJob (training-operator and tf-operator dialects) and Volcano Job.

CRD validation uses kubesim's validator (`kubesim.schema.validate` / `pruned_fields`): the
training-operator and Volcano bodies must validate with nothing pruned; tf-operator bodies may
lose only the four run-policy fields that the older operator reads directly under `spec`.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesim import schema
from tests.unit.test_clever_reader import MINIMAL, PROFILE, SEED_FLAT_CREATE, SEED_LIST_ITEM, SEED_OBJECT
from translators.backends import (
    TFJOB_RESOURCE,
    VOLCANO_JOB_RESOURCE,
    from_cluster_object,
    in_place_patch,
    job_resource,
    to_cluster_object,
)
from translators.clever import changed_fields, classify_update, parse_create, parse_update
from translators.errors import NotTranslatable, SpecError
from translators.labels import ANNOTATION_DESCRIPTION, ANNOTATION_SPEC, ANNOTATION_UPDATED, LABEL_JOB_ID
from translators.spec import BACKENDS, ClusterProfile, JobIdentity, JobSpec, Volume

TF_OPERATOR_SPEC_FIELDS = {"activeDeadlineSeconds", "ttlSecondsAfterFinished", "cleanPodPolicy", "backoffLimit"}

IDENTITY = JobIdentity(id="12345678", owner="admin", cluster="c1", partition="clever",
                       created="2017-08-23T13:17:09Z", updated="2017-08-23T13:17:09Z")
RICH_PROFILE = replace(
    PROFILE,
    volumes=(Volume("data", "/clever", claim_name="clever-data"),
             Volume("scratch", "/scratch", host_path="/mnt/scratch"),
             Volume("models", "/models", nfs_server="10.0.0.5", nfs_path="/export/models", read_only=True)),
    image_pull_secrets=("regcred",),
    scheduler_name="volcano",
    queue="research",
    priority_class="high",
)
FULL_BODY = {
    **MINIMAL,
    "runtime": "Python 2.7 + Tensorflow 1.2.1",
    "workdir": "/jobs",
    "args": ["--epochs", "3"],
    "environment": "DATA=/data,MODE=train",
    "checkpointDir": "/ckpt",
    "logDir": "/logs",
    "replicas": [{"type": "chief", "count": 1}, {"type": "worker", "count": 2, "resource": {"gpu": 1}},
                 {"type": "ps", "count": 1, "resource": {"cpu": "500m", "memory": "512Mi"}},
                 {"type": "evaluator", "count": 0}],
    "activeDeadlineSeconds": 7200,
    "ttlSecondsAfterFinished": 600,
    "cleanPodPolicy": "Running",
    "backoffLimit": 4,
    "successPolicy": "AllWorkers",
}


def profile_for(backend: str, base: ClusterProfile = PROFILE) -> ClusterProfile:
    return replace(base, backend=backend)  # type: ignore[arg-type]


def crd_problems(body: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(validation errors, pruned field paths) from kubesim's CRD validator."""
    return schema.validate(body), schema.pruned_fields(body)


def assert_valid_for(backend: str, body: dict[str, Any]) -> None:
    errors, pruned = crd_problems(json.loads(json.dumps(body)))
    assert errors == []
    if backend == "tf-operator":
        assert all(re.split(r"[./]", path)[-1] in TF_OPERATOR_SPEC_FIELDS and "tfReplicaSpecs" not in path
                   for path in pruned), pruned
    else:
        assert pruned == []


SEED_BODIES = [SEED_LIST_ITEM, SEED_OBJECT, SEED_FLAT_CREATE, FULL_BODY]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("body", SEED_BODIES, ids=["seed-list-item", "seed-object", "seed-flat", "full"])
@pytest.mark.parametrize("profile", [PROFILE, RICH_PROFILE], ids=["plain", "rich"])
def test_bodies_validate_against_the_crds(backend: str, body: dict[str, Any], profile: ClusterProfile) -> None:
    spec = parse_create(body, partition="clever", profile=profile)
    assert_valid_for(backend, to_cluster_object(spec, IDENTITY, profile_for(backend, profile)))


def _container(pod_template: dict[str, Any]) -> dict[str, Any]:
    containers = pod_template["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_training_operator_body() -> None:
    spec = parse_create(FULL_BODY, partition="clever", profile=RICH_PROFILE)
    body = to_cluster_object(spec, IDENTITY, profile_for("training-operator", RICH_PROFILE))
    assert body["apiVersion"] == "kubeflow.org/v1" and body["kind"] == "TFJob"
    assert body["metadata"]["name"] == "job-12345678" and body["metadata"]["namespace"] == "clever"
    replica_specs = body["spec"]["tfReplicaSpecs"]
    assert set(replica_specs) == {"Chief", "Worker", "PS"}  # evaluator has count 0
    assert {k: v["restartPolicy"] for k, v in replica_specs.items()} == {
        "Chief": "ExitCode", "Worker": "ExitCode", "PS": "OnFailure"}
    assert replica_specs["Worker"]["replicas"] == 2
    assert body["spec"]["runPolicy"] == {
        "activeDeadlineSeconds": 7200, "ttlSecondsAfterFinished": 600, "cleanPodPolicy": "Running",
        "backoffLimit": 4, "schedulingPolicy": {"minAvailable": 4, "queue": "research", "priorityClass": "high"}}
    assert body["spec"]["successPolicy"] == "AllWorkers"
    worker = replica_specs["Worker"]["template"]
    assert worker["metadata"]["labels"][LABEL_JOB_ID] == "12345678"
    assert worker["metadata"]["annotations"] == {"clever.dev/job-id": "12345678"}
    container = _container(worker)
    assert container["name"] == "tensorflow"
    assert container["image"] == "clever/tf:1.2.1-py2-gpu"
    assert container["command"] == ["python2", "/jobs/train.py"]
    assert container["args"] == ["--epochs", "3"]
    assert container["workingDir"] == "/jobs"
    assert container["ports"] == [{"name": "tfjob-port", "containerPort": 2222}]
    assert container["env"] == [{"name": "DATA", "value": "/data"}, {"name": "MODE", "value": "train"},
                                {"name": "CHECKPOINT_DIR", "value": "/ckpt"}, {"name": "LOG_DIR", "value": "/logs"}]
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"},
                                      "limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}}
    assert [m["name"] for m in container["volumeMounts"]] == ["data", "scratch", "models"]
    pod = worker["spec"]
    assert pod["schedulerName"] == "volcano" and pod["priorityClassName"] == "high"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "clever-data"}},
        {"name": "scratch", "hostPath": {"path": "/mnt/scratch"}},
        {"name": "models", "nfs": {"server": "10.0.0.5", "path": "/export/models", "readOnly": True}}]
    ps = _container(replica_specs["PS"]["template"])
    assert ps["image"] == "clever/tf:1.2.1-py2" and "nvidia.com/gpu" not in ps["resources"]["limits"]


def test_tf_operator_body_puts_run_policy_directly_in_spec() -> None:
    spec = parse_create(FULL_BODY, partition="clever", profile=RICH_PROFILE)
    body = to_cluster_object(spec, IDENTITY, profile_for("tf-operator", RICH_PROFILE))
    assert "runPolicy" not in body["spec"]
    assert {k: body["spec"][k] for k in TF_OPERATOR_SPEC_FIELDS} == {
        "activeDeadlineSeconds": 7200, "ttlSecondsAfterFinished": 600, "cleanPodPolicy": "Running", "backoffLimit": 4}
    assert body["spec"]["tfReplicaSpecs"]["PS"]["replicas"] == 1


def test_dollar_signs_reach_the_program_literally() -> None:
    spec = parse_create({**MINIMAL, "args": ["$(HOME)", "cost=$$5"], "environment": {"PRICE": "$(X)"},
                         "logDir": "/logs/$USER"}, partition="clever", profile=PROFILE)
    body = to_cluster_object(spec, IDENTITY, profile_for("training-operator"))
    container = _container(body["spec"]["tfReplicaSpecs"]["Worker"]["template"])
    assert container["args"] == ["$$(HOME)", "cost=$$$$5"]
    assert container["env"] == [{"name": "PRICE", "value": "$$(X)"}, {"name": "LOG_DIR", "value": "/logs/$$USER"}]
    assert from_cluster_object(body)[0] == spec


def test_no_run_policy_means_no_run_policy_object_but_the_cluster_default_clean_pod_policy() -> None:
    spec = parse_create(MINIMAL, partition="clever", profile=PROFILE)
    body = to_cluster_object(spec, IDENTITY, replace(profile_for("training-operator"), default_clean_pod_policy=None))
    assert set(body["spec"]) == {"tfReplicaSpecs"}
    container = _container(body["spec"]["tfReplicaSpecs"]["Worker"]["template"])
    assert {"args", "workingDir", "env", "volumeMounts"}.isdisjoint(container)
    # By default a finished job's still running pods (parameter servers) go: cleanPodPolicy Running, in each
    # dialect's place; the user's own choice wins, and the spec keeps only what the user gave.
    default = to_cluster_object(spec, IDENTITY, profile_for("training-operator"))
    assert default["spec"]["runPolicy"] == {"cleanPodPolicy": "Running"}
    flat = to_cluster_object(spec, IDENTITY, profile_for("tf-operator"))
    assert flat["spec"]["cleanPodPolicy"] == "Running"
    kept = parse_create({**MINIMAL, "cleanPodPolicy": "None"}, partition="clever", profile=PROFILE)
    assert to_cluster_object(kept, IDENTITY, profile_for("training-operator"))["spec"]["runPolicy"] == {
        "cleanPodPolicy": "None"}
    assert from_cluster_object(default)[0] == spec


def test_volcano_body() -> None:
    spec = parse_create(FULL_BODY, partition="clever", profile=RICH_PROFILE)
    body = to_cluster_object(spec, IDENTITY, profile_for("volcano", RICH_PROFILE))
    assert body["apiVersion"] == "batch.volcano.sh/v1alpha1" and body["kind"] == "Job"
    vc = body["spec"]
    assert vc["schedulerName"] == "volcano" and vc["queue"] == "research" and vc["priorityClassName"] == "high"
    assert vc["minAvailable"] == 4 and vc["maxRetry"] == 4 and vc["ttlSecondsAfterFinished"] == 600
    assert vc["plugins"] == {"tensorflow": ["--port=2222", "--ps=ps", "--worker=worker", "--chief=chief",
                                            "--evaluator=evaluator"], "env": [], "svc": []}
    assert {"event": "PodEvicted", "action": "RestartJob"} in vc["policies"]
    tasks = {t["name"]: t for t in vc["tasks"]}
    assert list(tasks) == ["chief", "worker", "ps"]
    assert tasks["chief"]["policies"] == [{"event": "TaskCompleted", "action": "CompleteJob"}]
    assert "policies" not in tasks["worker"] and "policies" not in tasks["ps"]
    assert tasks["worker"]["replicas"] == 2 and tasks["worker"]["minAvailable"] == 2
    pod = tasks["worker"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["activeDeadlineSeconds"] == 7200
    assert _container(tasks["worker"]["template"])["name"] == "tensorflow"


def test_volcano_worker_task_completes_the_job_without_chief_and_defaults_apply() -> None:
    spec = parse_create({**MINIMAL, "replicas": [{"type": "worker", "count": 2}, {"type": "ps", "count": 1}]},
                        partition="clever", profile=PROFILE)
    vc = to_cluster_object(spec, IDENTITY, profile_for("volcano"))["spec"]
    tasks = {t["name"]: t for t in vc["tasks"]}
    assert tasks["worker"]["policies"] == [{"event": "TaskCompleted", "action": "CompleteJob"}]
    assert vc["schedulerName"] == "volcano" and vc["queue"] == "default" and vc["maxRetry"] == 3
    assert "ttlSecondsAfterFinished" not in vc and "priorityClassName" not in vc


def test_job_resource_dispatch() -> None:
    assert job_resource(profile_for("training-operator")) == TFJOB_RESOURCE
    assert job_resource(profile_for("tf-operator")) == TFJOB_RESOURCE
    assert job_resource(profile_for("volcano")) == VOLCANO_JOB_RESOURCE
    assert (TFJOB_RESOURCE.plural, VOLCANO_JOB_RESOURCE.plural) == ("tfjobs", "jobs")


def test_runtime_missing_from_the_catalog_is_a_spec_error() -> None:
    spec = parse_create(MINIMAL, partition="clever", profile=PROFILE)
    with pytest.raises(SpecError) as caught:
        to_cluster_object(spec, IDENTITY, replace(PROFILE, runtimes={}))
    assert caught.value.fields[0].path == "runtime"


def test_invalid_partition_in_identity_is_a_spec_error() -> None:
    spec = parse_create(MINIMAL, partition="clever", profile=PROFILE)
    with pytest.raises(SpecError):
        to_cluster_object(spec, replace(IDENTITY, partition="Not_A_Namespace"), PROFILE)


# --- from_cluster_object -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_cluster_object_rebuilds_spec_and_identity(backend: str) -> None:
    spec = parse_create(FULL_BODY, partition="clever", profile=RICH_PROFILE)
    body = json.loads(json.dumps(to_cluster_object(spec, IDENTITY, profile_for(backend, RICH_PROFILE))))
    body["metadata"].update(uid="u-1", resourceVersion="7", creationTimestamp="2017-08-23T13:17:10Z")
    body["status"] = {"conditions": []}
    assert from_cluster_object(body) == (spec, IDENTITY)


@pytest.mark.parametrize("mutate", [
    lambda b: b["metadata"]["labels"].pop("app.kubernetes.io/managed-by"),
    lambda b: b["metadata"]["labels"].update({"app.kubernetes.io/managed-by": "someone-else"}),
    lambda b: b["metadata"]["annotations"].pop(ANNOTATION_SPEC),
    lambda b: b["metadata"]["annotations"].update({ANNOTATION_SPEC: "{not json"}),
    lambda b: b["metadata"]["annotations"].update({ANNOTATION_SPEC: json.dumps({"v": 99})}),
    lambda b: b["metadata"]["annotations"].update({ANNOTATION_SPEC: json.dumps({"v": 1, "name": "x"})}),
    lambda b: b.update({"apiVersion": "batch/v1", "kind": "Job"}),
    lambda b: b.pop("metadata"),
])
def test_objects_that_are_not_ours_are_not_translatable(mutate: Any) -> None:
    spec = parse_create(MINIMAL, partition="clever", profile=PROFILE)
    body = to_cluster_object(spec, IDENTITY, PROFILE)
    mutate(body)
    with pytest.raises(NotTranslatable):
        from_cluster_object(body)


# --- updates: classify and in-place patches --------------------------------------------------


BASE = parse_create(FULL_BODY, partition="clever", profile=RICH_PROFILE)
LATER = replace(IDENTITY, updated="2017-08-24T00:00:00Z")


def patched(body: dict[str, Any]) -> JobSpec:
    return parse_update(body, current=BASE, profile=RICH_PROFILE)


@pytest.mark.parametrize(("body", "kind"), [
    ({}, "unchanged"),
    ({"description": "changed"}, "in-place"),
    ({"ttlSecondsAfterFinished": 1}, "in-place"),
    ({"activeDeadlineSeconds": None}, "in-place"),
    ({"cleanPodPolicy": "All", "description": "x"}, "in-place"),
    ({"backoffLimit": 9}, "recreate"),
    ({"successPolicy": ""}, "recreate"),
    ({"args": "--epochs 4"}, "recreate"),
    ({"runtime": "Python_3.6+Tensorflow_1.12"}, "recreate"),
    ({"environment": "DATA=/other"}, "recreate"),
    ({"logDir": "/elsewhere"}, "recreate"),
    ({"memory": "2Gi"}, "recreate"),
    ({"replicas": [{"type": "worker", "count": 1}]}, "recreate"),
])
def test_classify_update(body: dict[str, Any], kind: str) -> None:
    training_operator = profile_for("training-operator", RICH_PROFILE)
    assert classify_update(BASE, patched(body), profile=training_operator) == kind


def test_changed_fields_name_what_the_user_changed_in_legacy_words() -> None:
    assert changed_fields(BASE, patched({})) == []
    assert changed_fields(BASE, patched({"args": "--epochs 4", "logDir": "/elsewhere", "backoffLimit": 9})) == [
        "args", "logDir", "backoffLimit"]
    assert changed_fields(BASE, patched({"memory": "2Gi", "description": "x"})) == ["replicas", "description"]


def test_classify_update_on_volcano_allows_only_annotation_changes_in_place() -> None:
    volcano = profile_for("volcano", RICH_PROFILE)
    assert classify_update(BASE, patched({"description": "x"}), profile=volcano) == "in-place"
    assert classify_update(BASE, patched({"cleanPodPolicy": "All", "successPolicy": ""}), profile=volcano) == "in-place"
    for body in ({"ttlSecondsAfterFinished": 1}, {"backoffLimit": 1}, {"activeDeadlineSeconds": 5}):
        assert classify_update(BASE, patched(body), profile=volcano) == "recreate"
    assert classify_update(BASE, patched({"ttlSecondsAfterFinished": 1}),
                           profile=profile_for("training-operator")) == "in-place"


def test_in_place_patch_training_operator() -> None:
    new = patched({"description": "new words", "ttlSecondsAfterFinished": 30, "activeDeadlineSeconds": None})
    patch = in_place_patch(BASE, new, LATER, profile_for("training-operator", RICH_PROFILE))
    annotations = patch["metadata"]["annotations"]
    assert annotations[ANNOTATION_DESCRIPTION] == "new words"
    assert annotations[ANNOTATION_UPDATED] == LATER.updated
    assert json.loads(annotations[ANNOTATION_SPEC])["description"] == "new words"
    assert patch["spec"] == {"runPolicy": {"activeDeadlineSeconds": None, "ttlSecondsAfterFinished": 30}}


def test_in_place_patch_tf_operator_and_description_only() -> None:
    new = patched({"cleanPodPolicy": "All"})
    patch = in_place_patch(BASE, new, LATER, profile_for("tf-operator", RICH_PROFILE))
    assert patch["spec"] == {"cleanPodPolicy": "All"}
    only_text = in_place_patch(BASE, patched({"description": "d"}), LATER, profile_for("tf-operator"))
    assert set(only_text) == {"metadata"}


def test_applying_the_in_place_patch_keeps_the_object_translatable() -> None:
    profile = profile_for("training-operator", RICH_PROFILE)
    new = patched({"description": "after", "ttlSecondsAfterFinished": 5})
    body = to_cluster_object(BASE, IDENTITY, profile)
    patch = in_place_patch(BASE, new, LATER, profile)
    body["metadata"]["annotations"].update(patch["metadata"]["annotations"])
    assert from_cluster_object(body) == (new, LATER)


def test_in_place_patch_refuses_changes_that_need_recreate() -> None:
    with pytest.raises(SpecError):
        in_place_patch(BASE, patched({"args": "x"}), LATER, profile_for("training-operator"))
    with pytest.raises(SpecError):
        in_place_patch(BASE, patched({"ttlSecondsAfterFinished": 1}), LATER, profile_for("volcano"))
    for body in ({"description": "v"}, {"cleanPodPolicy": "All"}):
        new = patched(body)
        patch = in_place_patch(BASE, new, LATER, profile_for("volcano"))
        assert set(patch) == {"metadata"}
        assert json.loads(patch["metadata"]["annotations"][ANNOTATION_SPEC]) == json.loads(
            to_cluster_object(new, LATER, profile_for("volcano"))["metadata"]["annotations"][ANNOTATION_SPEC])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(metadata=json_values, spec_annotation=json_values, kind=st.sampled_from(["TFJob", "Job", None]))
def test_damaged_objects_are_not_translatable_never_a_crash(metadata: Any, spec_annotation: Any,
                                                            kind: str | None) -> None:
    good = to_cluster_object(BASE, IDENTITY, profile_for("training-operator", RICH_PROFILE))
    damaged = json.loads(json.dumps(good))
    damaged["metadata"]["annotations"][ANNOTATION_SPEC] = json.dumps(spec_annotation)
    for obj in ({"apiVersion": "kubeflow.org/v1", "kind": kind, "metadata": metadata}, damaged):
        with pytest.raises(NotTranslatable):
            from_cluster_object(obj)


def test_volcano_backoff_limit_zero_means_no_restart() -> None:
    """Volcano's webhook defaults maxRetry 0 to 3; backoffLimit 0 must still mean "fail on the first failure"."""
    from dataclasses import replace as _replace

    from translators.backends import to_cluster_object
    from translators.spec import (
        ClusterProfile,
        JobIdentity,
        JobSpec,
        Replica,
        Resources,
        RunPolicy,
        RuntimeImage,
    )

    profile = ClusterProfile(id="vc", backend="volcano", runtimes={"rt": RuntimeImage(image="tf:2")})
    spec = JobSpec(name="j", runtime="rt", bootfile="/a.py",
                   replicas=(Replica("worker", 1, Resources("1", "1Gi")),), run_policy=RunPolicy(backoff_limit=0))
    identity = JobIdentity(id="abc123", owner="u", cluster="vc", partition="p", created="2026-01-01T00:00:00Z",
                           updated="2026-01-01T00:00:00Z")
    body = to_cluster_object(spec, identity, profile)
    assert {p["action"] for p in body["spec"]["policies"]} == {"TerminateJob"}
    assert body["spec"]["maxRetry"] == 3
    retried = to_cluster_object(_replace(spec, run_policy=RunPolicy(backoff_limit=2)), identity, profile)
    assert {p["action"] for p in retried["spec"]["policies"]} == {"RestartJob"}
    assert retried["spec"]["maxRetry"] == 2


def test_clearing_clean_pod_policy_gives_back_what_a_create_gets() -> None:
    """A PATCH that clears cleanPodPolicy sets the cluster's default (Running: a finished job's ps pods go),
    as the create did, instead of removing the field (training-operator's own default keeps them)."""
    profile = profile_for("training-operator")
    with_all = patched({"cleanPodPolicy": "All"})
    cleared = replace(with_all, run_policy=replace(with_all.run_policy, clean_pod_policy=None))
    patch = in_place_patch(with_all, cleared, LATER, profile)
    assert patch["spec"]["runPolicy"]["cleanPodPolicy"] == \
        to_cluster_object(cleared, IDENTITY, profile)["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"
