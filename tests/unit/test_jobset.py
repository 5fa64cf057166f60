"""Backend `jobset`: JobSet bodies (CRD, shape, names), TF_CONFIG per pod, PATCH rules, round trip.

TF_CONFIG is checked the way a pod would see it: the Job controller gives each pod its completion
index (annotation) and hostname `<job>-<index>`, the kubelet resolves the downward-API variable and
expands `$(VAR)` references to earlier variables (`$$` -> `$`), and the program parses the result
as JSON. The expected cluster is built from those simulated pods' DNS names, not from the
translator's own formula.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings

from kubesim import schema
from kubesim.server import apply_merge_patch
from tests.service.seed_bodies import SEED_BODIES as SERVICE_SEED_BODIES
from tests.unit.test_clever_reader import MINIMAL, PROFILE, SEED_FLAT_CREATE, SEED_LIST_ITEM, SEED_OBJECT
from tests.unit.test_roundtrip import identities, profiles, specs
from translators.backends import (
    JOBSET_RESOURCE,
    from_cluster_object,
    in_place_patch,
    job_resource,
    to_cluster_object,
)
from translators.backends.jobset import MAX_NAME_LENGTH, MAX_REPLICAS_PER_TYPE, tf_config
from translators.backends.registry import backend_named
from translators.clever import classify_update, parse_create, parse_update
from translators.errors import SpecError
from translators.labels import ANNOTATION_SPEC, LABEL_JOB_ID
from translators.naming import is_dns1035_label
from translators.spec import JobIdentity, JobSpec, Replica, Resources, RunPolicy, Volume

JOBSET = replace(PROFILE, backend="jobset", max_replicas_per_job=64)
RICH_JOBSET = replace(JOBSET, volumes=(Volume("data", "/clever", claim_name="clever-data"),),
                      image_pull_secrets=("regcred",), scheduler_name="default-scheduler",
                      priority_class="high")
IDENTITY = JobIdentity(id="12345678", owner="admin", cluster="c1", partition="clever",
                       created="2017-08-23T13:17:09Z", updated="2017-08-23T13:17:09Z")
LATER = replace(IDENTITY, updated="2017-08-24T00:00:00Z")
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def wire(body: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(body))


def jobset_of(body: dict[str, Any], profile: Any = JOBSET) -> dict[str, Any]:
    return wire(to_cluster_object(parse_create(body, partition="clever", profile=profile), IDENTITY, profile))


def assert_valid(body: dict[str, Any]) -> None:
    assert schema.validate(body) == []
    assert schema.pruned_fields(body) == []


def shape(*groups: tuple[str, int]) -> dict[str, Any]:
    return {**MINIMAL, "replicas": [{"type": t, "count": n} for t, n in groups]}


# --- the kubelet, as far as TF_CONFIG needs it -----------------------------------------------------


def expand(value: str, defined: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: earlier variables are substituted, `$$` is a literal `$`."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        match = re.compile(r"\$\(([^)]*)\)").match(value, i)
        if match:
            out.append(defined.get(match.group(1), match.group(0)))
            i = match.end()
            continue
        out.append(value[i])
        i += 1
    return "".join(out)


def pods_of(jobset: dict[str, Any]) -> list[dict[str, Any]]:
    """The pods the Job controller makes: one per completion index, with its annotation and hostname."""
    name = jobset["metadata"]["name"]
    assert jobset["spec"]["network"] == {"enableDNSHostnames": True}  # subdomain: the JobSet's name
    pods = []
    for rjob in jobset["spec"]["replicatedJobs"]:
        assert rjob["replicas"] == 1
        job = rjob["template"]["spec"]
        assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"]
        for index in range(job["completions"]):
            pod = copy.deepcopy(job["template"])
            pod["metadata"].setdefault("annotations", {})[COMPLETION_INDEX] = str(index)
            pod["metadata"]["labels"]["jobset.sigs.k8s.io/replicatedjob-name"] = rjob["name"]
            pod["spec"]["hostname"], pod["spec"]["subdomain"] = f"{name}-{rjob['name']}-0-{index}", name
            pods.append(pod)
    return pods


def resolved_env(pod: dict[str, Any]) -> dict[str, str]:
    """The `tensorflow` container's environment as the process sees it."""
    (container,) = pod["spec"]["containers"]
    defined: dict[str, str] = {}
    for var in container.get("env", []):
        if "valueFrom" in var:
            path = var["valueFrom"]["fieldRef"]["fieldPath"]
            key = re.fullmatch(r"metadata\.annotations\['([^']+)'\]", path)
            assert key, path
            defined[var["name"]] = pod["metadata"]["annotations"][key.group(1)]
        else:
            defined[var["name"]] = expand(var["value"], defined)
    return defined


