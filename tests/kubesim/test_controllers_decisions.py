"""Pure reconcile decisions of the simulated operators: defaults, TF_CONFIG, conditions, policies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubesim.controllers.clock import SimClock, go_duration
from kubesim.controllers.training import (
    default_replicas,
    is_distributed,
    master_role,
    normalize_replica_type,
    run_policy,
    set_condition,
    tf_config,
)
from kubesim.controllers.volcano import job_min_available, match_policy, plugins
from kubesim.controllers.volcano import tf_config as volcano_tf_config


def _replica(replicas: int | None = None, restart: str | None = None, port: int | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "tensorflow", "image": "img"}
    if port is not None:
        container["ports"] = [{"name": "tfjob-port", "containerPort": port}]
    spec: dict[str, Any] = {"template": {"spec": {"containers": [container]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    if restart is not None:
        spec["restartPolicy"] = restart
    return spec


@pytest.mark.parametrize(("key", "expected"), [
    ("ps", "PS"), ("Ps", "PS"), ("WORKER", "Worker"), ("chief", "Chief"), ("master", "Master"),
    ("evaluator", "Evaluator"), ("Custom", "Custom"),
])
def test_replica_keys_normalize_case_insensitively(key: str, expected: str) -> None:
    assert normalize_replica_type(key) == expected


def test_defaults_are_applied_in_memory_only() -> None:
    spec = {"tfReplicaSpecs": {"ps": _replica(), "worker": _replica(3, "OnFailure")}}
    original = json.dumps(spec, sort_keys=True)
    replicas = default_replicas(spec)
    assert json.dumps(spec, sort_keys=True) == original  # nothing written back into the submitted spec
    assert set(replicas) == {"PS", "Worker"}
    assert (replicas["PS"].replicas, replicas["PS"].restart_policy) == (1, "Never")
    assert (replicas["Worker"].replicas, replicas["Worker"].restart_policy) == (3, "OnFailure")
    ports = replicas["PS"].template["spec"]["containers"][0]["ports"]
    assert ports == [{"name": "tfjob-port", "containerPort": 2222}]


def test_tf_config_is_exactly_the_operators_json() -> None:
    spec = {"tfReplicaSpecs": {"Chief": _replica(1), "PS": _replica(1, port=3333), "Worker": _replica(2)}}
    replicas = default_replicas(spec)
    config = json.loads(tf_config("mnist", "team-a", replicas, "Worker", 1))
    assert config == {
        "cluster": {"chief": ["mnist-chief-0.team-a.svc:2222"], "ps": ["mnist-ps-0.team-a.svc:3333"],
                    "worker": ["mnist-worker-0.team-a.svc:2222", "mnist-worker-1.team-a.svc:2222"]},
        "task": {"type": "worker", "index": 1},
        "environment": "cloud",
    }


def test_distribution_and_master_role() -> None:
    single = default_replicas({"tfReplicaSpecs": {"Worker": _replica(1)}})
    assert not is_distributed(single)
    with_chief = default_replicas({"tfReplicaSpecs": {"Chief": _replica(), "Worker": _replica(2)}})
    assert is_distributed(with_chief)
    assert master_role(with_chief, "Chief", 0) and not master_role(with_chief, "Worker", 0)
    workers = default_replicas({"tfReplicaSpecs": {"PS": _replica(), "Worker": _replica(2)}})
    assert master_role(workers, "Worker", 0)
    assert not master_role(workers, "Worker", 1) and not master_role(workers, "PS", 0)


def test_run_policy_location_depends_on_dialect() -> None:
    spec = {"backoffLimit": 6, "cleanPodPolicy": "All",
            "runPolicy": {"backoffLimit": 2, "activeDeadlineSeconds": 30, "ttlSecondsAfterFinished": 60,
                          "suspend": True}}
    new = run_policy(spec, "training-operator")
    assert (new.backoff_limit, new.clean_pod_policy, new.active_deadline_seconds,
            new.ttl_seconds_after_finished, new.suspend) == (2, "None", 30.0, 60.0, True)
    old = run_policy(spec, "tf-operator")
    assert (old.backoff_limit, old.clean_pod_policy, old.suspend) == (6, "All", False)
    assert run_policy({}, "tf-operator").clean_pod_policy == "Running"


def test_condition_mechanics_match_the_operator() -> None:
    status: dict[str, Any] = {}
    assert set_condition(status, "Created", "True", "TFJobCreated", "created", "t0")
    assert set_condition(status, "Running", "True", "TFJobRunning", "running", "t1")
    assert not set_condition(status, "Running", "True", "TFJobRunning", "running again", "t2")
    assert set_condition(status, "Restarting", "True", "TFJobRestarting", "restarting", "t3")
    assert [c["type"] for c in status["conditions"]] == ["Created", "Restarting"]  # Restarting replaced Running
    assert set_condition(status, "Running", "True", "TFJobRunning", "running", "t4")
    assert [c["type"] for c in status["conditions"]] == ["Created", "Running"]
    assert set_condition(status, "Failed", "True", "TFJobFailed", "failed", "t5")
    running = next(c for c in status["conditions"] if c["type"] == "Running")
    assert running["status"] == "False"
    # Failed sticks: nothing changes afterwards
    assert not set_condition(status, "Succeeded", "True", "TFJobSucceeded", "done", "t6")
    assert [c["type"] for c in status["conditions"]] == ["Created", "Running", "Failed"]


def test_volcano_tf_config_hosts_and_no_environment() -> None:
    tasks = {"ps": 1, "worker": 2}
    config = json.loads(volcano_tf_config("job", tasks, ["--port=2223"], "worker", 1) or "")
    assert config == {"cluster": {"ps": ["job-ps-0.job:2223"], "worker": ["job-worker-0.job:2223",
                                                                         "job-worker-1.job:2223"]},
                      "task": {"type": "worker", "index": 1}}
    assert volcano_tf_config("job", {"worker": 1}, [], "worker", 0) is None
    renamed = json.loads(volcano_tf_config("j", {"server": 1, "trainer": 1, "eval": 1},
                                           ["--ps=server", "--worker=trainer"], "eval", 0) or "")
    assert renamed["cluster"] == {"ps": ["j-server-0.j:2222"], "worker": ["j-trainer-0.j:2222"]}
    assert renamed["task"] == {"type": "eval", "index": 0}


def test_volcano_defaults() -> None:
    spec = {"tasks": [{"replicas": 2}, {"replicas": 3, "minAvailable": 1}]}
    assert job_min_available(spec) == 3
    assert job_min_available({**spec, "minAvailable": 5}) == 5
    assert plugins({"plugins": {"tensorflow": ["--port=1"]}}) == {"tensorflow": ["--port=1"], "svc": []}
    assert plugins({"plugins": {"env": []}}) == {"env": []}


def test_volcano_policies_task_level_first_then_job_level_and_exit_codes() -> None:
    spec = {"policies": [{"event": "PodFailed", "action": "RestartJob"}, {"exitCode": 3, "action": "TerminateJob"}],
            "tasks": [{"name": "worker", "policies": [{"events": ["PodFailed"], "action": "AbortJob"}]},
                      {"name": "ps"}, {"name": "any", "policies": [{"event": "*", "action": "CompleteJob"}]}]}
    assert match_policy(spec, "worker", "PodFailed", 1) == "AbortJob"
    assert match_policy(spec, "ps", "PodFailed", 1) == "RestartJob"
    assert match_policy(spec, "ps", "PodEvicted", 3) == "TerminateJob"
    assert match_policy(spec, "ps", "TaskCompleted", None) is None
    assert match_policy(spec, "any", "TaskCompleted", None) == "CompleteJob"


def test_clock_scales_simulated_seconds() -> None:
    ticks = iter([100.0, 100.5])
    clock = SimClock(0.01, monotonic=lambda: next(ticks))
    assert clock.now() == pytest.approx(50.0)
    assert clock.real_delay(5) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        SimClock(0)
    assert go_duration(4.25) == "4.25s"
    assert go_duration(3723.5) == "1h2m3.5s"
    assert go_duration(61) == "1m1s"
