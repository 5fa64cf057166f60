"""Status mapping: TFJob conditions (seeds 000-002), Volcano phases, and every pod situation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from translators.backends import failure_of, job_status
from translators.clever import render_job
from translators.spec import (
    ClusterProfile,
    JobIdentity,
    JobSpec,
    JobStatus,
    Replica,
    ReplicaStatus,
    Resources,
)
from translators.status import PodProblem

TFJOB_PROFILE = ClusterProfile(id="c1", backend="training-operator")
VOLCANO_PROFILE = ClusterProfile(id="c1", backend="volcano")

# Seeds 001 and 002: the status of a running TFJob, verbatim.
SEED_001_STATUS = {
    "conditions": [
        {"lastTransitionTime": "2019-07-24T07:16:13Z", "lastUpdateTime": "2019-07-24T07:16:13Z",
         "message": "TFJob tfjob-test is created.", "reason": "TFJobCreated", "status": "True", "type": "Created"},
        {"lastTransitionTime": "2019-07-24T07:16:18Z", "lastUpdateTime": "2019-07-24T07:16:18Z",
         "message": "TFJob tfjob-test is running.", "reason": "TFJobRunning", "status": "True", "type": "Running"},
    ],
    "replicaStatuses": {"PS": {"active": 1}, "Worker": {"active": 1}},
    "startTime": "2019-07-24T07:16:13Z",
}
SEED_002_STATUS = {
    "conditions": [
        {"lastTransitionTime": "2019-07-24T07:16:13.000Z", "lastUpdateTime": "2019-07-24T07:16:13.000Z",
         "message": "TFJob tfjob-test is created.", "reason": "TFJobCreated", "status": "True", "type": "Created"},
        {"lastTransitionTime": "2019-07-24T07:16:18.000Z", "lastUpdateTime": "2019-07-24T07:16:18.000Z",
         "message": "TFJob tfjob-test is running.", "reason": "TFJobRunning", "status": "True", "type": "Running"},
    ],
    "replicaStatuses": {"PS": {"active": 1}, "Worker": {"active": 1}},
    "startTime": "2019-07-24T07:16:13.000Z",
}


def tfjob(status: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob",
                            "metadata": {"name": "tfjob-test", "namespace": "kube-test", **metadata},
                            "spec": {"tfReplicaSpecs": {}}}
    if status is not None:
        body["status"] = status
    return body


def cond(kind: str, status: str = "True", *, reason: str | None = None, message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason or f"TFJob{kind}", "message": message,
            "lastTransitionTime": "2019-07-24T07:16:13Z"}


def pod(name: str, *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
        phase: str = "Running", state: dict[str, Any] | None = None, last: dict[str, Any] | None = None,
        restarts: int = 0, conditions: list[dict[str, Any]] | None = None, node: str | None = "node-1",
        reason: str | None = None, message: str | None = None, sidecar_restarts: int = 0) -> dict[str, Any]:
    replica_type, index = name.rsplit("-", 2)[-2:]
    tensorflow = {"name": "tensorflow", "restartCount": restarts, "state": state or {"running": {}}}
    if last:
        tensorflow["lastState"] = {"terminated": last}
    status: dict[str, Any] = {"phase": phase, "startTime": "2019-07-24T07:16:14Z",
                              "containerStatuses": [tensorflow]}
    if sidecar_restarts:
        status["containerStatuses"].append({"name": "sidecar", "restartCount": sidecar_restarts,
                                            "state": {"running": {}}})
    if conditions:
        status["conditions"] = conditions
    if reason:
        status["reason"], status["message"] = reason, message
    return {"metadata": {"name": name,
                         "labels": labels if labels is not None else {
                             "training.kubeflow.org/replica-type": replica_type,
                             "training.kubeflow.org/replica-index": index},
                         "annotations": annotations or {}},
            "spec": {"nodeName": node} if node else {},
            "status": status}


UNSCHEDULABLE = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                  "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]


# --- TFJob conditions ----------------------------------------------------------------------------


def test_seed_001_and_002_statuses_are_running() -> None:
    for status in (SEED_001_STATUS, SEED_002_STATUS):
        result = job_status(tfjob(status), [], profile=TFJOB_PROFILE)
        assert result.phase == "running"
        assert result.reason == "TFJobRunning" and result.message == "TFJob tfjob-test is running."
        assert result.start_time == status["startTime"]


def test_seed_000_empty_status_is_pending() -> None:
    assert job_status(tfjob({}), [], profile=TFJOB_PROFILE).phase == "pending"


@pytest.mark.parametrize(
    ("conditions", "phase"),
    [
        ([], "pending"),
        ([cond("Created")], "pending"),
        ([cond("Created"), cond("Running", "False")], "pending"),
        ([cond("Created"), cond("Running")], "running"),
        ([cond("Created"), cond("Running", "False"), cond("Restarting")], "restarting"),
        ([cond("Created"), cond("Restarting", "False"), cond("Running")], "running"),
        ([cond("Created"), cond("Running", "False"), cond("Succeeded")], "succeeded"),
        ([cond("Created"), cond("Running", "False"), cond("Failed")], "failed"),
        ([cond("Created"), cond("Failed"), cond("Running")], "failed"),
        ([cond("Created"), cond("Running", "False"), cond("Suspended")], "suspended"),
        ([cond("Created"), cond("Suspended", "False", reason="TFJobResumed"), cond("Running")], "running"),
        ([cond("Created"), cond("Unknown")], "pending"),
    ],
)
def test_tfjob_condition_table(conditions: list[dict[str, Any]], phase: str) -> None:
    assert job_status(tfjob({"conditions": conditions}), [], profile=TFJOB_PROFILE).phase == phase


def test_no_status_at_all_is_pending() -> None:
    assert job_status(tfjob(None), [], profile=TFJOB_PROFILE).phase == "pending"


def test_deletion_timestamp_is_terminating() -> None:
    obj = tfjob(SEED_001_STATUS, deletionTimestamp="2019-07-24T08:00:00Z")
    assert job_status(obj, [], profile=TFJOB_PROFILE).phase == "terminating"


def test_succeeded_job_has_times_and_the_operator_message() -> None:
    status = {"conditions": [cond("Created"), cond("Succeeded", message="TFJob kube-test/tfjob-test successfully completed.")],
              "startTime": "2019-07-24T07:16:13Z", "completionTime": "2019-07-24T07:20:13Z"}
    result = job_status(tfjob(status), [pod("tfjob-test-worker-0", phase="Succeeded",
                                            state={"terminated": {"exitCode": 0, "reason": "Completed"}})],
                        profile=TFJOB_PROFILE)
    assert (result.phase, result.reason) == ("succeeded", "TFJobSucceeded")
    assert result.message == "TFJob kube-test/tfjob-test successfully completed."
    assert (result.start_time, result.completion_time) == ("2019-07-24T07:16:13Z", "2019-07-24T07:20:13Z")


@pytest.mark.parametrize(("message", "reason"), [
    ("Job tfjob-test has failed because it has reached the specified backoff limit", "BackoffLimitExceeded"),
    ("Job tfjob-test has failed because it was active longer than specified deadline", "DeadlineExceeded"),
])
def test_failed_by_backoff_limit_or_deadline_says_so(message: str, reason: str) -> None:
    status = {"conditions": [cond("Created"), cond("Failed", message=message)]}
    crashing = pod("tfjob-test-worker-0", state={"waiting": {"reason": "CrashLoopBackOff"}},
                   last={"exitCode": 2, "reason": "Error"}, restarts=6)
    result = job_status(tfjob(status), [crashing], profile=TFJOB_PROFILE)
    assert (result.phase, result.reason) == ("failed", reason)
    assert message in (result.message or "") and "tfjob-test-worker-0" in (result.message or "")


def test_job_names_do_not_fake_a_deadline() -> None:
    status = {"conditions": [cond("Created"), cond("Failed", message="TFJob ns/deadline-7 has failed because "
                                                                     "1 Worker replica(s) failed.")]}
    assert job_status(tfjob(status), [], profile=TFJOB_PROFILE).reason == "TFJobFailed"
    by_reason = {"conditions": [cond("Created"), cond("Failed", reason="DeadlineExceeded", message="too long")]}
    assert job_status(tfjob(by_reason), [], profile=TFJOB_PROFILE).reason == "DeadlineExceeded"


def test_failed_replica_reports_the_exit_code() -> None:
    operator = "TFJob kube-test/tfjob-test has failed because 1 Worker replica(s) failed."
    status = {"conditions": [cond("Created"), cond("Failed", message=operator)]}
    failed = pod("tfjob-test-worker-0", phase="Failed",
                 state={"terminated": {"exitCode": 1, "reason": "Error", "message": "ValueError: bad input"}})
    result = job_status(tfjob(status), [failed], profile=TFJOB_PROFILE)
    assert result.reason == "Error"
    assert result.message is not None and operator in result.message and "exit" in result.message
    assert "ValueError: bad input" in result.message
    assert result.replicas[0].exit_code == 1 and result.replicas[0].status == "Failed"


# --- pod situations --------------------------------------------------------------------------------


RUNNING = {"conditions": [cond("Created"), cond("Running")]}
CREATED = {"conditions": [cond("Created")]}


@pytest.mark.parametrize(
    ("job", "pods", "phase", "reason", "in_message"),
    [
        (CREATED, [pod("j-worker-0", phase="Pending", state={"waiting": {"reason": "ContainerCreating"}},
                       node=None, conditions=UNSCHEDULABLE)],
         "pending", "Unschedulable", "Insufficient nvidia.com/gpu"),
        (CREATED, [pod("j-worker-0", phase="Pending",
                       state={"waiting": {"reason": "ErrImagePull", "message": "manifest unknown"}})],
         "pending", "ErrImagePull", "manifest unknown"),
        (CREATED, [pod("j-worker-0", phase="Pending",
                       state={"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}})],
         "pending", "ImagePullBackOff", "Back-off pulling image"),
        (RUNNING, [pod("j-worker-0", state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                       last={"exitCode": 3, "reason": "Error"}, restarts=4)],
         "running", "CrashLoopBackOff", "last exit code 3"),
        (RUNNING, [pod("j-worker-0", state={"waiting": {"reason": "CrashLoopBackOff"}},
                       last={"exitCode": 137, "reason": "OOMKilled"}, restarts=2)],
         "running", "OOMKilled", "memory limit"),
        ({"conditions": [cond("Created"), cond("Failed", message="1 Worker replica(s) failed.")]},
         [pod("j-worker-0", phase="Failed", state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}})],
         "failed", "OOMKilled", "exit code 137"),
        ({"conditions": [cond("Created"), cond("Running", "False"), cond("Restarting")]},
         [pod("j-worker-0", phase="Failed", reason="Evicted", message="The node was low on resource: memory.",
              state={"terminated": {"exitCode": 0, "reason": "Completed"}})],
         "restarting", "Evicted", "low on resource"),
        (RUNNING, [pod("j-worker-0", state={"running": {}}, last={"exitCode": 137, "reason": "OOMKilled"},
                       restarts=1)],
         "running", "OOMKilled", "restarted after exit code 137"),
        (RUNNING, [pod("j-ps-0"), pod("j-worker-0")], "running", "TFJobRunning", ""),
    ],
)
def test_pod_situations_give_an_honest_reason(job: dict[str, Any], pods: list[dict[str, Any]], phase: str,
                                              reason: str, in_message: str) -> None:
    result = job_status(tfjob(job), pods, profile=TFJOB_PROFILE)
    assert (result.phase, result.reason) == (phase, reason)
    assert in_message in (result.message or "")


def test_worst_pod_problem_wins() -> None:
    pods = [pod("j-worker-0", phase="Pending", conditions=UNSCHEDULABLE, node=None),
            pod("j-worker-1", state={"waiting": {"reason": "CrashLoopBackOff"}}, last={"exitCode": 1}),
            pod("j-ps-0", phase="Failed", state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}})]
    assert job_status(tfjob(RUNNING), pods, profile=TFJOB_PROFILE).reason == "OOMKilled"


# An evicted pod as the kubelet leaves it: the pod says Evicted, its container only the aftermath.
EVICTION = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 61440Ki."
UNKNOWN_CONTAINER = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
                                    "message": "The container could not be located when the pod was terminated"}}


@pytest.mark.parametrize(
    ("job", "profile", "labels", "phase"),
    [
        ({"conditions": [cond("Created"), cond("Running", "False"), cond("Restarting")]}, TFJOB_PROFILE,
         None, "restarting"),
        ({"conditions": [cond("Created"), cond("Failed", message="1 Worker replica(s) failed.")]}, TFJOB_PROFILE,
         None, "failed"),
        ({}, VOLCANO_PROFILE, {"volcano.sh/task-spec": "worker", "volcano.sh/task-index": "0"}, "restarting"),
    ],
)
def test_evicted_pod_reports_the_pods_reason_not_its_containers(job: dict[str, Any], profile: ClusterProfile,
                                                                 labels: dict[str, str] | None,
                                                                 phase: str) -> None:
    evicted = pod("j-worker-0", labels=labels, phase="Failed", reason="Evicted", message=EVICTION,
                  state=UNKNOWN_CONTAINER)
    obj = tfjob(job) if profile is TFJOB_PROFILE else vcjob("Restarting")
    result = job_status(obj, [evicted], profile=profile)
    assert (result.phase, result.reason) == (phase, "Evicted")
    assert result.message is not None and "j-worker-0: Evicted: The node was low on resource" in result.message
    assert "ContainerStatusUnknown" not in result.message
    (replica,) = result.replicas
    assert (replica.status, replica.reason, replica.message) == ("Failed", "Evicted", EVICTION)
    assert replica.exit_code == 137


def test_pod_reason_of_a_running_pod_does_not_hide_its_container() -> None:
    # Only a Failed pod's own reason overrides; a live pod's container state stays the story.
    live = pod("j-worker-0", phase="Running", reason="NodeLost", message="node went away",
               state={"waiting": {"reason": "CrashLoopBackOff"}}, last={"exitCode": 2, "reason": "Error"})
    result = job_status(tfjob(RUNNING), [live], profile=TFJOB_PROFILE)
    assert result.reason == "CrashLoopBackOff"
    assert (result.replicas[0].reason, result.replicas[0].exit_code) == ("CrashLoopBackOff", 2)


@pytest.mark.parametrize(
    ("profile", "labels", "annotations", "expected_type", "expected_index"),
    [
        (TFJOB_PROFILE, {"training.kubeflow.org/replica-type": "worker",
                         "training.kubeflow.org/replica-index": "3"}, {}, "worker", 3),
        (TFJOB_PROFILE, {"replica-type": "ps", "replica-index": "1"}, {}, "ps", 1),
        (TFJOB_PROFILE, {"training.kubeflow.org/replica-type": "master",
                         "training.kubeflow.org/replica-index": "0"}, {}, "chief", 0),
        (VOLCANO_PROFILE, {"volcano.sh/task-spec": "evaluator", "volcano.sh/task-index": "0"}, {},
         "evaluator", 0),
        (VOLCANO_PROFILE, {}, {"volcano.sh/task-spec": "worker", "volcano.sh/task-index": "2"}, "worker", 2),
        (TFJOB_PROFILE, {}, {}, "worker", 7),
        (VOLCANO_PROFILE, {}, {}, "worker", 7),
    ],
)
def test_replica_type_and_index_from_each_backends_keys(profile: ClusterProfile, labels: dict[str, str],
                                                        annotations: dict[str, str], expected_type: str,
                                                        expected_index: int) -> None:
    obj = tfjob(RUNNING) if profile is TFJOB_PROFILE else vcjob("Running")
    result = job_status(obj, [pod("j-worker-7", labels=labels, annotations=annotations)], profile=profile)
    assert (result.replicas[0].type, result.replicas[0].index) == (expected_type, expected_index)


def test_replicas_are_sorted_and_complete() -> None:
    pods = [pod("j-ps-0"), pod("j-worker-10", restarts=2, sidecar_restarts=1), pod("j-worker-2"),
            pod("j-chief-0", node="gpu-7")]
    replicas = job_status(tfjob(RUNNING), pods, profile=TFJOB_PROFILE).replicas
    assert [r.id for r in replicas] == ["j-chief-0", "j-worker-2", "j-worker-10", "j-ps-0"]
    assert replicas[0] == ReplicaStatus(id="j-chief-0", type="chief", index=0, status="Running", restart_count=0,
                                        start_time="2019-07-24T07:16:14Z", node="gpu-7")
    assert replicas[2].restart_count == 3


def test_unschedulable_replica_entry() -> None:
    replica = job_status(tfjob(CREATED), [pod("j-worker-0", phase="Pending", node=None, conditions=UNSCHEDULABLE,
                                              state={"waiting": {"reason": "ContainerCreating"}})],
                         profile=TFJOB_PROFILE).replicas[0]
    assert replica.status == "Pending" and replica.node is None
    assert replica.reason == "Unschedulable" and "Insufficient nvidia.com/gpu" in (replica.message or "")


def test_pod_without_any_status_is_unknown() -> None:
    replica = job_status(tfjob(CREATED), [{"metadata": {"name": "j-worker-0"}}], profile=TFJOB_PROFILE).replicas[0]
    assert (replica.status, replica.type, replica.index, replica.restart_count) == ("Unknown", "worker", 0, 0)


def test_missing_object() -> None:
    gone = job_status(None, [], profile=TFJOB_PROFILE)
    assert (gone.phase, gone.reason) == ("pending", "NotFound")
    lingering = job_status(None, [pod("j-worker-0")], profile=VOLCANO_PROFILE)
    assert lingering.phase == "terminating" and len(lingering.replicas) == 1


# --- Volcano ---------------------------------------------------------------------------------------


def vcjob(phase: str | None, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
                            "metadata": {"name": "j", "namespace": "ns"}, "spec": {"maxRetry": 3}}
    if phase is not None:
        body["status"] = {"state": {"phase": phase, "lastTransitionTime": "2019-06-26T06:30:00Z"}, **status}
    return body


@pytest.mark.parametrize(("volcano_phase", "phase"), [
    (None, "pending"), ("Pending", "pending"), ("Running", "running"), ("Completing", "running"),
    ("Restarting", "restarting"), ("Completed", "succeeded"), ("Failed", "failed"), ("Terminated", "failed"),
    ("Aborting", "suspended"), ("Aborted", "suspended"), ("Terminating", "terminating"),
])
def test_volcano_phase_table(volcano_phase: str | None, phase: str) -> None:
    assert job_status(vcjob(volcano_phase), [], profile=TFJOB_PROFILE).phase == phase


def test_volcano_times_from_conditions_and_state() -> None:
    conditions = [{"status": "Pending", "lastTransitionTime": "2019-06-26T06:24:50Z"},
                  {"status": "Running", "lastTransitionTime": "2019-06-26T06:25:00Z"},
                  {"status": "Completed", "lastTransitionTime": "2019-06-26T06:30:00Z"}]
    result = job_status(vcjob("Completed", conditions=conditions), [], profile=VOLCANO_PROFILE)
    assert (result.start_time, result.completion_time) == ("2019-06-26T06:25:00Z", "2019-06-26T06:30:00Z")
    running = job_status(vcjob("Running", conditions=conditions[:2]), [], profile=VOLCANO_PROFILE)
    assert running.completion_time is None


def test_volcano_retries_exhausted_is_backoff_limit() -> None:
    failed = pod("j-worker-0", labels={"volcano.sh/task-spec": "worker", "volcano.sh/task-index": "0"},
                 phase="Failed", state={"terminated": {"exitCode": 1, "reason": "Error"}})
    result = job_status(vcjob("Failed", retryCount=3), [failed], profile=VOLCANO_PROFILE)
    assert (result.phase, result.reason) == ("failed", "BackoffLimitExceeded")
    assert "restarted 3 times" in (result.message or "") and "exited with code 1" in (result.message or "")
    told = vcjob("Failed", retryCount=3)
    told["status"]["state"]["message"] = "job restarted 3 times, maxRetry 3"
    assert job_status(told, [], profile=VOLCANO_PROFILE).message == "job restarted 3 times, maxRetry 3"


def test_the_last_failure_tells_the_story_once_the_pods_are_gone() -> None:
    crashed = pod("j-worker-0", labels={"volcano.sh/task-spec": "worker", "volcano.sh/task-index": "0"},
                  phase="Failed", state={"terminated": {"exitCode": 3, "reason": "Error"}})
    healthy = pod("j-worker-0", labels={"volcano.sh/task-spec": "worker"})
    last = failure_of(crashed)
    assert last is not None and failure_of(healthy) is None
    told = vcjob("Failed", retryCount=3)
    told["status"]["state"]["message"] = "job restarted 3 times, maxRetry 3"
    result = job_status(told, [], profile=VOLCANO_PROFILE, last_failure=last)
    assert result.reason == "BackoffLimitExceeded"
    assert result.message == ("job restarted 3 times, maxRetry 3; "
                              "last failure: j-worker-0: container tensorflow exited with code 3 (Error)")
    restarting = job_status(vcjob("Restarting", retryCount=1), [], profile=VOLCANO_PROFILE, last_failure=last)
    assert (restarting.phase, restarting.reason) == ("restarting", "Error")
    # What the current pods show wins; a running job whose pods were restarted after a failure tells it (as
    # a restarted container's last state does); a finished job does not dwell on the past.
    evicted = pod("j-worker-0", labels={"volcano.sh/task-spec": "worker"}, phase="Failed", reason="Evicted",
                  message="The node was low on resource: memory.")
    now = job_status(told, [evicted], profile=VOLCANO_PROFILE, last_failure=last)
    assert "Evicted" in (now.message or "") and "last failure" not in (now.message or "")
    running = job_status(vcjob("Running"), [healthy], profile=VOLCANO_PROFILE, last_failure=last)
    assert (running.phase, running.reason) == ("running", "Error")
    assert running.message is not None and running.message.endswith(
        "last failure: j-worker-0: container tensorflow exited with code 3 (Error)")
    (replica,) = running.replicas  # the pod that replaced the failed one, under the same name
    assert (replica.status, replica.reason, replica.exit_code) == ("Running", "Error", 3)
    assert job_status(vcjob("Completed"), [], profile=VOLCANO_PROFILE, last_failure=last).message is None
    tf = job_status(tfjob({"conditions": [cond("Created"), cond("Failed", reason="BackoffLimitExceeded")]}), [],
                    profile=TFJOB_PROFILE, last_failure=last)
    assert tf.reason == "BackoffLimitExceeded" and "last failure: j-worker-0" in (tf.message or "")


def test_volcano_pods_killed_at_their_deadline_are_deadline_exceeded() -> None:
    killed = pod("j-worker-0", labels={"volcano.sh/task-spec": "worker"}, phase="Failed",
                 state={"terminated": {"exitCode": 137, "reason": "Error"}}, reason="DeadlineExceeded",
                 message="Pod was active on the node longer than the specified deadline")
    result = job_status(vcjob("Failed", retryCount=3), [], profile=VOLCANO_PROFILE, last_failure=failure_of(killed))
    assert result.reason == "DeadlineExceeded"
    assert "last failure: j-worker-0: DeadlineExceeded: Pod was active" in (result.message or "")


def test_volcano_pending_unschedulable_and_state_reason() -> None:
    waiting = pod("j-worker-0", labels={"volcano.sh/task-spec": "worker"}, phase="Pending", node=None,
                  conditions=UNSCHEDULABLE)
    assert job_status(vcjob("Pending"), [waiting], profile=VOLCANO_PROFILE).reason == "Unschedulable"
    aborted = job_status(vcjob("Aborted"), [], profile=VOLCANO_PROFILE)
    assert aborted.reason == "Aborted"


def test_volcano_deletion_is_terminating() -> None:
    obj = vcjob("Running")
    obj["metadata"]["deletionTimestamp"] = "2019-06-26T06:31:00Z"
    assert job_status(obj, [], profile=VOLCANO_PROFILE).phase == "terminating"


# --- JobSet ----------------------------------------------------------------------------------------

JOBSET_PROFILE = ClusterProfile(id="c1", backend="jobset")
JS = "j-1a2b3c4d"
FIRST_FAILED = f"(first failed job: {JS}-worker-0)"


def jobset(*conditions: dict[str, Any], restarts: int = 0, spec: dict[str, Any] | None = None,
           ready: int = 0, **metadata: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"restarts": restarts,
                              "replicatedJobsStatus": [{"name": "worker", "ready": ready, "succeeded": 0,
                                                        "failed": 0, "active": 1, "suspended": 0}]}
    if conditions:
        status["conditions"] = list(conditions)
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
            "metadata": {"name": JS, "namespace": "ns", "creationTimestamp": "2026-01-05T10:00:00Z",
                         **metadata},
            "spec": spec or {"replicatedJobs": [{"name": "worker", "replicas": 1}]}, "status": status}


def js_cond(kind: str, reason: str, message: str, status: str = "True") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-05T10:05:00Z", "observedGeneration": 1}


def js_pod(rjob: str = "worker", index: int = 0, *, attempt: int = 0, **kwargs: Any) -> dict[str, Any]:
    return pod(f"{JS}-{rjob}-0-{index}-x7k2p",
               labels={"jobset.sigs.k8s.io/replicatedjob-name": rjob,
                       "jobset.sigs.k8s.io/restart-attempt": str(attempt),
                       "batch.kubernetes.io/job-completion-index": str(index)},
               annotations={"batch.kubernetes.io/job-completion-index": str(index)}, **kwargs)


RESTARTABLE = {"replicatedJobs": [{"name": "worker", "replicas": 1}], "failurePolicy": {"maxRestarts": 3}}
FAILED_JOBS = js_cond("Failed", "FailedJobs", f"jobset failed due to one or more job failures {FIRST_FAILED}")
RESTARTS_EXHAUSTED = js_cond("Failed", "ReachedMaxRestarts",
                             f"jobset failed due to reaching max number of restarts {FIRST_FAILED}")
DEADLINE_RULE = {"name": "deadlineFailsJobSet", "action": "FailJobSet",
                 "onJobFailureReasons": ["DeadlineExceeded"]}
WITH_DEADLINE = {"replicatedJobs": [{"name": "worker", "replicas": 1,
                                     "template": {"spec": {"activeDeadlineSeconds": 2}}}],
                 "failurePolicy": {"maxRestarts": 0, "rules": [DEADLINE_RULE]}}
OOM_LAST = {"exitCode": 137, "reason": "OOMKilled"}
CRASHED_3 = {"terminated": {"exitCode": 3, "reason": "Error"}}


@pytest.mark.parametrize(
    ("obj", "pods", "last", "phase", "reason", "message_has", "replica"),
    [
        # The JobSet exists, its pods cannot start.
        (jobset(), [js_pod(phase="Pending", node=None, conditions=UNSCHEDULABLE,
                           state={"waiting": {"reason": "ContainerCreating"}})], None,
         "pending", "Unschedulable", "cannot be scheduled", ("Unschedulable", None)),
        (jobset(), [js_pod(phase="Pending", state={"waiting": {"reason": "ImagePullBackOff",
                                                               "message": "Back-off pulling image"}})], None,
         "pending", "ImagePullBackOff", "Back-off pulling image", ("ImagePullBackOff", None)),
        (jobset(), [], None, "pending", None, None, None),
        (jobset(ready=1), [js_pod(), js_pod("ps")], None, "running", None, None, (None, None)),
        # A pod failed and no failurePolicy (backoffLimit unset): the first failed Job fails the JobSet.
        (jobset(FAILED_JOBS), [js_pod(phase="Failed", state=CRASHED_3)], None,
         "failed", "Error", ("one or more job failures", "exited with code 3"), ("Error", 3)),
        (jobset(FAILED_JOBS), [js_pod(phase="Failed", state={"terminated": OOM_LAST})], None,
         "failed", "OOMKilled", "exceeding its memory limit", ("OOMKilled", 137)),
        (jobset(FAILED_JOBS), [js_pod(phase="Failed", reason="Evicted", state=UNKNOWN_CONTAINER,
                                      message="The node was low on resource: memory.")], None,
         "failed", "Evicted", "low on resource: memory", ("Evicted", 137)),
        # A restart under way (maxRestarts from backoffLimit): the failed pod, or the last failure, says why.
        (jobset(js_cond("RestartingJobSet", "DefaultFailurePolicy",
                        f"applying RestartJobSet failure policy action {FIRST_FAILED}"), restarts=1,
                spec=RESTARTABLE),
         [js_pod(phase="Failed", state={"terminated": OOM_LAST})], None,
         "restarting", "OOMKilled", ("applying RestartJobSet", "restart 1 (maxRestarts 3)", "memory limit"),
         ("OOMKilled", 137)),
        (jobset(js_cond("RestartingJobSet", "DefaultFailurePolicy",
                        "applying RestartJobSet failure policy action"), restarts=2, spec=RESTARTABLE),
         [], PodProblem(6, "OOMKilled", "w: killed (OOMKilled, exit code 137)"),
         "restarting", "OOMKilled", "last failure: w: killed", None),
        (jobset(js_cond("RestartingJobSet", "JobsReady", "all jobs are ready", status="False"), restarts=1,
                ready=1), [js_pod(attempt=1)], None, "running", None, None, (None, None)),
        # A controller without the RestartingJobSet condition: restarting until a pod of the new attempt runs.
        (jobset(restarts=1, spec=RESTARTABLE), [js_pod(attempt=0, phase="Failed", state=CRASHED_3)], None,
         "restarting", "Error", ("restart 1 (maxRestarts 3)", "exited with code 3"), ("Error", 3)),
        (jobset(restarts=1), [js_pod(attempt=1)], None, "running", None, None, (None, None)),
        # Out of restarts: BackoffLimitExceeded, as on the other backends, with the story that led there.
        (jobset(RESTARTS_EXHAUSTED, restarts=1, spec={"failurePolicy": {"maxRestarts": 1}}), [],
         PodProblem(6, "OOMKilled", f"{JS}-worker-0-0-x7k2p: container tensorflow was killed for "
                                    "exceeding its memory limit (OOMKilled, exit code 137)"),
         "failed", "BackoffLimitExceeded",
         ("reaching max number of restarts", "restarted 1 times (maxRestarts 1)", "last failure: ",
          "OOMKilled, exit code 137"), None),
        # The deadline rule ended it: DeadlineExceeded, not a restart.
        (jobset(js_cond("Failed", "FailJobSetFailurePolicyAction",
                        f"applying FailJobSet failure policy action {FIRST_FAILED}"), spec=WITH_DEADLINE),
         [], None,
         "failed", "DeadlineExceeded", ("longer than specified deadline", "activeDeadlineSeconds 2"), None),
        # Success, suspension, deletion.
        (jobset(js_cond("Completed", "AllJobsCompleted", "jobset completed successfully")),
         [js_pod(phase="Succeeded", state={"terminated": {"exitCode": 0, "reason": "Completed"}})], None,
         "succeeded", "AllJobsCompleted", "jobset completed successfully", ("Completed", 0)),
        (jobset(js_cond("Suspended", "SuspendedJobs", "jobset is suspended")), [], None,
         "suspended", "SuspendedJobs", "jobset is suspended", None),
        (jobset(js_cond("Suspended", "ResumeJobs", "jobset is resumed", status="False"), ready=1),
         [js_pod()], None, "running", None, None, (None, None)),
        (jobset(ready=1, deletionTimestamp="2026-01-05T10:06:00Z"), [js_pod()], None,
         "terminating", None, None, (None, None)),
        (None, [], None, "pending", "NotFound", "not on the cluster", None),
        (None, [js_pod()], None, "terminating", "Deleted", "being removed", (None, None)),
    ],
    ids=["unschedulable", "image-pull-backoff", "created", "running", "fail-exit-3", "oomkilled", "evicted",
         "restarting-oom", "restarting-pods-gone", "restarted-and-ready", "restarting-no-condition",
         "restarted-no-condition", "restarts-exhausted", "deadline", "succeeded", "suspended", "resumed",
         "deleting", "not-found", "gone-pods-remain"],
)
def test_jobset_status_truth_table(obj: dict[str, Any] | None, pods: list[dict[str, Any]],
                                   last: PodProblem | None, phase: str, reason: str | None,
                                   message_has: str | tuple[str, ...] | None,
                                   replica: tuple[str | None, int | None] | None) -> None:
    """What a legacy user sees per JobSet situation: phase, reason, the message's story, the replica's."""
    result = job_status(obj, pods, profile=JOBSET_PROFILE, last_failure=last)
    assert (result.phase, result.reason) == (phase, reason)
    fragments = (message_has,) if isinstance(message_has, str) else message_has or ()
    assert all(fragment in (result.message or "") for fragment in fragments), result.message
    if message_has is None:
        assert result.message is None
    if replica is not None:
        assert (result.replicas[0].reason, result.replicas[0].exit_code) == replica
        assert (result.replicas[0].type, result.replicas[0].index) == ("worker", 0)


def test_jobset_times_and_replicas() -> None:
    done = jobset(js_cond("Completed", "AllJobsCompleted", "jobset completed successfully"))
    pods = [js_pod("ps", 1), js_pod("worker", 2), js_pod("chief", 0), js_pod("worker", 0),
            {"metadata": {"name": "stray"}, "status": {"phase": "Running"}}]
    result = job_status(done, pods, profile=JOBSET_PROFILE)
    assert (result.start_time, result.completion_time) == ("2026-01-05T10:00:00Z", "2026-01-05T10:05:00Z")
    assert [(r.type, r.index) for r in result.replicas] == [
        ("chief", 0), ("worker", 0), ("worker", 2), ("ps", 1), ("unknown", 0)]
    assert job_status(jobset(), [], profile=JOBSET_PROFILE).completion_time is None


# --- rendering the status in the legacy object -------------------------------------------------


def test_rendered_status_has_the_legacy_replica_fields_and_duration() -> None:
    spec = JobSpec(name="j", runtime="r", bootfile="/b.py", replicas=(Replica("worker", 1, Resources("1", "1Gi")),))
    identity = JobIdentity("id1", "admin", "c1", "clever", "2019-07-24T07:16:00Z", "2019-07-24T07:16:00Z")
    status = job_status(tfjob({"conditions": [cond("Created"), cond("Succeeded")],
                               "startTime": "2019-07-24T07:16:13Z", "completionTime": "2019-07-24T07:20:13.5Z"}),
                        [pod("j-worker-0", phase="Succeeded",
                             state={"terminated": {"exitCode": 0, "reason": "Completed"}})],
                        profile=TFJOB_PROFILE)
    rendered = render_job(spec, identity, status)["status"]
    assert rendered["phase"] == "succeeded" and rendered["duration"] == 240.5
    assert rendered["replicas"] == [{"id": "j-worker-0", "restartCount": 0, "status": "Succeeded",
                                     "startTime": "2019-07-24T07:16:14Z", "type": "worker", "index": 0,
                                     "node": "node-1", "reason": "Completed", "message": None, "exitCode": 0}]


# --- robustness: objects edited by hand must not crash the status mapping ---------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
container_states = st.dictionaries(
    st.sampled_from(["waiting", "terminated", "running"]),
    json_values | st.fixed_dictionaries({}, optional={
        "reason": st.sampled_from(["OOMKilled", "CrashLoopBackOff", "ErrImagePull", "Error"]) | json_values,
        "message": json_values, "exitCode": json_values}),
    max_size=2)
pod_like = st.fixed_dictionaries({}, optional={
    "metadata": st.fixed_dictionaries({}, optional={"name": json_values, "labels": json_values,
                                                    "annotations": json_values}),
    "spec": json_values,
    "status": st.fixed_dictionaries({}, optional={
        "phase": json_values, "reason": json_values, "message": json_values, "startTime": json_values,
        "conditions": json_values,
        "containerStatuses": st.lists(st.fixed_dictionaries({}, optional={
            "name": st.just("tensorflow") | json_values, "restartCount": json_values,
            "state": json_values | container_states, "lastState": json_values | container_states}),
            max_size=2)}),
})
condition_like = st.fixed_dictionaries({}, optional={
    key: st.sampled_from(["True", "False", "Running", "Failed", "Created", "Succeeded", "Completed",
                          "RestartingJobSet", "ReachedMaxRestarts", "FailJobSetFailurePolicyAction"])
    | json_values
    for key in ("type", "status", "reason", "message", "lastTransitionTime")})
job_like = st.fixed_dictionaries(
    {"apiVersion": st.sampled_from(["kubeflow.org/v1", "batch.volcano.sh/v1alpha1",
                                    "jobset.x-k8s.io/v1alpha2"])},
    optional={
        "metadata": st.fixed_dictionaries({}, optional={"deletionTimestamp": json_values,
                                                        "creationTimestamp": json_values}) | json_values,
        "spec": st.fixed_dictionaries({}, optional={
            "maxRetry": json_values, "replicatedJobs": json_values,
            "failurePolicy": json_values | st.fixed_dictionaries({}, optional={
                "maxRestarts": json_values, "rules": json_values})}) | json_values,
        "status": json_values | st.fixed_dictionaries({}, optional={
            "conditions": st.lists(condition_like, max_size=3) | json_values,
            "state": json_values | st.fixed_dictionaries({}, optional={
                key: st.sampled_from(["Failed", "Completed", "Running"]) | json_values
                for key in ("phase", "reason", "message", "lastTransitionTime")}),
            "retryCount": json_values, "startTime": json_values, "completionTime": json_values,
            "restarts": json_values, "terminalState": json_values, "replicatedJobsStatus": json_values}),
    },
)


@settings(max_examples=200, deadline=None)
@given(obj=job_like, pods=st.lists(pod_like, max_size=3))
def test_status_mapping_never_crashes_on_odd_objects(obj: dict[str, Any], pods: list[dict[str, Any]]) -> None:
    result = job_status(obj, pods, profile=TFJOB_PROFILE)
    assert result.phase in {"pending", "running", "restarting", "succeeded", "failed", "suspended", "terminating"}
    assert len(result.replicas) == len(pods)


@pytest.mark.parametrize(("start", "end", "duration"), [
    ("2017-08-23T21:17:09.379754063+08:00", "2017-08-23T13:17:10.379754Z", 1),
    ("2019-07-24T07:16:13Z", None, None),
    ("2019-07-24T07:16:13", "2019-07-24T07:17:13Z", 60),  # no zone: read as UTC
    ("2019-07-24T07:16:13Z", "2019-07-24T07:16:12Z", None),
    ("yesterday", "2019-07-24T07:16:12Z", None),
])
def test_rendered_duration(start: str, end: str | None, duration: float | None) -> None:
    spec = JobSpec(name="j", runtime="r", bootfile="/b.py", replicas=(Replica("worker", 1, Resources("1", "1Gi")),))
    identity = JobIdentity("id1", "admin", "c1", "clever", start, start)
    status = JobStatus(phase="succeeded", start_time=start, completion_time=end)
    assert render_job(spec, identity, status)["status"]["duration"] == duration

