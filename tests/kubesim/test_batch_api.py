"""batch/v1 Jobs through kubesim's HTTP API, without controllers: the Job registry's defaults and
generated selector, its validation, strategic merge patches (a built-in kind), and the orphaning default
of a Job delete."""

from __future__ import annotations

from typing import Any

import pytest

from kubesim.store import PODS
from tests.kubesim.jobsets import JOBS_PATH

NS = "default"
JOBS = JOBS_PATH.format(ns=NS)


def plain_job(name: str = "pi", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl:5.34"}]}},
        **spec}}


async def test_a_job_is_stored_with_the_registry_defaults_and_generated_selector(api: Any) -> None:
    reply = await api.post(JOBS, plain_job())
    assert reply.status == 201, reply.body
    job = reply.body
    uid = job["metadata"]["uid"]
    generated = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "pi",
                 "controller-uid": uid, "job-name": "pi"}
    assert job["metadata"]["labels"] == generated
    assert job["spec"] == {
        "template": {"metadata": {"labels": generated}, "spec": {
            "restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl:5.34"}]}},
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}},
        "completions": 1, "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed", "suspend": False,
        "podReplacementPolicy": "TerminatingOrFailed"}
    assert job["status"] == {}
    listed = (await api.get(JOBS + "?fieldSelector=metadata.name%3Dpi")).body
    assert listed["kind"] == "JobList" and [j["metadata"]["name"] for j in listed["items"]] == ["pi"]
    # a built-in kind takes strategic merge patches, which custom resources refuse
    patched = await api.patch(f"{JOBS}/pi", {"metadata": {"labels": {"team": "x"}}},
                              content_type="application/strategic-merge-patch+json")
    assert patched.status == 200 and patched.body["metadata"]["labels"]["team"] == "x"


@pytest.mark.parametrize(("spec", "field", "message"), [
    ({"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}},
     "spec.template.spec.restartPolicy", 'Unsupported value: "Always": supported values: "OnFailure", "Never"'),
    ({"completionMode": "Indexed", "parallelism": 2}, "spec.completions",
     "Required value: when completion mode is Indexed"),
    ({"backoffLimit": -1}, "spec.backoffLimit", "Invalid value: -1: must be greater than or equal to 0"),
])
async def test_invalid_jobs_are_refused(api: Any, spec: dict[str, Any], field: str, message: str) -> None:
    status = api.status(await api.post(JOBS, plain_job("bad", **spec)), 422, "Invalid")
    assert status["message"] == f'Job.batch "bad" is invalid: {field}: {message}'


async def test_deleting_a_job_without_a_policy_orphans_its_pods(api: Any) -> None:
    job = (await api.post(JOBS, plain_job("keep"))).body
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "keep", "uid": job["metadata"]["uid"],
             "controller": True, "blockOwnerDeletion": True}
    api.sim.store.create(PODS, {"metadata": {"name": "keep-abcde", "namespace": NS, "ownerReferences": [owner]},
                                "spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}})
    assert (await api.delete(f"{JOBS}/keep")).status == 200
    orphan = api.sim.store.get(PODS, NS, "keep-abcde")
    assert "ownerReferences" not in orphan["metadata"]


@pytest.mark.parametrize(("spec", "problem"), [
    ("x", "json: cannot unmarshal string into Go struct field Job.spec of type v1.JobSpec"),
    ({"completions": "3"}, "json: cannot unmarshal string into Go struct field JobSpec.spec.completions of type int32"),
    ({"template": {"spec": {"restartPolicy": "Never", "containers": "c"}}},
     ("json: cannot unmarshal string into Go struct field PodSpec.spec.template.spec.containers of type "
     "[]v1.Container")),
])
async def test_a_job_of_the_wrong_shape_cannot_be_decoded(api: Any, spec: Any, problem: str) -> None:
    body = plain_job("shape")
    body["spec"] = spec if not isinstance(spec, dict) else {**body["spec"], **spec}
    status = api.status(await api.post(JOBS, body), 400, "BadRequest")
    assert status["message"] == f'Job in version "v1" cannot be handled as a Job: {problem}'
    assert (await api.get(f"{JOBS}/shape")).status == 404
