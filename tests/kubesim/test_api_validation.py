"""kubesim validation: CRD schemas (422 with field paths), pruning warnings, strict field validation, names,
the training-operator and Volcano admission webhooks, and the shared seed/example bodies."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubesim import schema
from kubesim.store import TFJOBS

TF = "/apis/kubeflow.org/v1/namespaces/default/tfjobs"
VC = "/apis/batch.volcano.sh/v1alpha1/namespaces/default/jobs"


async def test_seed_000_body_creates_with_pruning_warning(api: Any) -> None:
    body = api.seed("000_2f6f5c919d1a6914.txt")
    reply = await api.post(TF, body)
    assert reply.status == 201, reply.body
    # The seed's top-level spec.backoffLimit is not in the v1 schema (it lives in runPolicy): pruned and warned.
    assert "backoffLimit" not in reply.body["spec"]
    assert reply.headers.getall("Warning") == ['299 - "unknown field \\"spec.backoffLimit\\""']
    got = await api.get(f"{TF}/{body['metadata']['name']}")
    assert got.body["spec"]["tfReplicaSpecs"].keys() == body["spec"]["tfReplicaSpecs"].keys()


async def test_seed_004_volcano_body_creates_with_webhook_defaults(api: Any) -> None:
    body = api.seed("004_5a677ef0bcf13e23.txt")
    assert body["kind"] == "Job" and schema.validate(body) == []
    reply = await api.post(VC, body)
    assert reply.status == 201, reply.body
    assert reply.body["spec"]["queue"] == "default" and reply.body["spec"]["schedulerName"] == "volcano"
    assert "status" not in reply.body


@pytest.mark.parametrize("filename", ["kubeflow-tfjob-simple.yaml", "kubeflow-tfjob-dist-mnist.yaml",
                                      "volcano-tf-dist-mnist-example.yaml"])
async def test_shared_examples_create_and_validate(api: Any, filename: str) -> None:
    body = api.example(filename)
    assert schema.validate(body) == [] and schema.pruned_fields(body) == []
    plural = "tfjobs" if body["kind"] == "TFJob" else "jobs"
    namespace = body["metadata"].get("namespace", "default")
    if namespace != "default":
        made = await api.post("/api/v1/namespaces", {"metadata": {"name": namespace}})
        assert made.status == 201
    reply = await api.post(f"/apis/{body['apiVersion']}/namespaces/{namespace}/{plural}", body)
    assert reply.status == 201, reply.body
    assert "Warning" not in reply.headers
    got = await api.get(f"/apis/{body['apiVersion']}/namespaces/{namespace}/{plural}/{body['metadata']['name']}")
    assert got.body["spec"]["plugins" if plural == "jobs" else "tfReplicaSpecs"]


async def test_schema_type_violation_is_422_with_field_path(api: Any) -> None:
    body = api.tfjob()
    body["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = "two"
    status = api.status(await api.post(TF, body), 422, "Invalid")
    cause = status["details"]["causes"][0]
    assert cause["field"] == "spec.tfReplicaSpecs.Worker.replicas"
    assert 'must be of type integer' in cause["message"]
    assert status["message"].startswith('TFJob.kubeflow.org "mnist" is invalid: spec.tfReplicaSpecs.Worker.replicas')
    assert status["details"]["kind"] == "TFJob" and status["details"]["group"] == "kubeflow.org"


async def test_schema_required_and_enum(api: Any) -> None:
    body = api.tfjob()
    del body["spec"]["tfReplicaSpecs"]
    status = api.status(await api.post(TF, body), 422, "Invalid")
    assert {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.tfReplicaSpecs"} in \
        status["details"]["causes"]
    vc = api.vcjob()
    vc["spec"]["policies"] = [{"event": "NotAnEvent", "action": "RestartJob"}]
    status = api.status(await api.post(VC, vc), 422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "spec.policies[0].event"
    assert status["details"]["causes"][0]["reason"] == "FieldValueNotSupported"


async def test_schema_minimum_and_pattern(api: Any) -> None:
    vc = api.vcjob()
    vc["spec"]["maxRetry"] = -1
    vc["spec"]["queue"] = "Not_A_Queue"
    status = api.status(await api.post(VC, vc), 422, "Invalid")
    fields = {c["field"] for c in status["details"]["causes"]}
    assert fields == {"spec.maxRetry", "spec.queue"}


def test_int_or_string_and_preserve_unknown_fields() -> None:
    body: dict[str, Any] = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "x"},
                            "spec": {"tfReplicaSpecs": {
        "Worker": {"template": {"spec": {"containers": [{"name": "tensorflow", "image": "i", "resources": {
            "limits": {"cpu": 2, "memory": "4Gi"}}, "ports": [{"containerPort": 2222}]}]}}}}}}
    assert schema.validate(body) == []
    bad = copy.deepcopy(body)
    bad["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = [1]
    assert schema.validate(bad)[0].startswith(
        "spec.tfReplicaSpecs.Worker.template.spec.containers[0].resources.limits.cpu: Invalid value")
    # Unknown fields deep inside are pruned; template metadata keeps only the schema's fields.
    odd = copy.deepcopy(body)
    odd["spec"]["tfReplicaSpecs"]["Worker"]["template"]["metadata"] = {"labels": {"a": "b"}, "uid": "nope"}
    odd["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["colour"] = "blue"
    assert sorted(schema.pruned_fields(odd)) == ["spec.tfReplicaSpecs.Worker.template.metadata.uid",
                                         "spec.tfReplicaSpecs.Worker.template.spec.containers[0].colour"]
    checked = schema.check(TFJOBS, odd)
    assert checked.object["spec"]["tfReplicaSpecs"]["Worker"]["template"]["metadata"] == {"labels": {"a": "b"}}


def test_crd_defaults_are_applied() -> None:
    body = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "x"},
            "spec": {"runPolicy": {}, "tfReplicaSpecs": {}}}
    checked = schema.check(TFJOBS, body)
    assert checked.object["spec"]["runPolicy"] == {"suspend": False}
    without = schema.check(TFJOBS, {"apiVersion": "kubeflow.org/v1", "kind": "TFJob",
                                           "metadata": {"name": "x"}, "spec": {"tfReplicaSpecs": {}}})
    assert "runPolicy" not in without.object["spec"]


async def test_unknown_fields_strict_and_ignore(api: Any) -> None:
    body = api.tfjob()
    body["spec"]["foo"] = 1
    strict = api.status(await api.post(f"{TF}?fieldValidation=Strict", body), 400, "BadRequest")
    assert strict["message"] == ('TFJob in version "v1" cannot be handled as a TFJob: strict decoding error: '
                                 'unknown field "spec.foo"')
    ignored = await api.post(f"{TF}?fieldValidation=Ignore", body)
    assert ignored.status == 201 and "Warning" not in ignored.headers and "foo" not in ignored.body["spec"]
    api.status(await api.post(f"{TF}?fieldValidation=Loose", body), 400, "BadRequest")


async def test_names_and_labels_validated(api: Any) -> None:
    body = api.tfjob("Bad_Name")
    status = api.status(await api.post(TF, body), 422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "metadata.name"
    body = api.tfjob()
    body["metadata"]["labels"] = {"ok": "not valid!"}
    status = api.status(await api.post(TF, body), 422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "metadata.labels"
    body = api.tfjob()
    body["metadata"]["labels"] = {"-bad-key": "v"}
    api.status(await api.post(TF, body), 422, "Invalid")


TF_WEBHOOK = 'admission webhook "validator.tfjob.training-operator.kubeflow.org" denied the request: '


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b["metadata"].update(name="1-starts-with-digit"),
     ('metadata.name: Invalid value: "1-starts-with-digit": a DNS-1035 label must consist of lower case '
      "alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric "
      "character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")),
    (lambda b: b["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0].update(name="main"),
     ("spec.tfReplicaSpecs[Worker].template.spec.containers: Required value: must have at least one container "
      "with name tensorflow")),
    (lambda b: b["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0].pop("image"),
     "spec.tfReplicaSpecs[Worker].template.spec.containers[0].image: Required value: must be required"),
    (lambda b: b["spec"]["tfReplicaSpecs"].update(
        Chief=copy.deepcopy(b["spec"]["tfReplicaSpecs"]["Worker"]),
        Master=copy.deepcopy(b["spec"]["tfReplicaSpecs"]["Worker"])),
     "spec.tfReplicaSpecs: Forbidden: must not have more than 1 Chief or Master role"),
])
async def test_tfjob_webhook_denials_are_403(api: Any, mutate: Any, message: str) -> None:
    body = api.tfjob()
    mutate(body)
    status = api.status(await api.post(TF, body), 403, "Forbidden")
    assert status["message"] == TF_WEBHOOK + message


async def test_tfjob_webhook_empty_containers_and_several_errors(api: Any) -> None:
    body = api.tfjob()
    body["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"] = []
    status = api.status(await api.post(TF, body), 403, "Forbidden")
    assert status["message"] == TF_WEBHOOK + (
        "[spec.tfReplicaSpecs[Worker].template.spec.containers: Required value: must be specified, "
        "spec.tfReplicaSpecs[Worker].template.spec.containers: Required value: must have at least one container "
        "with name tensorflow]")


async def test_tfjob_webhook_runs_on_update(api: Any) -> None:
    await api.create_tfjob()
    reply = await api.patch(f"{TF}/mnist", {"spec": {"tfReplicaSpecs": {"Worker": {"template": {"spec": {
        "containers": [{"name": "other", "image": "x"}]}}}}}})
    api.status(reply, 403, "Forbidden")


async def test_volcano_mutating_webhook_defaults(api: Any) -> None:
    body = api.vcjob()
    body["spec"]["tasks"][1].pop("name")
    reply = await api.post(VC, body)
    assert reply.status == 201, reply.body
    spec = reply.body["spec"]
    assert spec["queue"] == "default" and spec["schedulerName"] == "volcano" and spec["maxRetry"] == 3
    assert spec["minAvailable"] == 3
    assert [t["name"] for t in spec["tasks"]] == ["ps", "default1"]
    assert [t["minAvailable"] for t in spec["tasks"]] == [1, 2]
    assert spec["plugins"] == {"tensorflow": ["--port=2222"], "svc": []}


VC_WEBHOOK = 'admission webhook "validatejob.volcano.sh" denied the request: '


@pytest.mark.parametrize("mutate, fragment", [
    (lambda s: s["tasks"][1].update(name="ps"), "duplicated task name ps"),
    (lambda s: s.update(minAvailable=10), "job 'minAvailable' should not be greater than total replicas in tasks"),
    (lambda s: s["plugins"].update(teleport=[]), "unable to find job plugin: teleport"),
    (lambda s: s["tasks"][0].update(minAvailable=5), "'minAvailable' is greater than 'replicas' in task: ps"),
])
async def test_volcano_validating_webhook_denials_are_400(api: Any, mutate: Any, fragment: str) -> None:
    body = api.vcjob()
    mutate(body["spec"])
    status = api.status(await api.post(VC, body), 400, "BadRequest")
    assert status["message"].startswith(VC_WEBHOOK) and fragment in status["message"]


async def test_volcano_update_may_change_replicas_only(api: Any) -> None:
    created = (await api.post(VC, api.vcjob())).body
    ok = await api.patch(f"{VC}/vc", {"spec": {"minAvailable": 2}})
    assert ok.status == 200, ok.body
    created_again = (await api.get(f"{VC}/vc")).body
    created_again["spec"]["schedulerName"] = "other"
    denied = await api.put(f"{VC}/vc", created_again)
    assert VC_WEBHOOK in api.status(denied, 400, "BadRequest")["message"]
    assert created["metadata"]["name"] == "vc"


async def test_tf_operator_dialect_keeps_flat_run_policy() -> None:
    """The older tf-operator reads backoffLimit & co. from `spec` (seed 000); a tf-operator kubesim keeps them,
    a training-operator one prunes them as the v1.9.0 CRD does."""
    from kubesim import schema

    seed_like = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "t"},
                 "spec": {"backoffLimit": 6, "cleanPodPolicy": "All", "ttlSecondsAfterFinished": 10,
                          "activeDeadlineSeconds": 60,
                          "tfReplicaSpecs": {"Worker": {"replicas": 1, "template": {"spec": {"containers": [
                              {"name": "tensorflow", "image": "tf:1"}]}}}}}}
    assert schema.pruned_fields(seed_like, dialect="tf-operator") == []
    assert schema.validate(seed_like, dialect="tf-operator") == []
    assert sorted(schema.pruned_fields(seed_like)) == ["spec.activeDeadlineSeconds", "spec.backoffLimit",
                                                       "spec.cleanPodPolicy", "spec.ttlSecondsAfterFinished"]
    bad = {**seed_like, "spec": {**seed_like["spec"], "backoffLimit": "six"}}
    assert any(e.startswith("spec.backoffLimit") for e in schema.validate(bad, dialect="tf-operator"))