def cluster_of(pods: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The cluster spec those pods form: each pod's DNS name, by type, in index order."""
    cluster: dict[str, list[str]] = {}
    for pod in sorted(pods, key=lambda p: int(p["metadata"]["annotations"][COMPLETION_INDEX])):
        kind = pod["metadata"]["labels"]["jobset.sigs.k8s.io/replicatedjob-name"]
        cluster.setdefault(kind, []).append(f"{pod['spec']['hostname']}.{pod['spec']['subdomain']}:2222")
    return cluster


def check_tf_config(jobset: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod's parsed TF_CONFIG is the pods' own cluster and its own task; returns them."""
    pods = pods_of(jobset)
    configs = []
    for pod in pods:
        tf = json.loads(resolved_env(pod)["TF_CONFIG"])
        kind = pod["metadata"]["labels"]["jobset.sigs.k8s.io/replicatedjob-name"]
        assert tf == {"cluster": cluster_of(pods), "environment": "cloud",
                      "task": {"type": kind, "index": int(pod["metadata"]["annotations"][COMPLETION_INDEX])}}
        configs.append(tf)
    return configs


# --- bodies ------------------------------------------------------------------------------------------


SEED_003 = {"unit-flat-create": SEED_FLAT_CREATE, "unit-list-item": SEED_LIST_ITEM,
            "unit-object": SEED_OBJECT,
            **{f"service-{key}": body for key, body in SERVICE_SEED_BODIES.items()}}


@pytest.mark.parametrize("profile", [JOBSET, RICH_JOBSET], ids=["plain", "rich"])
@pytest.mark.parametrize("key", sorted(SEED_003))
def test_seed_003_jobsets_validate_against_the_crd(key: str, profile: Any) -> None:
    assert_valid(jobset_of(SEED_003[key], profile))


def test_seed_003_create_request_body() -> None:
    body = jobset_of(SEED_FLAT_CREATE)
    assert (body["apiVersion"], body["kind"]) == ("jobset.x-k8s.io/v1alpha2", "JobSet")
    assert body["metadata"]["name"] == "tfserving-0-12345678" and body["metadata"]["namespace"] == "clever"
    assert job_resource(JOBSET) == JOBSET_RESOURCE and JOBSET_RESOURCE.plural == "jobsets"
    (worker,) = body["spec"]["replicatedJobs"]
    job = worker["template"]["spec"]
    assert worker["name"] == "worker" and worker["replicas"] == 1
    assert (job["parallelism"], job["completions"], job["completionMode"]) == (1, 1, "Indexed")
    assert job["backoffLimit"] == 0
    assert job["successPolicy"] == {"rules": [{"succeededIndexes": "0"}]}
    assert body["spec"]["successPolicy"] == {"operator": "All", "targetReplicatedJobs": ["worker"]}
    assert "failurePolicy" not in body["spec"] and "ttlSecondsAfterFinished" not in body["spec"]
    pod = job["template"]
    assert pod["metadata"]["labels"][LABEL_JOB_ID] == "12345678"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "tensorflow" and container["image"] == "clever/tf:1.2.1-py2-gpu"
    assert container["command"] == ["python2", "/clever/admin/xinhe/file.py"]
    assert container["args"] == ["--test=10", "--config=1"]
    assert container["ports"] == [{"name": "tfjob-port", "containerPort": 2222}]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "2048Mi", "nvidia.com/gpu": "1"}
    names = [e["name"] for e in container["env"]]
    assert names == ["DATA", "EPOCHS", "CHECKPOINT_DIR", "EVENT_DIR", "MODEL_DIR", "LOG_DIR"]  # one replica


def test_rich_profile_reaches_the_pods() -> None:
    pod = jobset_of(MINIMAL, RICH_JOBSET)["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "clever-data"}}]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert (pod["schedulerName"], pod["priorityClassName"]) == ("default-scheduler", "high")


def test_shape_with_a_chief_never_waits_on_ps() -> None:
    body = jobset_of(shape(("chief", 1), ("worker", 3), ("ps", 2), ("evaluator", 0)))
    rjobs = {r["name"]: r["template"]["spec"] for r in body["spec"]["replicatedJobs"]}
    assert list(rjobs) == ["chief", "worker", "ps"]  # count 0: no replicated job
    assert {k: (j["parallelism"], j["completions"]) for k, j in rjobs.items()} == {
        "chief": (1, 1), "worker": (3, 3), "ps": (2, 2)}
    assert body["spec"]["successPolicy"] == {"operator": "All", "targetReplicatedJobs": ["chief"]}
    assert not any("successPolicy" in job for job in rjobs.values())


def test_lifecycle_fields() -> None:
    body = jobset_of({**shape(("worker", 2), ("ps", 1)), "backoffLimit": 3, "activeDeadlineSeconds": 600,
                      "ttlSecondsAfterFinished": 60, "cleanPodPolicy": "All", "successPolicy": "AllWorkers"})
    spec = body["spec"]
    assert spec["failurePolicy"] == {"maxRestarts": 3, "rules": [
        {"name": "deadlineFailsJobSet", "action": "FailJobSet", "onJobFailureReasons": ["DeadlineExceeded"]}]}
    assert spec["ttlSecondsAfterFinished"] == 60
    assert all(r["template"]["spec"]["activeDeadlineSeconds"] == 600 for r in spec["replicatedJobs"])
    # cleanPodPolicy and successPolicy have no JobSet field: the spec annotation keeps them.
    kept = json.loads(body["metadata"]["annotations"][ANNOTATION_SPEC])["runPolicy"]
    assert kept["cleanPodPolicy"] == "All" and kept["successPolicy"] == "AllWorkers"
    assert_valid(body)
    assert jobset_of({**MINIMAL, "backoffLimit": 0})["spec"]["failurePolicy"] == {"maxRestarts": 0}
    deadline_only = jobset_of({**MINIMAL, "activeDeadlineSeconds": 5})["spec"]["failurePolicy"]
    assert deadline_only["maxRestarts"] == 0 and len(deadline_only["rules"]) == 1


def test_long_names_are_shortened_so_every_pod_name_fits() -> None:
    body = jobset_of({**shape(("chief", 1), ("worker", 16), ("evaluator", 1)), "name": "x" * 63},
                     replace(JOBSET, max_replicas_per_job=99))
    name = body["metadata"]["name"]
    assert len(name) == MAX_NAME_LENGTH == 39 and is_dns1035_label(name) and name.endswith("-12345678")
    # The longest a pod name can get: evaluator, the largest index a type may have, 5 random characters.
    longest = f"{name}-evaluator-0-{MAX_REPLICAS_PER_TYPE - 1}-abcde"
    assert len(longest) == 63 and is_dns1035_label(longest)
    assert jobset_of({**MINIMAL, "name": "Résumé v2!"})["metadata"]["name"] == "r-sum-v2-12345678"


def test_dollar_signs_reach_the_program_literally() -> None:
    body = jobset_of({**shape(("worker", 2)), "args": ["$(HOME)"],
                      "environment": {"PRICE": "$(TF_TASK_INDEX)$$"}, "logDir": "/logs/$USER"})
    for pod in pods_of(body):
        env = resolved_env(pod)
        assert (env["PRICE"], env["LOG_DIR"]) == ("$(TF_TASK_INDEX)$$", "/logs/$USER")
        assert expand(pod["spec"]["containers"][0]["args"][0], env) == "$(HOME)"
    assert from_cluster_object(body)[0].environment == (("PRICE", "$(TF_TASK_INDEX)$$"),)


@pytest.mark.parametrize("variable", ["TF_TASK_INDEX", "JOB_COMPLETION_INDEX"])
def test_the_index_variables_are_not_the_users(variable: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_create({**MINIMAL, "environment": f"{variable}=1"}, partition="clever", profile=JOBSET)
    assert [f.path for f in caught.value.fields] == ["environment"]
    accepted = parse_create({**MINIMAL, "environment": f"{variable}=1"}, partition="clever", profile=PROFILE)
    with pytest.raises(SpecError):
        to_cluster_object(accepted, IDENTITY, JOBSET)  # a spec made elsewhere is refused, not half-built


def test_more_replicas_of_a_type_than_pod_names_allow_are_refused() -> None:
    spec = JobSpec(name="j", runtime="Python_3.6+Tensorflow_1.12", bootfile="/a.py",
                   replicas=(Replica("worker", MAX_REPLICAS_PER_TYPE + 1, Resources("1", "1Gi")),))
    assert [f.path for f in backend_named("jobset").check(spec)] == ["replicas"]
    assert backend_named("jobset").check(replace(spec, replicas=(replace(spec.replicas[0], count=5),))) == []


# --- TF_CONFIG per pod ----------------------------------------------------------------------------------


def test_one_worker_gets_no_tf_config() -> None:
    (pod,) = pods_of(jobset_of(shape(("worker", 1), ("ps", 0))))
    assert {"TF_CONFIG", "TF_TASK_INDEX"}.isdisjoint(resolved_env(pod))


def test_one_worker_and_one_ps() -> None:
    body = jobset_of(shape(("worker", 1), ("ps", 1)))
    name = body["metadata"]["name"]
    configs = check_tf_config(body)
    assert configs[0]["cluster"] == {"worker": [f"{name}-worker-0-0.{name}:2222"],
                                     "ps": [f"{name}-ps-0-0.{name}:2222"]}
    assert [c["task"] for c in configs] == [{"type": "worker", "index": 0}, {"type": "ps", "index": 0}]


def test_chief_two_ps_three_workers() -> None:
    configs = check_tf_config(jobset_of(shape(("chief", 1), ("ps", 2), ("worker", 3))))
    assert {k: len(v) for k, v in configs[0]["cluster"].items()} == {"chief": 1, "worker": 3, "ps": 2}
    assert sorted((c["task"]["type"], c["task"]["index"]) for c in configs) == [
        ("chief", 0), ("ps", 0), ("ps", 1), ("worker", 0), ("worker", 1), ("worker", 2)]


def test_evaluator_is_in_the_cluster_spec_too() -> None:
    configs = check_tf_config(jobset_of(shape(("chief", 1), ("worker", 2), ("ps", 1), ("evaluator", 1))))
    assert list(configs[0]["cluster"]) == ["chief", "worker", "ps", "evaluator"]
    assert {"type": "evaluator", "index": 0} in [c["task"] for c in configs]


def test_tf_config_text_matches_the_documented_example() -> None:
    replicas = [Replica("chief", 1, Resources("1", "1Gi")), Replica("ps", 2, Resources("1", "1Gi")),
                Replica("worker", 3, Resources("1", "1Gi"))]
    assert tf_config("j1", replicas, "ps") == (
        '{"cluster":{"chief":["j1-chief-0-0.j1:2222"],"ps":["j1-ps-0-0.j1:2222","j1-ps-0-1.j1:2222"],'
        '"worker":["j1-worker-0-0.j1:2222","j1-worker-0-1.j1:2222","j1-worker-0-2.j1:2222"]},'
        '"task":{"type":"ps","index":$(TF_TASK_INDEX)},"environment":"cloud"}')


def test_the_index_variable_is_defined_before_tf_config() -> None:
    (container,) = pods_of(jobset_of(shape(("worker", 2))))[0]["spec"]["containers"]
    names = [e["name"] for e in container["env"]]
    assert names.index("TF_TASK_INDEX") == names.index("TF_CONFIG") - 1 == len(names) - 2
    assert container["env"][-2]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}


# --- the fuzzed corpus ------------------------------------------------------------------------------------


@FUZZ
@given(spec=specs, identity=identities, profile=profiles)
def test_fuzzed_jobsets_validate_fit_and_configure_every_pod(spec: JobSpec, identity: JobIdentity,
                                                              profile: Any) -> None:
    assume(not backend_named("jobset").check(spec))
    body = wire(to_cluster_object(spec, identity, replace(profile, backend="jobset")))
    assert_valid(body)
    name = body["metadata"]["name"]
    assert is_dns1035_label(name) and len(name) <= MAX_NAME_LENGTH
    for rjob in body["spec"]["replicatedJobs"]:
        longest = f"{name}-{rjob['name']}-0-{rjob['template']['spec']['completions'] - 1}-abcde"
        assert len(longest) <= 63 and is_dns1035_label(longest)
    active = [r for r in spec.replicas if r.count > 0]
    if sum(r.count for r in active) > 1:
        configs = check_tf_config(body)
        assert len(configs) == sum(r.count for r in active)
    else:
        assert all("TF_CONFIG" not in resolved_env(pod) for pod in pods_of(body))
    assert from_cluster_object(body) == (spec, identity)


# --- PATCH: in place or a new object -----------------------------------------------------------------------


BASE = parse_create({**shape(("chief", 1), ("worker", 2), ("ps", 1)), "activeDeadlineSeconds": 7200,
                     "ttlSecondsAfterFinished": 600, "cleanPodPolicy": "Running", "backoffLimit": 4},
                    partition="clever", profile=JOBSET)


def patched(body: dict[str, Any]) -> JobSpec:
    return parse_update(body, current=BASE, profile=JOBSET)


@pytest.mark.parametrize(("body", "kind"), [
    ({}, "unchanged"),
    ({"description": "changed"}, "in-place"),
    ({"ttlSecondsAfterFinished": 1}, "in-place"),
    ({"ttlSecondsAfterFinished": None}, "in-place"),
    ({"cleanPodPolicy": "All", "successPolicy": "AllWorkers", "description": "x"}, "in-place"),
    ({"activeDeadlineSeconds": 5}, "recreate"),
    ({"activeDeadlineSeconds": None}, "recreate"),
    ({"backoffLimit": 9}, "recreate"),
    ({"args": "--epochs 4"}, "recreate"),
    ({"environment": "DATA=/other"}, "recreate"),
    ({"memory": "2Gi"}, "recreate"),
    ({"replicas": [{"type": "worker", "count": 1}]}, "recreate"),
])
def test_classify_update_on_jobset(body: dict[str, Any], kind: str) -> None:
    assert classify_update(BASE, patched(body), profile=JOBSET) == kind


@pytest.mark.parametrize("body", [{"description": "after"}, {"ttlSecondsAfterFinished": 5},
                                  {"ttlSecondsAfterFinished": None, "cleanPodPolicy": "All"}])
def test_in_place_patch_gives_the_object_the_new_spec(body: dict[str, Any]) -> None:
    new = patched(body)
    live = wire(to_cluster_object(BASE, IDENTITY, JOBSET))
    patch = in_place_patch(BASE, new, LATER, JOBSET)
    assert set(patch) <= {"metadata", "spec"} and set(patch.get("spec", {})) <= {"ttlSecondsAfterFinished"}
    after = apply_merge_patch(live, wire(patch))  # as the API server applies merge-patch+json
    assert from_cluster_object(after) == (new, LATER)
    assert after["spec"] == wire(to_cluster_object(new, LATER, JOBSET))["spec"]  # as if created so
    assert_valid(after)


def test_in_place_patch_refuses_what_needs_a_new_jobset() -> None:
    for body in ({"activeDeadlineSeconds": 5}, {"backoffLimit": 1}, {"args": "x"}):
        with pytest.raises(SpecError):
            in_place_patch(BASE, patched(body), LATER, JOBSET)


# --- round trip ------------------------------------------------------------------------------------------


def test_round_trip_of_a_full_spec() -> None:
    spec = replace(BASE, run_policy=RunPolicy(active_deadline_seconds=1, ttl_seconds_after_finished=0,
                                              clean_pod_policy="None", backoff_limit=0, success_policy=""))
    assert from_cluster_object(wire(to_cluster_object(spec, IDENTITY, RICH_JOBSET))) == (spec, IDENTITY)
