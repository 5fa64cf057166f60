"""JobSets through kubesim's HTTP API, without controllers: the JobSet webhooks' defaults and denials
(worded as kube-apiserver reports a webhook's Invalid answer) and the CRD's CEL rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubesim import jobset as jobset_api
from tests.kubesim.jobsets import JOBSETS_PATH, clean, minimal_jobset, tf_jobset

NS = "default"
JS = JOBSETS_PATH.format(ns=NS)
WEBHOOK = 'admission webhook "vjobset.kb.io" denied the request: '


def jobset_with(**changes: Any) -> dict[str, Any]:
    body = minimal_jobset("js")
    body["spec"].update(changes)
    return clean(body)


async def test_create_applies_the_webhook_and_crd_defaults(api: Any) -> None:
    reply = await api.post(JS, minimal_jobset("mini"))
    assert reply.status == 201, reply.body
    assert reply.body["spec"] == {
        "replicatedJobs": [{"name": "worker", "replicas": 1, "groupName": "default", "template": {
            "metadata": {}, "spec": {"completionMode": "Indexed", "template": {"metadata": {}, "spec": {
                "containers": [{"name": "main", "image": "busybox:1.36", "resources": {}}],
                "restartPolicy": "OnFailure"}}}}}],
        "successPolicy": {"operator": "All"},
        "startupPolicy": {"startupPolicyOrder": "AnyOrder"},
        "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
    }
    assert "status" not in reply.body
    assert (await api.get(f"{JS}/mini")).body["spec"] == reply.body["spec"]


def test_the_webhook_names_unnamed_failure_rules() -> None:
    # the CRD requires rule names, and the webhook runs before the schema is checked: a body without names
    # is admitted. Tested on the webhook alone, as every body these tests send passes the schema by itself.
    rules = [{"action": "FailJobSet"}, {"name": "keep", "action": "RestartJobSet"}, {"action": "RestartJobSet"}]
    body = minimal_jobset("js")
    body["spec"]["failurePolicy"] = {"rules": rules}
    defaulted = jobset_api.default_jobset(body)
    assert [r["name"] for r in defaulted["spec"]["failurePolicy"]["rules"]] == [
        "failurePolicyRule0", "keep", "failurePolicyRule2"]
    clean(defaulted)


async def test_defaults_keep_what_the_user_set(api: Any) -> None:
    body = tf_jobset("tf", failure_policy={"maxRestarts": 2, "rules": [
        {"name": "failOnPolicy", "action": "FailJobSet", "onJobFailureReasons": ["PodFailurePolicy"]},
        {"name": "restartOnDeadline", "action": "RestartJobSet", "onJobFailureReasons": ["DeadlineExceeded"]}]},
        success_targets=["chief"])
    body["spec"]["network"] = {"subdomain": "tf-hosts", "publishNotReadyAddresses": False}
    body["spec"]["replicatedJobs"][0]["template"]["spec"]["completionMode"] = "NonIndexed"
    body["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    reply = await api.post(JS, clean(body))
    assert reply.status == 201, reply.body
    spec = reply.body["spec"]
    assert spec["failurePolicy"] == {"maxRestarts": 2, "restartStrategy": "Recreate", "rules": [
        {"name": "failOnPolicy", "action": "FailJobSet", "onJobFailureReasons": ["PodFailurePolicy"]},
        {"name": "restartOnDeadline", "action": "RestartJobSet", "onJobFailureReasons": ["DeadlineExceeded"]}]}
    assert spec["successPolicy"] == {"operator": "All", "targetReplicatedJobs": ["chief"]}
    assert spec["network"] == {"subdomain": "tf-hosts", "enableDNSHostnames": True,
                               "publishNotReadyAddresses": False}
    chief, ps = spec["replicatedJobs"][0]["template"]["spec"], spec["replicatedJobs"][1]["template"]["spec"]
    assert (chief["completionMode"], chief["template"]["spec"]["restartPolicy"]) == ("NonIndexed", "Never")
    assert (ps["completionMode"], ps["template"]["spec"]["restartPolicy"]) == ("Indexed", "OnFailure")
    assert ps["template"]["metadata"]["labels"] == {"clever.dev/job": "tf", "clever.dev/replica-type": "ps"}


async def test_zero_replicas_come_back_as_one(api: Any) -> None:
    # the webhook's patch comes from a Go struct whose `replicas` is omitempty; the CRD default refills it
    body = minimal_jobset("zero")
    body["spec"]["replicatedJobs"][0]["replicas"] = 0
    reply = await api.post(JS, clean(body))
    assert reply.status == 201 and reply.body["spec"]["replicatedJobs"][0]["replicas"] == 1


def long_name(length: int) -> str:
    return "a" * length


@pytest.mark.parametrize(("body", "causes"), [
    pytest.param(
        jobset_with(replicatedJobs=[{"name": "worker", "template": {"spec": {"completions": 10, "template": {
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}}}}}]),
        None, id="pod-names-too-long"),
    pytest.param(jobset_with(network={"subdomain": "Bad_Subdomain"}),
                 [("spec.network.subdomain", 'Invalid value: "Bad_Subdomain": a lowercase RFC 1123 subdomain'),
                  ("spec.network.subdomain", 'Invalid value: "Bad_Subdomain": a DNS-1035 label')],
                 id="subdomain"),
    pytest.param(jobset_with(successPolicy={"operator": "All", "targetReplicatedJobs": ["chief"]}),
                 [("<nil>", ("Internal error: invalid replicatedJob name 'chief' does not appear in "
                            ".spec.ReplicatedJobs"))], id="success-target"),
    pytest.param(jobset_with(failurePolicy={"rules": [{"name": "bad-name", "action": "FailJobSet",
                                                       "onJobFailureReasons": ["Evicted"]}]}),
                 [("<nil>", "Internal error: invalid failure policy rule name 'bad-name'"),
                  ("<nil>", "Internal error: invalid job failure reason 'Evicted' in failure policy")],
                 id="failure-rule"),
    pytest.param(jobset_with(failurePolicy={"rules": [{"name": "one", "action": "RestartJob"}]}),
                 [("<nil>", ("Internal error: RestartJob and RestartJobAndIgnoreMaxRestarts failure policy actions "
                            "are not allowed when RestartJob feature gate is disabled"))], id="restart-job-gate"),
    pytest.param(jobset_with(failurePolicy={"restartStrategy": "InPlaceRestart"}),
                 [("<nil>", ("Internal error: InPlaceRestart restart strategy cannot be set when InPlaceRestart "
                            "feature gate is disabled"))], id="in-place-gate"),
    pytest.param(jobset_with(replicatedJobs=[{"name": "worker", "dependsOn": [{"name": "worker", "status": "Ready"}],
                                              "template": {"spec": {"template": {"spec": {"containers": [
                                                  {"name": "main", "image": "busybox:1.36"}]}}}}}]),
                 [("<nil>", "Internal error: DependsOn can't be set for the first ReplicatedJob")], id="depends-first"),
    pytest.param(jobset_with(replicatedJobs=[{"name": "worker", "groupName": "Group_1", "template": {"spec": {
        "template": {"spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}}}}}]),
                 [("spec.replicatedJobs[0].groupName", 'Invalid value: "Group_1": a DNS-1035 label')], id="group"),
])
async def test_the_validating_webhook_denies(api: Any, body: dict[str, Any],
                                             causes: list[tuple[str, str]] | None) -> None:
    if causes is None:  # a 50-character name leaves no room for "-worker-0-9-abcde"
        body = copy.deepcopy(body)
        body["metadata"]["name"] = long_name(50)
    reply = await api.post(JS, clean(body))
    status = api.status(reply, 422, "Invalid")
    name = body["metadata"]["name"]
    assert status["message"].startswith(WEBHOOK + f'JobSet.jobset.x-k8s.io "{name}" is invalid: ')
    assert status["details"]["name"] == name and status["details"]["group"] == "jobset.x-k8s.io"
    assert status["details"]["kind"] == "JobSet"
    got = [(c["field"], c["message"]) for c in status["details"]["causes"]]
    if causes is None:
        job = f"{name}-worker-0"
        assert status["message"] == (
            WEBHOOK + f'JobSet.jobset.x-k8s.io "{name}" is invalid: spec.replicatedJobs[0].name: Invalid value: '
            f'"{job}": JobSet name is too long, pod names generated for this JobSet will exceed 63 characters')
        assert status["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.replicatedJobs[0].name",
                                                "message": f'Invalid value: "{job}": JobSet name is too long, pod '
                                                           "names generated for this JobSet will exceed 63 "
                                                           "characters"}]
        return
    assert len(got) == len(causes), got
    for (field, message), (want_field, want_start) in zip(got, causes, strict=True):
        assert field == want_field and message.startswith(want_start), (field, message)
    assert (await api.get(f"{JS}/{name}")).status == 404


async def test_job_names_longer_than_63_are_denied(api: Any) -> None:
    body = minimal_jobset(long_name(58))
    status = api.status(await api.post(JS, body), 422, "Invalid")
    assert status["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec.replicatedJobs[0].name",
        "message": f'Invalid value: "{long_name(58)}-worker-0": JobSet name is too long, job names generated for '
                   "this JobSet will exceed 63 characters"}]


async def test_the_api_server_checks_the_crd_rules_before_the_webhook(api: Any) -> None:
    twice = minimal_jobset("dup")
    twice["spec"]["replicatedJobs"].append(copy.deepcopy(twice["spec"]["replicatedJobs"][0]))
    status = api.status(await api.post(JS, clean(twice)), 422, "Invalid")
    assert status["message"] == ('JobSet.jobset.x-k8s.io "dup" is invalid: spec.replicatedJobs[1]: Duplicate value: '
                                 'map[string]interface {}{"name":"worker"}')
    in_order = tf_jobset("order", {"ps": 1, "worker": 1})
    in_order["spec"]["startupPolicy"] = {"startupPolicyOrder": "InOrder"}
    in_order["spec"]["replicatedJobs"][1]["dependsOn"] = [{"name": "ps", "status": "Ready"}]
    status = api.status(await api.post(JS, clean(in_order)), 422, "Invalid")
    assert status["message"] == ('JobSet.jobset.x-k8s.io "order" is invalid: spec: Invalid value: "object": '
                                 "StartupPolicy and DependsOn APIs are mutually exclusive")


async def test_updates_keep_the_immutable_parts(api: Any) -> None:
    created = (await api.post(JS, tf_jobset("upd", {"worker": 2}))).body
    status = api.status(await api.patch(f"{JS}/upd", {"spec": {"successPolicy": {"operator": "Any"}}}), 422,
                        "Invalid")
    assert status["message"] == ('JobSet.jobset.x-k8s.io "upd" is invalid: spec.successPolicy: Invalid value: '
                                 '"object": Value is immutable')
    jobs = copy.deepcopy(created["spec"]["replicatedJobs"])
    jobs[0]["template"]["spec"]["template"]["metadata"]["labels"]["team"] = "vision"
    status = api.status(await api.patch(f"{JS}/upd", {"spec": {"replicatedJobs": jobs}}), 422, "Invalid")
    assert status["message"] == (WEBHOOK + 'JobSet.jobset.x-k8s.io "upd" is invalid: spec.replicatedJobs: Invalid '
                                           "value: []v1alpha2.ReplicatedJob{...}: field is immutable")
    # metadata, suspend and (while suspended) pod template labels may change, as for Kueue
    assert (await api.patch(f"{JS}/upd", {"metadata": {"labels": {"a": "b"}}, "spec": {"suspend": True}})).status == 200
    changed = await api.patch(f"{JS}/upd", {"spec": {"replicatedJobs": jobs}})
    assert changed.status == 200, changed.body
    assert changed.body["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["metadata"]["labels"]["team"] \
        == "vision"
    bad_status = await api.request("PUT", f"{JS}/upd/status", body={
        **changed.body, "status": {"restarts": "many"}})
    assert api.status(bad_status, 422, "Invalid")["details"]["causes"][0]["field"] == "status.restarts"


async def test_jobset_deletion_answers_a_success_status(api: Any) -> None:
    created = (await api.post(JS, minimal_jobset("gone"))).body
    reply = await api.delete(f"{JS}/gone")
    assert reply.status == 200 and reply.body["status"] == "Success"
    assert reply.body["details"] == {"name": "gone", "group": "jobset.x-k8s.io", "kind": "jobsets",
                                     "uid": created["metadata"]["uid"]}


async def test_a_mistyped_jobset_gets_the_schema_errors_not_a_crash(api: Any) -> None:
    # the webhook leaves what it cannot default alone; the schema validation after it reports the type
    body = minimal_jobset("typed")
    body["spec"]["replicatedJobs"][0]["template"] = "a string"
    body["spec"]["network"] = "n"
    status = api.status(await api.post(JS, body), 422, "Invalid")
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.replicatedJobs[0].template", "spec.network"]
