"""kubesim API: create/get/list/replace/patch/delete/status of custom resources and core objects over HTTPS."""

from __future__ import annotations

from typing import Any

import pytest

from kubesim.store import CONFIGMAPS, PODS, SERVICES

TF = "/apis/kubeflow.org/v1/namespaces/default/tfjobs"


async def test_create_get_list_and_metadata(api: Any) -> None:
    created = await api.create_tfjob()
    meta = created["metadata"]
    assert meta["namespace"] == "default" and meta["generation"] == 1
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["resourceVersion"].isdigit()
    got = await api.get(f"{TF}/mnist")
    assert got.status == 200 and got.body == created
    listed = await api.get(TF)
    assert listed.body["kind"] == "TFJobList" and [i["metadata"]["name"] for i in listed.body["items"]] == ["mnist"]
    assert int(listed.body["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])
    everywhere = await api.get("/apis/kubeflow.org/v1/tfjobs")
    assert [i["metadata"]["name"] for i in everywhere.body["items"]] == ["mnist"]
    other_ns = await api.get("/apis/kubeflow.org/v1/namespaces/team-a/tfjobs")
    assert other_ns.body["items"] == []


async def test_create_existing_is_already_exists(api: Any) -> None:
    await api.create_tfjob()
    status = api.status(await api.post(TF, api.tfjob()), 409, "AlreadyExists")
    assert status["message"] == 'tfjobs.kubeflow.org "mnist" already exists'
    assert status["details"] == {"name": "mnist", "group": "kubeflow.org", "kind": "tfjobs"}


async def test_create_into_missing_namespace_is_not_found(api: Any) -> None:
    reply = await api.post("/apis/kubeflow.org/v1/namespaces/nowhere/tfjobs", api.tfjob())
    status = api.status(reply, 404, "NotFound")
    assert status["message"] == 'namespaces "nowhere" not found'


async def test_get_missing_is_not_found(api: Any) -> None:
    status = api.status(await api.get(f"{TF}/ghost"), 404, "NotFound")
    assert status["message"] == 'tfjobs.kubeflow.org "ghost" not found'
    assert status["details"]["kind"] == "tfjobs" and status["details"]["group"] == "kubeflow.org"


async def test_namespace_mismatch_is_bad_request(api: Any) -> None:
    body = api.tfjob()
    body["metadata"]["namespace"] = "team-a"
    api.status(await api.post(TF, body), 400, "BadRequest")


async def test_replace_requires_resource_version(api: Any) -> None:
    created = await api.create_tfjob()
    body = dict(created)
    body["metadata"] = {k: v for k, v in created["metadata"].items() if k != "resourceVersion"}
    status = api.status(await api.put(f"{TF}/mnist", body), 422, "Invalid")
    assert status["message"] == ('TFJob.kubeflow.org "mnist" is invalid: metadata.resourceVersion: Invalid value: '
                                 "0x0: must be specified for an update")
    assert status["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "metadata.resourceVersion",
                                            "message": "Invalid value: 0x0: must be specified for an update"}]


async def test_replace_with_stale_version_is_conflict_and_fresh_bumps_generation(api: Any) -> None:
    created = await api.create_tfjob()
    created["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = 3
    ok = await api.put(f"{TF}/mnist", created)
    assert ok.status == 200 and ok.body["metadata"]["generation"] == 2
    assert int(ok.body["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    status = api.status(await api.put(f"{TF}/mnist", created), 409, "Conflict")
    assert status["message"] == (
        'Operation cannot be fulfilled on tfjobs.kubeflow.org "mnist": the object has been modified; please apply '
        "your changes to the latest version and try again")


async def test_label_only_change_keeps_generation(api: Any) -> None:
    await api.create_tfjob()
    patched = await api.patch(f"{TF}/mnist", {"metadata": {"labels": {"extra": "yes"}}})
    assert patched.status == 200 and patched.body["metadata"]["generation"] == 1
    assert patched.body["metadata"]["labels"] == {"app": "demo", "extra": "yes"}


async def test_replace_name_mismatch_is_bad_request(api: Any) -> None:
    created = await api.create_tfjob()
    api.status(await api.put(f"{TF}/other", created), 400, "BadRequest")


async def test_merge_patch_rfc7386(api: Any) -> None:
    await api.create_tfjob(api.tfjob(runPolicy={"cleanPodPolicy": "All", "backoffLimit": 2}))
    patch = {"spec": {"runPolicy": {"cleanPodPolicy": None, "suspend": True},
                      "tfReplicaSpecs": {"Worker": {"replicas": 4}}}}
    reply = await api.patch(f"{TF}/mnist", patch)
    assert reply.status == 200, reply.body
    spec = reply.body["spec"]
    assert spec["runPolicy"] == {"backoffLimit": 2, "suspend": True}
    assert spec["tfReplicaSpecs"]["Worker"]["replicas"] == 4
    assert spec["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["name"] == "tensorflow"


async def test_merge_patch_with_stale_resource_version_conflicts(api: Any) -> None:
    await api.create_tfjob()
    reply = await api.patch(f"{TF}/mnist", {"metadata": {"resourceVersion": "1"}, "spec": {"successPolicy": ""}})
    api.status(reply, 409, "Conflict")


async def test_json_patch_rfc6902(api: Any) -> None:
    await api.create_tfjob()
    ops = [
        {"op": "test", "path": "/spec/tfReplicaSpecs/Worker/replicas", "value": 1},
        {"op": "replace", "path": "/spec/tfReplicaSpecs/Worker/replicas", "value": 2},
        {"op": "add", "path": "/metadata/labels/team", "value": "a"},
        {"op": "add", "path": "/spec/tfReplicaSpecs/Worker/template/spec/containers/0/args", "value": ["--x"]},
        {"op": "copy", "from": "/metadata/labels/team", "path": "/metadata/labels/copied"},
        {"op": "remove", "path": "/metadata/labels/app"},
    ]
    reply = await api.patch(f"{TF}/mnist", ops, content_type="application/json-patch+json")
    assert reply.status == 200, reply.body
    assert reply.body["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2
    assert reply.body["metadata"]["labels"] == {"team": "a", "copied": "a"}
    assert reply.body["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["args"] == ["--x"]


async def test_json_patch_failed_test_op_is_invalid(api: Any) -> None:
    await api.create_tfjob()
    ops = [{"op": "test", "path": "/spec/tfReplicaSpecs/Worker/replicas", "value": 9}]
    api.status(await api.patch(f"{TF}/mnist", ops, content_type="application/json-patch+json"), 422, "Invalid")


async def test_json_patch_with_an_object_body_is_bad_request(api: Any) -> None:
    # What kubernetes_asyncio sends when patch_namespaced_custom_object gets a dict without _content_type.
    await api.create_tfjob()
    reply = await api.patch(f"{TF}/mnist", {"spec": {"successPolicy": ""}}, content_type="application/json-patch+json")
    status = api.status(reply, 400, "BadRequest")
    assert status["message"] == "json: cannot unmarshal object into Go value of type jsonpatch.Patch"


async def test_strategic_merge_patch_is_unsupported_for_custom_resources(api: Any) -> None:
    await api.create_tfjob()
    reply = await api.patch(f"{TF}/mnist", {"metadata": {"labels": {"a": "b"}}},
                            content_type="application/strategic-merge-patch+json")
    status = api.status(reply, 415, "UnsupportedMediaType")
    assert status["message"] == ("the body of the request was in an unknown format - accepted media types include: "
                                 "application/json-patch+json, application/merge-patch+json, "
                                 "application/apply-patch+yaml")


async def test_apply_patch_creates_then_merges(api: Any) -> None:
    import yaml
    body = yaml.safe_dump(api.tfjob("applied")).encode()
    first = await api.request("PATCH", f"{TF}/applied?fieldManager=tests", raw=body,
                              content_type="application/apply-patch+yaml")
    assert first.status == 201, first.body
    missing_manager = await api.request("PATCH", f"{TF}/applied", raw=body,
                                        content_type="application/apply-patch+yaml")
    api.status(missing_manager, 400, "BadRequest")


async def test_patch_missing_object_is_not_found(api: Any) -> None:
    api.status(await api.patch(f"{TF}/ghost", {"spec": {}}), 404, "NotFound")


async def test_status_subresource_separation(api: Any) -> None:
    body = api.tfjob()
    body["status"] = {"conditions": [{"type": "Succeeded", "status": "True"}]}
    created = await api.create_tfjob(body)
    assert "status" not in created  # main-resource writes ignore .status
    status = {"conditions": [{"type": "Running", "status": "True", "reason": "TFJobRunning"}],
              "replicaStatuses": {"Worker": {"active": 1}}}
    put = await api.put(f"{TF}/mnist/status", created | {"status": status})
    assert put.status == 200 and put.body["status"] == status
    assert put.body["metadata"]["generation"] == 1
    # A status write ignores spec changes.
    changed = put.body | {"spec": {"tfReplicaSpecs": {}}}
    again = await api.patch(f"{TF}/mnist/status", {"spec": {"successPolicy": "AllWorkers"},
                                                    "status": {"replicaStatuses": {"Worker": {"active": 2}}}})
    assert again.status == 200 and "successPolicy" not in again.body["spec"]
    assert again.body["status"]["replicaStatuses"]["Worker"]["active"] == 2
    assert changed["spec"] == {"tfReplicaSpecs": {}}
    got = await api.get(f"{TF}/mnist/status")
    assert got.body["status"]["conditions"][0]["type"] == "Running"
    # A main-resource write keeps the stored status.
    main = await api.patch(f"{TF}/mnist", {"status": {"conditions": []}, "metadata": {"labels": {"x": "y"}}})
    assert main.body["status"]["conditions"][0]["type"] == "Running"


async def test_delete_returns_success_status_and_collects_dependents(api: Any, sim: Any) -> None:
    created = await api.create_tfjob()
    owner = [{"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "name": "mnist", "uid": created["metadata"]["uid"],
              "controller": True, "blockOwnerDeletion": True}]
    sim.store.create(PODS, {"metadata": {"name": "mnist-worker-0", "namespace": "default", "ownerReferences": owner},
                            "spec": {"containers": [{"name": "tensorflow", "image": "x"}]}})
    sim.store.create(SERVICES, {"metadata": {"name": "mnist-worker-0", "namespace": "default",
                                             "ownerReferences": owner}, "spec": {"clusterIP": "None"}})
    sim.store.create(CONFIGMAPS, {"metadata": {"name": "unrelated", "namespace": "default"}, "data": {}})
    reply = await api.delete(f"{TF}/mnist")
    assert reply.status == 200
    assert reply.body["status"] == "Success" and reply.body["details"]["name"] == "mnist"
    assert reply.body["details"]["uid"] == created["metadata"]["uid"]
    assert (await api.get("/api/v1/namespaces/default/pods")).body["items"] == []
    assert (await api.get("/api/v1/namespaces/default/services")).body["items"] == []
    assert len((await api.get("/api/v1/namespaces/default/configmaps")).body["items"]) == 1
    api.status(await api.delete(f"{TF}/mnist"), 404, "NotFound")


async def test_delete_orphan_keeps_dependents_without_owner_reference(api: Any, sim: Any) -> None:
    created = await api.create_tfjob()
    owner = [{"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "name": "mnist", "uid": created["metadata"]["uid"]}]
    sim.store.create(PODS, {"metadata": {"name": "p", "namespace": "default", "ownerReferences": owner},
                            "spec": {"containers": [{"name": "c", "image": "x"}]}})
    reply = await api.delete(f"{TF}/mnist", {"kind": "DeleteOptions", "apiVersion": "v1",
                                             "propagationPolicy": "Orphan"})
    assert reply.status == 200
    pod = (await api.get("/api/v1/namespaces/default/pods/p")).body
    assert "ownerReferences" not in pod["metadata"]


async def test_delete_foreground_waits_for_dependents(api: Any, sim: Any) -> None:
    created = await api.create_tfjob()
    owner = [{"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "name": "mnist", "uid": created["metadata"]["uid"]}]
    # The pod has its own finalizer, so it lingers (like a pod still terminating on its node).
    sim.store.create(PODS, {"metadata": {"name": "p", "namespace": "default", "ownerReferences": owner,
                                         "finalizers": ["kubesim.test/hold"]},
                            "spec": {"containers": [{"name": "c", "image": "x"}]}})
    reply = await api.delete(f"{TF}/mnist?propagationPolicy=Foreground")
    assert reply.status == 200
    owner_now = (await api.get(f"{TF}/mnist")).body
    assert owner_now["metadata"]["deletionTimestamp"] and "foregroundDeletion" in owner_now["metadata"]["finalizers"]
    pod = (await api.get("/api/v1/namespaces/default/pods/p")).body
    assert pod["metadata"]["deletionTimestamp"]
    released = await api.patch("/api/v1/namespaces/default/pods/p", {"metadata": {"finalizers": None}})
    assert released.status == 200
    api.status(await api.get("/api/v1/namespaces/default/pods/p"), 404, "NotFound")
    api.status(await api.get(f"{TF}/mnist"), 404, "NotFound")


async def test_delete_with_bad_propagation_policy_is_bad_request(api: Any) -> None:
    await api.create_tfjob()
    api.status(await api.delete(f"{TF}/mnist?propagationPolicy=Sideways"), 400, "BadRequest")


async def test_delete_precondition_mismatch_conflicts(api: Any) -> None:
    await api.create_tfjob()
    reply = await api.delete(f"{TF}/mnist", {"preconditions": {"resourceVersion": "1"}})
    api.status(reply, 409, "Conflict")


async def test_namespaces_lifecycle(api: Any) -> None:
    created = await api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": "fresh"}})
    assert created.status == 201 and created.body["status"]["phase"] == "Active"
    names = [n["metadata"]["name"] for n in (await api.get("/api/v1/namespaces")).body["items"]]
    assert {"default", "team-a", "fresh"} <= set(names)
    await api.create_tfjob(ns="fresh")
    deleted = await api.delete("/api/v1/namespaces/fresh")
    assert deleted.status == 200
    api.status(await api.get("/api/v1/namespaces/fresh"), 404, "NotFound")
    api.status(await api.get("/apis/kubeflow.org/v1/namespaces/fresh/tfjobs/mnist"), 404, "NotFound")
    bad = await api.post("/api/v1/namespaces", {"metadata": {"name": "Not_Valid"}})
    api.status(bad, 422, "Invalid")


async def test_core_pods_services_configmaps_events(api: Any, sim: Any) -> None:
    sim.store.create(PODS, {"metadata": {"name": "p1", "namespace": "default", "labels": {"role": "w"}},
                            "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"phase": "Running"}})
    sim.store.create(PODS, {"metadata": {"name": "p2", "namespace": "team-a", "labels": {"role": "ps"}},
                            "spec": {"containers": [{"name": "c", "image": "x"}]}})
    sim.store.create(SERVICES, {"metadata": {"name": "s", "namespace": "default"}, "spec": {"clusterIP": "None"}})
    sim.store.create(CONFIGMAPS, {"metadata": {"name": "cm", "namespace": "default"}, "data": {"a": "b"}})
    all_pods = await api.get("/api/v1/pods")
    assert [p["metadata"]["name"] for p in all_pods.body["items"]] == ["p1", "p2"]
    assert all_pods.body["kind"] == "PodList"
    running = await api.get("/api/v1/pods?fieldSelector=status.phase%3DRunning")
    assert [p["metadata"]["name"] for p in running.body["items"]] == ["p1"]
    assert (await api.get("/api/v1/namespaces/default/services/s")).body["spec"]["clusterIP"] == "None"
    assert (await api.get("/api/v1/namespaces/default/configmaps/cm")).body["data"] == {"a": "b"}
    assert (await api.delete("/api/v1/namespaces/default/configmaps/cm")).status == 200
    deleted_pod = await api.delete("/api/v1/namespaces/default/pods/p1")
    assert deleted_pod.status == 200 and deleted_pod.body["kind"] == "Pod"
    job = await api.create_tfjob()
    sim.store.record_event(job, reason="SuccessfulCreatePod", message="Created pod: mnist-worker-0")
    sim.store.record_event({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "mnist", "namespace": "default"}},
                           reason="Scheduled", message="pod event")
    events = await api.get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dmnist,"
                           "involvedObject.kind%3DTFJob")
    assert [e["reason"] for e in events.body["items"]] == ["SuccessfulCreatePod"]
    assert events.body["items"][0]["involvedObject"]["uid"] == job["metadata"]["uid"]


async def test_selectors_and_bad_selectors(api: Any) -> None:
    for name, labels in (("a", {"tier": "x", "gpu": "yes"}), ("b", {"tier": "y"}), ("c", {"tier": "z"})):
        body = api.tfjob(name)
        body["metadata"]["labels"] = labels
        await api.create_tfjob(body)

    async def names(selector: str) -> list[str]:
        reply = await api.get(f"{TF}?labelSelector={selector}")
        assert reply.status == 200, reply.body
        return [i["metadata"]["name"] for i in reply.body["items"]]

    assert await names("tier%3Dx") == ["a"]
    assert await names("tier%3D%3Dy") == ["b"]
    assert await names("tier!%3Dx") == ["b", "c"]
    assert await names("tier%20in%20(x,z)") == ["a", "c"]
    assert await names("tier%20notin%20(x,z)") == ["b"]
    assert await names("gpu") == ["a"]
    assert await names("!gpu") == ["b", "c"]
    assert await names("tier%20in%20(x,y),!gpu") == ["b"]
    by_name = await api.get(f"{TF}?fieldSelector=metadata.name%3Db")
    assert [i["metadata"]["name"] for i in by_name.body["items"]] == ["b"]
    api.status(await api.get(f"{TF}?labelSelector=tier%20in%20x"), 400, "BadRequest")
    status = api.status(await api.get(f"{TF}?fieldSelector=spec.foo%3D1"), 400, "BadRequest")
    assert status["message"] == "field label not supported: spec.foo"


async def test_paging_with_continue_and_expired_token(api: Any, sim: Any) -> None:
    for index in range(5):
        await api.create_tfjob(api.tfjob(f"job-{index}"))
    first = await api.get(f"{TF}?limit=2")
    assert [i["metadata"]["name"] for i in first.body["items"]] == ["job-0", "job-1"]
    token = first.body["metadata"]["continue"]
    assert first.body["metadata"]["remainingItemCount"] == 3
    second = await api.get(f"{TF}?limit=2&continue={token}")
    assert [i["metadata"]["name"] for i in second.body["items"]] == ["job-2", "job-3"]
    assert second.body["metadata"]["resourceVersion"] == first.body["metadata"]["resourceVersion"]
    third = await api.get(f"{TF}?limit=2&continue={second.body['metadata']['continue']}")
    assert [i["metadata"]["name"] for i in third.body["items"]] == ["job-4"]
    assert "continue" not in third.body["metadata"]
    await api.create_tfjob(api.tfjob("job-5"))
    sim.faults.shrink_history(0)
    status = api.status(await api.get(f"{TF}?limit=2&continue={token}"), 410, "Expired")
    assert status["message"].startswith("The provided continue parameter is too old")
    api.status(await api.get(f"{TF}?limit=2&continue=garbage!!"), 400, "BadRequest")


async def test_unknown_paths_and_methods(api: Any) -> None:
    api.status(await api.get("/apis/nothing.example/v1/namespaces/default/things"), 404, "NotFound")
    api.status(await api.request("PUT", TF, body={}), 405, "MethodNotAllowed")
    api.status(await api.request("POST", TF, raw=b"{not json"), 400, "BadRequest")
    api.status(await api.request("DELETE", f"{TF}/x/status"), 405, "MethodNotAllowed")


@pytest.mark.parametrize("path", ["/apis/batch.volcano.sh/v1alpha1/namespaces/default/jobs",
                                  "/apis/bus.volcano.sh/v1alpha1/namespaces/default/commands",
                                  "/apis/scheduling.volcano.sh/v1beta1/namespaces/default/podgroups"])
async def test_volcano_resources_are_served(api: Any, path: str) -> None:
    reply = await api.get(path)
    assert reply.status == 200 and reply.body["items"] == []


async def test_dry_run_does_not_store(api: Any) -> None:
    reply = await api.post(f"{TF}?dryRun=All", api.tfjob("dry"))
    assert reply.status == 201 and reply.body["metadata"]["uid"]
    api.status(await api.get(f"{TF}/dry"), 404, "NotFound")


async def test_table_output_for_kubectl(api: Any, sim: Any) -> None:
    accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    sim.store.create(PODS, {"metadata": {"name": "p", "namespace": "default"},
                            "spec": {"containers": [{"name": "c", "image": "x"}]},
                            "status": {"phase": "Running", "containerStatuses": [
                                {"name": "c", "ready": False, "restartCount": 2,
                                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}})
    pods = (await api.get("/api/v1/namespaces/default/pods", headers=accept)).body
    assert pods["kind"] == "Table"
    assert [c["name"] for c in pods["columnDefinitions"]] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert pods["rows"][0]["cells"][:4] == ["p", "0/1", "CrashLoopBackOff", 2]
    created = await api.create_tfjob()
    await api.put(f"{TF}/mnist/status", created | {"status": {"conditions": [
        {"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}]}})
    jobs = (await api.get(TF, headers=accept)).body
    assert [c["name"] for c in jobs["columnDefinitions"]] == ["Name", "State", "Age"]
    assert jobs["rows"][0]["cells"][:2] == ["mnist", "Running"]


async def test_main_write_neither_prunes_nor_warns_about_stored_status(api: Any, sim: Any) -> None:
    from kubesim.store import TFJOBS
    await api.create_tfjob()
    sim.store.update_status(TFJOBS, "default", "mnist", {"conditions": [], "kubesimExtra": 1})
    current = (await api.get(f"{TF}/mnist")).body
    current["metadata"]["labels"]["edited"] = "yes"
    replaced = await api.put(f"{TF}/mnist", current)
    assert replaced.status == 200 and "Warning" not in replaced.headers
    assert replaced.body["status"] == {"conditions": [], "kubesimExtra": 1}
