"""The tolerant legacy reader: seed 003's examples, every tolerated spelling, and the bad-input matrix."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from translators.clever import environment_string, parse_create, parse_update, render_job, render_list
from translators.errors import SpecError
from translators.spec import (
    ClusterProfile,
    JobIdentity,
    JobSpec,
    JobStatus,
    Replica,
    Resources,
    RunPolicy,
    RuntimeImage,
)

PROFILE = ClusterProfile(
    id="c1",
    runtimes={
        "Python_2.7+Tensorflow_1.2.1": RuntimeImage("clever/tf:1.2.1-py2", gpu_image="clever/tf:1.2.1-py2-gpu",
                                                    command=("python2",)),
        "Python_3.6+Tensorflow_1.12": RuntimeImage("clever/tf:1.12-py3", command=("python3",)),
    },
    max_replicas_per_job=16,
    max_gpus_per_job=8,
)

# Seed 003, list response item, as valid JSON: `"checkpointDir": "/clever/admin"` and
# `replicas: {[...]}` -> a list; everything else verbatim (the ps entry's `conut` included).
SEED_LIST_ITEM = json.loads("""
{
  "metadata": {"uid": "admin", "id": "12345678", "name": "tfserving-0",
               "creationTime": "2017-08-23T21:17:09.379754063+08:00",
               "lastUpdateTime": "2017-08-23T21:17:09.379754063+08:00"},
  "spec": {
    "description": "create a tfjobs",
    "partition": "clever",
    "runtime": "Python_2.7+Tensorflow_1.2.1",
    "workdir": "/clever/admin/xinhe/jobs",
    "bootfile": "/clever/admin/xinhe/file.py",
    "args": ["--test=10","--config=1"],
    "checkpointDir": "/clever/admin",
    "eventDir": "/clever/admin/xinhe",
    "modelDir": "/clever/admin/xinhe/logs",
    "logDir": "/clever/admin/xinhe/logs/guideline",
    "replicas": [
      {"type": "worker", "count": "1", "resource": {"cpu": "1.000", "memory": "2048Mi", "gpu": "1"}},
      {"type": "ps", "conut": "0", "resource": {"cpu": "1.000", "memory": "2048Mi", "gpu": "1"}}
    ]
  },
  "status": {"phase": "running", "replicas": [{"id": "12345678-k8s-xyz", "restartCount": 0,
             "status": "Running", "startTime": "2017-08-23T21:17:09.379754063+08:00"}]}
}
""")

# Seed 003, create/get/update response (identical in all three), as valid JSON: the wrapped
# `replicas: {count, replicas: {[...]}}` with the inner `{[...]}` made a list.
SEED_OBJECT = json.loads("""
{
  "metadata": {"uid": "admin", "id": "12345678", "name": "tfserving-0",
               "creationTime": "2017-08-23T21:17:09.379754063+08:00",
               "lastUpdateTime": "2017-08-23T21:17:09.379754063+08:00"},
  "spec": {
    "description": "create a tfjobs",
    "partition": "clever",
    "runtime": "Python 2.7 + Tensorflow 1.2.1",
    "workerdir": "/clever/admin/xinhe/logs",
    "bootfile": "/clever/admin/xinhe/file.python",
    "args": "-test=10 -config=1",
    "checkpointDir": "/clever/admin",
    "eventDir": "/clever/admin/xinhe",
    "modelDir": "/clever/admin/xinhe/logs",
    "logDir": "/clever/admin/xinhe/logs/guideline",
    "replicas": {
      "count": "1",
      "replicas": [
        {"type": "worker", "count": "1", "resource": {"cpu": "1.000", "memory": "2048Mi", "gpu": "1"}},
        {"type": "ps", "conut": "0", "resource": {"cpu": "1.000", "memory": "2048Mi", "gpu": "1"}}
      ]
    }
  },
  "status": {"phase": "running", "replicas": [{"id": "12345678-k8s-xyz", "restartCount": 0,
             "status": "Running", "startTime": "2017-08-23T21:17:09.379754063+08:00"}]}
}
""")

# Seed 003, create request: the flat argument table, every value a string as documented.
SEED_FLAT_CREATE = {
    "name": "tfserving-0",
    "description": "create a tfjobs",
    "runtime": "Python 2.7 + Tensorflow 1.2.1",
    "workdir": "/clever/admin/xinhe/jobs",
    "bootfile": "/clever/admin/xinhe/file.py",
    "args": "--test=10 --config=1",
    "enviroment": "DATA=/clever/data,EPOCHS=10",
    "checkpointDir": "/clever/admin",
    "eventDir": "/clever/admin/xinhe",
    "modelDir": "/clever/admin/xinhe/logs",
    "logDir": "/clever/admin/xinhe/logs/guideline",
    "cpu": "1.000",
    "gpu": "1",
    "memory": "2048Mi",
    "type": "worker",
    "count": "1",
}

SEED_REPLICAS = (
    Replica("worker", 1, Resources(cpu="1", memory="2048Mi", gpu=1)),
    Replica("ps", 0, Resources(cpu="1", memory="2048Mi", gpu=1)),
)

MINIMAL = {"name": "job", "runtime": "Python_3.6+Tensorflow_1.12", "bootfile": "/jobs/train.py",
           "cpu": "1", "memory": "1Gi"}


def _profile(**overrides: Any) -> ClusterProfile:
    return replace(PROFILE, **overrides)


def create(body: object, **overrides: Any) -> JobSpec:
    return parse_create(body, partition="clever", profile=_profile(**overrides))


def errors_of(body: object, *, partition: str = "clever", **overrides: Any) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_create(body, partition=partition, profile=_profile(**overrides))
    assert caught.value.fields, "a SpecError must name its fields"
    return {f.path: f.message for f in caught.value.fields}


# --- seed 003 examples -----------------------------------------------------------------------


def test_seed_list_item_reads_into_the_canonical_spec() -> None:
    spec = create(SEED_LIST_ITEM)
    assert spec.name == "tfserving-0"
    assert spec.runtime == "Python_2.7+Tensorflow_1.2.1"
    assert spec.workdir == "/clever/admin/xinhe/jobs"
    assert spec.bootfile == "/clever/admin/xinhe/file.py"
    assert spec.args == ("--test=10", "--config=1")
    assert spec.checkpoint_dir == "/clever/admin"
    assert spec.event_dir == "/clever/admin/xinhe"
    assert spec.model_dir == "/clever/admin/xinhe/logs"
    assert spec.log_dir == "/clever/admin/xinhe/logs/guideline"
    assert spec.replicas == SEED_REPLICAS
    assert spec.description == "create a tfjobs"


def test_seed_response_object_reads_with_spaced_runtime_workerdir_and_string_args() -> None:
    spec = create(SEED_OBJECT)
    assert spec.runtime == "Python_2.7+Tensorflow_1.2.1"
    assert spec.workdir == "/clever/admin/xinhe/logs"
    assert spec.args == ("-test=10", "-config=1")
    assert spec.replicas == SEED_REPLICAS


def test_seed_flat_create_table_reads_top_level_type_count_and_resources() -> None:
    spec = create(SEED_FLAT_CREATE)
    assert spec.replicas == (Replica("worker", 1, Resources(cpu="1", memory="2048Mi", gpu=1)),)
    assert spec.environment == (("DATA", "/clever/data"), ("EPOCHS", "10"))
    assert spec.args == ("--test=10", "--config=1")


def test_seed_object_spec_alone_with_name_reads_the_same() -> None:
    flat = dict(SEED_OBJECT["spec"], name="tfserving-0")
    assert create(flat) == create(SEED_OBJECT)


# --- tolerated spellings ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["environment", "enviroment", "env"])
def test_environment_spellings(key: str) -> None:
    spec = create({**MINIMAL, key: "A=1,B=2"})
    assert spec.environment == (("A", "1"), ("B", "2"))


@pytest.mark.parametrize(
    "value",
    ["A=1,B=x=y", "A=1;B=x=y", "A=1\nB=x=y", "A=1, B=x=y ;\n", {"A": "1", "B": "x=y"}, ["A=1", "B=x=y"],
     {"A": 1, "B": "x=y"}],
)
def test_environment_forms(value: object) -> None:
    assert create({**MINIMAL, "environment": value}).environment == (("A", "1"), ("B", "x=y"))


def test_environment_list_keeps_separators_inside_values() -> None:
    spec = create({**MINIMAL, "environment": ["HOSTS=a,b;c"]})
    assert spec.environment == (("HOSTS", "a,b;c"),)


@pytest.mark.parametrize("key", ["workdir", "workerdir", "workDir"])
def test_workdir_spellings(key: str) -> None:
    assert create({**MINIMAL, key: "/w"}).workdir == "/w"


def test_same_value_under_two_spellings_is_fine_but_different_values_conflict() -> None:
    assert create({**MINIMAL, "workdir": "/w", "workerdir": "/w"}).workdir == "/w"
    assert "workerdir" in errors_of({**MINIMAL, "workdir": "/w", "workerdir": "/x"})


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"type": "worker", "count": "2", "resource": {"cpu": "1", "memory": "1Gi"}}, 2),
        ({"type": "worker", "conut": "2", "resource": {"cpu": "1", "memory": "1Gi"}}, 2),
        ({"type": "worker", "count": 2, "resources": {"cpu": 1, "memory": "1Gi", "gpu": 0}}, 2),
        ({"type": "Worker", "count": " 2", "resource": {"cpu": "1", "memory": "1Gi"}}, 2),
        ({"type": "WORKER", "count": "2", "cpu": "1", "memory": "1Gi"}, 2),
        ({"type": "worker", "resource": {"cpu": "1", "memory": "1Gi"}}, 1),
    ],
)
def test_replica_entry_spellings(entry: dict[str, Any], expected: int) -> None:
    body = {k: v for k, v in MINIMAL.items() if k not in ("cpu", "memory")}
    spec = create({**body, "replicas": [entry]})
    assert spec.replicas == (Replica("worker", expected, Resources("1", "1Gi", 0)),)


def test_master_is_chief_and_types_are_sorted() -> None:
    spec = create({**MINIMAL, "replicas": [{"type": "ps", "count": 1}, {"type": "Worker", "count": 2},
                                           {"type": "master", "count": 1}, {"type": "evaluator"}]})
    assert [r.type for r in spec.replicas] == ["chief", "worker", "ps", "evaluator"]


def test_top_level_resources_are_defaults_for_replicas_that_give_none() -> None:
    spec = create({**MINIMAL, "gpu": "1", "replicas": [
        {"type": "worker", "count": 2},
        {"type": "ps", "count": 1, "resource": {"cpu": "500m", "gpu": 0}},
    ]})
    assert spec.replicas == (Replica("worker", 2, Resources("1", "1Gi", 1)),
                             Replica("ps", 1, Resources("500m", "1Gi", 0)))


def test_no_replicas_at_all_means_one_worker() -> None:
    assert create(MINIMAL).replicas == (Replica("worker", 1, Resources("1", "1Gi", 0)),)


@pytest.mark.parametrize("runtime", ["Python_2.7+Tensorflow_1.2.1", "Python 2.7 + Tensorflow 1.2.1",
                                     "python 2.7+tensorflow 1.2.1", "Python_2.7 + Tensorflow_1.2.1"])
def test_runtime_spellings_resolve_to_the_catalog_key(runtime: str) -> None:
    assert create({**MINIMAL, "runtime": runtime}).runtime == "Python_2.7+Tensorflow_1.2.1"


@pytest.mark.parametrize(("value", "expected"), [
    ("--a=1 --b 'two words'", ("--a=1", "--b", "two words")),
    (["--a=1", 2], ("--a=1", "2")),
    ("", ()),
    (None, ()),
])
def test_args_forms(value: object, expected: tuple[str, ...]) -> None:
    assert create({**MINIMAL, "args": value}).args == expected


def test_lifecycle_fields_become_the_run_policy() -> None:
    spec = create({**MINIMAL, "activeDeadlineSeconds": "3600", "ttlSecondsAfterFinished": 60,
                   "cleanPodPolicy": "running", "backoffLimit": 2, "successPolicy": "AllWorkers"})
    assert spec.run_policy == RunPolicy(active_deadline_seconds=3600, ttl_seconds_after_finished=60,
                                        clean_pod_policy="Running", backoff_limit=2, success_policy="AllWorkers")


def test_unknown_and_legacy_extra_fields_are_ignored() -> None:
    assert create({**MINIMAL, "partition": "other", "id": "x", "status": {"phase": "running"},
                   "metadata": {"uid": "u"}, "somethingNew": [1]}) == create(MINIMAL)


def test_legacy_names_with_uppercase_and_underscores_are_accepted() -> None:
    assert create({**MINIMAL, "name": "My_Job-0"}).name == "My_Job-0"
    assert create({**MINIMAL, "name": "训练任务"}).name == "训练任务"


# --- bad input matrix ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({k: v for k, v in MINIMAL.items() if k != "name"}, "name"),
        ({k: v for k, v in MINIMAL.items() if k != "runtime"}, "runtime"),
        ({k: v for k, v in MINIMAL.items() if k != "bootfile"}, "bootfile"),
        ({k: v for k, v in MINIMAL.items() if k != "cpu"}, "cpu"),
        ({k: v for k, v in MINIMAL.items() if k != "memory"}, "memory"),
        ({**MINIMAL, "name": None}, "name"),
        ({**MINIMAL, "name": ""}, "name"),
        ({**MINIMAL, "name": "x" * 64}, "name"),
        ({**MINIMAL, "name": " padded"}, "name"),
        ({**MINIMAL, "name": "a/b"}, "name"),
        ({**MINIMAL, "name": 7}, "name"),
        ({**MINIMAL, "description": "d" * 1025}, "description"),
        ({**MINIMAL, "description": ["x"]}, "description"),
        ({**MINIMAL, "cpu": "abc"}, "cpu"),
        ({**MINIMAL, "cpu": "0"}, "cpu"),
        ({**MINIMAL, "cpu": "-1"}, "cpu"),
        ({**MINIMAL, "cpu": "0.0001"}, "cpu"),
        ({**MINIMAL, "memory": "2048m"}, "memory"),
        ({**MINIMAL, "memory": "lots"}, "memory"),
        ({**MINIMAL, "memory": True}, "memory"),
        ({**MINIMAL, "gpu": "0.5"}, "gpu"),
        ({**MINIMAL, "gpu": "-1"}, "gpu"),
        ({**MINIMAL, "gpu": "one"}, "gpu"),
        ({**MINIMAL, "gpu": "1e999999999"}, "gpu"),
        ({**MINIMAL, "cpu": "1e999999999"}, "cpu"),
        ({**MINIMAL, "count": 1e300}, "count"),
        ({**MINIMAL, "count": "-1"}, "count"),
        ({**MINIMAL, "count": "1.5"}, "count"),
        ({**MINIMAL, "count": 2.0}, "count"),
        ({**MINIMAL, "count": "2.000"}, "count"),
        ({**MINIMAL, "count": "1_0"}, "count"),
        ({**MINIMAL, "count": "\uff12"}, "count"),
        ({**MINIMAL, "count": "\u0661"}, "count"),
        ({**MINIMAL, "count": "+1"}, "count"),
        ({**MINIMAL, "gpu": "1_0"}, "gpu"),
        ({**MINIMAL, "gpu": "\uff11"}, "gpu"),
        ({**MINIMAL, "cpu": "1_0"}, "cpu"),
        ({**MINIMAL, "cpu": "\uff12"}, "cpu"),
        ({**MINIMAL, "memory": "1\u0661Gi"}, "memory"),
        ({**MINIMAL, "backoffLimit": "3.0"}, "backoffLimit"),
        ({**MINIMAL, "description": "a\x00b"}, "description"),
        ({**MINIMAL, "description": "bell\x07"}, "description"),
        ({**MINIMAL, "description": "a\ud800b"}, "description"),
        ({**MINIMAL, "args": ["a\x00b"]}, "args[0]"),
        ({**MINIMAL, "args": "--x a\x00b"}, "args"),
        ({**MINIMAL, "args": ["a\udfffb"]}, "args[0]"),
        ({**MINIMAL, "environment": "A=1\x00"}, "environment"),
        ({**MINIMAL, "environment": {"A": "x\x00y"}}, "environment.A"),
        ({**MINIMAL, "environment": ["A=\ud800"]}, "environment[0]"),
        ({**MINIMAL, "bootfile": "/jobs/a\ud800b"}, "bootfile"),
        ({**MINIMAL, "name": "a\u202eb"}, "name"),
        ({**MINIMAL, "conut": "x"}, "conut"),
        ({**MINIMAL, "type": "driver"}, "type"),
        ({**MINIMAL, "type": 3}, "type"),
        ({**MINIMAL, "runtime": "Python_9+Tensorflow_9"}, "runtime"),
        ({**MINIMAL, "bootfile": "train.py"}, "bootfile"),
        ({**MINIMAL, "bootfile": "/jobs/../etc/passwd"}, "bootfile"),
        ({**MINIMAL, "bootfile": "/jobs/"}, "bootfile"),
        ({**MINIMAL, "bootfile": "/jobs/a\x00b"}, "bootfile"),
        ({**MINIMAL, "workdir": "relative/dir"}, "workdir"),
        ({**MINIMAL, "workerdir": "/a/../b"}, "workerdir"),
        ({**MINIMAL, "checkpointDir": "../up"}, "checkpointDir"),
        ({**MINIMAL, "eventDir": 5}, "eventDir"),
        ({**MINIMAL, "modelDir": "x"}, "modelDir"),
        ({**MINIMAL, "logDir": "/l/.."}, "logDir"),
        ({**MINIMAL, "args": "unterminated 'quote"}, "args"),
        ({**MINIMAL, "args": {"a": 1}}, "args"),
        ({**MINIMAL, "args": ["ok", {"no": 1}]}, "args[1]"),
        ({**MINIMAL, "environment": "NOEQUALS"}, "environment"),
        ({**MINIMAL, "environment": "1BAD=x"}, "environment"),
        ({**MINIMAL, "environment": "A-B=x"}, "environment"),
        ({**MINIMAL, "environment": "TF_CONFIG={}"}, "environment"),
        ({**MINIMAL, "environment": "A=1,A=2"}, "environment"),
        ({**MINIMAL, "env": {"A": {"nested": 1}}}, "env.A"),
        ({**MINIMAL, "env": ["A=1", "B"]}, "env[1]"),
        ({**MINIMAL, "env": 12}, "env"),
        ({**MINIMAL, "checkpointDir": "/c", "environment": "CHECKPOINT_DIR=/d"}, "environment"),
        ({**MINIMAL, "replicas": "worker"}, "replicas"),
        ({**MINIMAL, "replicas": []}, "replicas"),
        ({**MINIMAL, "replicas": {"count": 1}}, "replicas.replicas"),
        ({**MINIMAL, "replicas": {"count": "x", "replicas": [{"type": "worker"}]}}, "replicas.count"),
        ({**MINIMAL, "replicas": ["worker"]}, "replicas[0]"),
        ({**MINIMAL, "replicas": [{"count": 1}]}, "replicas[0].type"),
        ({**MINIMAL, "replicas": [{"type": "worker"}, {"type": "bogus"}]}, "replicas[1].type"),
        ({**MINIMAL, "replicas": [{"type": "worker"}, {"type": "Worker"}]}, "replicas[1].type"),
        ({**MINIMAL, "replicas": [{"type": "worker", "count": -2}]}, "replicas[0].count"),
        ({**MINIMAL, "replicas": [{"type": "worker", "resource": "big"}]}, "replicas[0].resource"),
        ({**MINIMAL, "replicas": [{"type": "worker"}, {"type": "ps", "resource": {"cpu": "abc"}}]},
         "replicas[1].resource.cpu"),
        ({**MINIMAL, "replicas": [{"type": "worker", "resource": {"gpu": 1.5}}]}, "replicas[0].resource.gpu"),
        ({"name": "j", "runtime": "Python_3.6+Tensorflow_1.12", "bootfile": "/b.py",
          "replicas": [{"type": "worker", "resource": {"cpu": "1"}}]}, "replicas[0].resource.memory"),
        ({**MINIMAL, "type": "worker", "replicas": [{"type": "worker"}]}, "type"),
        ({**MINIMAL, "count": 0}, "replicas"),
        ({**MINIMAL, "type": "ps"}, "replicas"),
        ({**MINIMAL, "replicas": [{"type": "chief", "count": 2}]}, "replicas"),
        ({**MINIMAL, "count": 17}, "replicas"),
        ({**MINIMAL, "gpu": 3, "count": 3}, "replicas"),
        ({**MINIMAL, "activeDeadlineSeconds": 0}, "activeDeadlineSeconds"),
        ({**MINIMAL, "ttlSecondsAfterFinished": -1}, "ttlSecondsAfterFinished"),
        ({**MINIMAL, "backoffLimit": "many"}, "backoffLimit"),
        ({**MINIMAL, "backoffLimit": True}, "backoffLimit"),
        ({**MINIMAL, "cleanPodPolicy": "Sometimes"}, "cleanPodPolicy"),
        ({**MINIMAL, "successPolicy": "AnyWorker"}, "successPolicy"),
    ],
)
def test_bad_input_is_a_spec_error_at_the_right_path(body: dict[str, Any], path: str) -> None:
    assert path in errors_of(body)


def test_oversized_job_is_refused() -> None:
    assert "" in errors_of({**MINIMAL, "args": ["x" * 1000] * 250})


def test_unknown_runtime_lists_the_known_ones() -> None:
    message = errors_of({**MINIMAL, "runtime": "Python_9"})["runtime"]
    assert "Python_2.7+Tensorflow_1.2.1" in message and "Python_3.6+Tensorflow_1.12" in message


@pytest.mark.parametrize("body", [None, [], "job", 3, True])
def test_non_object_body_is_an_error_at_the_root(body: object) -> None:
    assert "" in errors_of(body)


@pytest.mark.parametrize("partition", ["Clever", "under_score", "-x", "x" * 64, ""])
def test_invalid_partition_is_an_error(partition: str) -> None:
    assert "partition" in errors_of(MINIMAL, partition=partition)


def test_path_root_confines_bootfile_and_dirs() -> None:
    assert create({**MINIMAL, "bootfile": "/clever/u/train.py"}, path_root="/clever").bootfile == "/clever/u/train.py"
    problems = errors_of({**MINIMAL, "bootfile": "/etc/train.py", "logDir": "/cleverx/l"}, path_root="/clever")
    assert {"bootfile", "logDir"} <= problems.keys()


def test_every_problem_is_reported_at_once() -> None:
    problems = errors_of({"name": "", "runtime": "nope", "cpu": "abc", "memory": "1Gi",
                          "bootfile": "relative.py", "environment": "TF_CONFIG=x"})
    assert {"name", "runtime", "cpu", "bootfile", "environment"} <= problems.keys()


# --- updates -----------------------------------------------------------------------------------


CURRENT = parse_create({**MINIMAL, "description": "first", "environment": "A=1",
                        "replicas": [{"type": "worker", "count": 2}, {"type": "ps", "count": 1}]},
                       partition="clever", profile=PROFILE)


def update(body: object) -> JobSpec:
    return parse_update(body, current=CURRENT, profile=PROFILE)


def test_patch_keeps_absent_fields() -> None:
    new = update({"description": "second"})
    assert new.description == "second"
    assert new.replicas == CURRENT.replicas and new.environment == CURRENT.environment


def test_patch_replaces_replicas_wholesale() -> None:
    new = update({"replicas": [{"type": "worker", "count": 4, "resource": {"cpu": "2", "memory": "2Gi"}}]})
    assert new.replicas == (Replica("worker", 4, Resources("2", "2Gi", 0)),)


def test_patch_replica_without_resources_keeps_those_of_its_type() -> None:
    new = update({"replicas": [{"type": "worker", "count": 3}]})
    assert new.replicas == (Replica("worker", 3, Resources("1", "1Gi", 0)),)


def test_patch_with_top_level_resource_sets_it_on_every_replica() -> None:
    new = update({"memory": "4Gi"})
    assert all(r.resources.memory == "4Gi" and r.resources.cpu == "1" for r in new.replicas)
    assert [r.count for r in new.replicas] == [2, 1]


def test_patch_with_top_level_count_keeps_the_type_of_a_single_group_job() -> None:
    single = parse_create({**MINIMAL, "type": "worker", "count": 2}, partition="clever", profile=PROFILE)
    new = parse_update({"count": "3"}, current=single, profile=PROFILE)
    assert new.replicas == (Replica("worker", 3, Resources("1", "1Gi", 0)),)


def test_patch_null_clears_optional_fields() -> None:
    with_policy = update({"ttlSecondsAfterFinished": 5})
    assert with_policy.run_policy.ttl_seconds_after_finished == 5
    cleared = parse_update({"ttlSecondsAfterFinished": None, "environment": None}, current=with_policy,
                           profile=PROFILE)
    assert cleared.run_policy.ttl_seconds_after_finished is None and cleared.environment == ()


def test_patch_rename_is_refused_but_same_name_is_fine() -> None:
    assert update({"name": CURRENT.name}) == CURRENT
    with pytest.raises(SpecError) as caught:
        update({"name": "other"})
    assert caught.value.fields[0].path == "name"


@pytest.mark.parametrize(("body", "path"), [
    ({"cpu": "abc"}, "cpu"),
    ({"runtime": None}, "runtime"),
    ({"replicas": [{"type": "ps", "cpu": "1", "memory": "1Gi"}]}, "replicas"),
    ({"replicas": [{"type": "chief"}, {"type": "worker"}]}, "replicas[0].resource.cpu"),
    ({"environment": "TF_CONFIG=1"}, "environment"),
    ([], ""),
])
def test_bad_patch_is_a_spec_error(body: object, path: str) -> None:
    with pytest.raises(SpecError) as caught:
        update(body)
    assert path in {f.path for f in caught.value.fields}


# --- robustness: any JSON is either a spec or a SpecError ------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 70) | st.floats(allow_nan=True) | st.text(max_size=10)
    | st.sampled_from(["1", "1Gi", "worker", "ps", "/a/b.py", "A=1,B=2", "Python_3.6+Tensorflow_1.12"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
KNOWN_KEYS = ["name", "runtime", "bootfile", "description", "workdir", "workerdir", "args", "environment",
              "enviroment", "env", "environmentList", "checkpointDir", "eventDir", "modelDir", "logDir", "cpu",
              "memory", "gpu", "type", "count", "conut", "activeDeadlineSeconds", "ttlSecondsAfterFinished",
              "cleanPodPolicy", "backoffLimit", "successPolicy", "spec", "metadata"]
replica_entries = st.fixed_dictionaries({}, optional={
    key: json_values for key in ("type", "count", "conut", "resource", "resources", "cpu", "memory", "gpu")})
bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=8),
    st.builds(lambda base, replicas: {**MINIMAL, **base, "replicas": replicas},
              st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=3),
              st.lists(replica_entries, max_size=3) | st.fixed_dictionaries(
                  {"replicas": st.lists(replica_entries, max_size=3)}, optional={"count": json_values})),
)


@settings(max_examples=300, deadline=None)
@given(body=bodies)
def test_any_json_body_is_a_spec_or_a_spec_error(body: object) -> None:
    for read in (lambda: create(body), lambda: parse_update(body, current=CURRENT, profile=PROFILE)):
        try:
            spec = read()
        except SpecError as e:
            assert e.fields and all(isinstance(f.path, str) and f.message for f in e.fields)
        else:
            assert isinstance(spec, JobSpec) and spec.replicas


# --- rendering ---------------------------------------------------------------------------------------


def test_render_job_has_every_legacy_field_in_canonical_form() -> None:
    flat = {k: v for k, v in SEED_FLAT_CREATE.items() if k != "enviroment"}
    spec = create({**flat, "ttlSecondsAfterFinished": 60, "environment": ["HOSTS=a,b"]})
    identity = JobIdentity("12345678", "admin", "c1", "clever", "2017-08-23T13:17:09Z", "2017-08-23T13:17:10Z")
    rendered = json.loads(json.dumps(render_job(spec, identity, JobStatus(phase="pending"))))
    assert rendered["metadata"] == {"uid": "admin", "id": "12345678", "name": "tfserving-0",
                                    "creationTime": "2017-08-23T13:17:09Z", "lastUpdateTime": "2017-08-23T13:17:10Z",
                                    "cluster": "c1", "partition": "clever"}
    legacy = rendered["spec"]
    assert {k: legacy[k] for k in ("description", "partition", "runtime", "workdir", "bootfile", "args",
                                   "checkpointDir", "eventDir", "modelDir", "logDir")} == {
        "description": "create a tfjobs", "partition": "clever", "runtime": "Python_2.7+Tensorflow_1.2.1",
        "workdir": "/clever/admin/xinhe/jobs", "bootfile": "/clever/admin/xinhe/file.py",
        "args": ["--test=10", "--config=1"], "checkpointDir": "/clever/admin", "eventDir": "/clever/admin/xinhe",
        "modelDir": "/clever/admin/xinhe/logs", "logDir": "/clever/admin/xinhe/logs/guideline"}
    assert legacy["workerdir"] == legacy["workdir"]
    assert legacy["environment"] == "HOSTS=a,b" and legacy["environmentList"] == ["HOSTS=a,b"]
    assert legacy["replicas"] == [{"type": "worker", "count": "1",
                                   "resource": {"cpu": "1", "memory": "2048Mi", "gpu": "1"}}]
    assert legacy["ttlSecondsAfterFinished"] == 60 and "backoffLimit" not in legacy
    assert rendered["status"]["phase"] == "pending" and rendered["status"]["replicas"] == []


def test_render_list() -> None:
    assert render_list([]) == {"metadata": {"total": 0}, "items": []}
    assert render_list([{"a": 1}, {"b": 2}]) == {"metadata": {"total": 2}, "items": [{"a": 1}, {"b": 2}]}


def test_environment_string_is_the_legacy_comma_form() -> None:
    assert environment_string((("A", "1"), ("B", "x=y"))) == "A=1,B=x=y"
    assert environment_string(()) == ""


def test_error_summary_counts_problems_before_the_first_one() -> None:
    """The message names the first problem whole (an unknown runtime lists every known one) and says how
    many there are before it, never after a list that could seem to continue it."""
    with pytest.raises(SpecError) as caught:
        create({**MINIMAL, "runtime": "Python_9"})
    assert caught.value.message == ("invalid job: runtime: unknown runtime 'Python_9' on cluster 'c1'; known runtimes: "
                                    "Python_2.7+Tensorflow_1.2.1, Python_3.6+Tensorflow_1.12")
    with pytest.raises(SpecError) as caught:
        create({**MINIMAL, "runtime": "Python_9", "bootfile": "relative.py", "cpu": "abc"})
    message = caught.value.message
    assert message.startswith("invalid job (3 problems, all in details.fields): runtime: unknown runtime 'Python_9'")
    assert message.endswith("known runtimes: Python_2.7+Tensorflow_1.2.1, Python_3.6+Tensorflow_1.12")
    assert [f.path for f in caught.value.fields] == ["runtime", "bootfile", "cpu"]
