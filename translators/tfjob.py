"""JobSpec -> `kubeflow.org/v1` TFJob, in the two dialects clusters run.

- `training-operator` (kubeflow/training-operator ≥ 1.x, CRD in shared/crds): run policy under
  `spec.runPolicy`; with a gang scheduler also `spec.runPolicy.schedulingPolicy {minAvailable =
  total replicas, queue, priorityClass}`. Validates against the v1.9.0 CRD with nothing pruned.
- `tf-operator` (the older kubeflow/tf-operator, seeds 000-002): `cleanPodPolicy`,
  `ttlSecondsAfterFinished`, `activeDeadlineSeconds`, `backoffLimit` directly in `spec` (its
  RunPolicy was inlined). Its CRD accepts them; the v1.9.0 CRD would prune exactly those four.
  No `schedulingPolicy` there (that operator's gang mode made PodGroups itself): only the pods'
  `schedulerName`.

Pod template (shared with the Volcano translator through `pod_spec`): one container `tensorflow`,
image from the runtime catalog (`gpu_image` when the replica asks for GPUs), port `tfjob-port`
2222, command = runtime command + [bootfile], args, workingDir, env = environment then
`CHECKPOINT_DIR`/`EVENT_DIR`/`MODEL_DIR`/`LOG_DIR` for the directory fields that are set,
cpu/memory requests = limits, `nvidia.com/gpu` in limits and requests when gpu > 0, volumes and
image-pull secrets from the cluster profile, `schedulerName`/`priorityClassName` from the profile;
template labels managed-by / job id / owner (pods are selected by them) and the exact job id as an
annotation.

The user's args, env values and bootfile reach the program literally: every `$` is written as
`$$`, because Kubernetes would otherwise expand `$(VAR)` references in command/args/env (and turn
`$$` into `$`). The spec annotation keeps the unescaped values.

Restart policy per replica: `ps` -> `OnFailure` (parameter servers never finish; restart them in
place whatever killed them); `chief`/`worker`/`evaluator` -> `ExitCode`: exit codes 1-127 are
the program's own errors and fail the job at once instead of crash-looping until backoffLimit,
while ≥ 128 (OOM kill, preemption, SIGTERM) restarts the pod, bounded by backoffLimit. The policy
is set on the ReplicaSpec only: the operators overwrite a template-level one (with a warning).
Replica types with count 0 are left out (the spec keeps them, see translators.clever).
"""

from __future__ import annotations

from typing import Any, Literal

from translators.clever import DIRECTORY_ENV, IN_PLACE_RUN_POLICY_FIELDS, classify_update, resolve_runtime
from translators.errors import FieldError, NotTranslatable, SpecError
from translators.labels import (
    job_annotations,
    job_labels,
    pod_template_annotations,
    pod_template_labels,
    record_from_metadata,
    update_annotations,
)
from translators.naming import namespace_for, object_name
from translators.spec import ClusterProfile, JobIdentity, JobSpec, Replica, RunPolicy

API_VERSION = "kubeflow.org/v1"
KIND = "TFJob"
CONTAINER_NAME = "tensorflow"
PORT_NAME = "tfjob-port"
PORT = 2222
GPU_RESOURCE = "nvidia.com/gpu"

Dialect = Literal["training-operator", "tf-operator"]

REPLICA_KEYS = {"chief": "Chief", "worker": "Worker", "ps": "PS", "evaluator": "Evaluator"}
RESTART_POLICIES = {"chief": "ExitCode", "worker": "ExitCode", "ps": "OnFailure", "evaluator": "ExitCode"}
# RunPolicy attribute -> Kubernetes field, for the fields that live in runPolicy (or spec).
RUN_POLICY_FIELDS = {
    "active_deadline_seconds": "activeDeadlineSeconds",
    "ttl_seconds_after_finished": "ttlSecondsAfterFinished",
    "clean_pod_policy": "cleanPodPolicy",
    "backoff_limit": "backoffLimit",
}


def literal(text: str) -> str:
    """Escape Kubernetes' `$(VAR)` expansion so the program receives `text` exactly."""
    return text.replace("$", "$$")


def _image(spec: JobSpec, replica: Replica, profile: ClusterProfile) -> tuple[str, list[str]]:
    key = resolve_runtime(spec.runtime, profile)
    if key is None:
        known = ", ".join(sorted(profile.runtimes)) or "none configured"
        raise SpecError(f"runtime {spec.runtime!r} is not available on cluster {profile.id!r}",
                        fields=[FieldError("runtime", f"unknown runtime; known runtimes: {known}")])
    runtime = profile.runtimes[key]
    image = runtime.gpu_image if replica.resources.gpu > 0 and runtime.gpu_image else runtime.image
    return image, list(runtime.command)


def container(spec: JobSpec, replica: Replica, profile: ClusterProfile) -> dict[str, Any]:
    """The `tensorflow` container of one replica type."""
    image, command = _image(spec, replica, profile)
    env = [{"name": key, "value": literal(value)} for key, value in spec.environment]
    env += [{"name": variable, "value": literal(getattr(spec, attr))}
            for attr, _, variable in DIRECTORY_ENV if getattr(spec, attr)]
    amounts: dict[str, str] = {"cpu": replica.resources.cpu, "memory": replica.resources.memory}
    if replica.resources.gpu > 0:
        amounts[GPU_RESOURCE] = str(replica.resources.gpu)
    body: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "command": [*command, literal(spec.bootfile)],
        "ports": [{"name": PORT_NAME, "containerPort": PORT}],
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
    }
    if spec.args:
        body["args"] = [literal(arg) for arg in spec.args]
    if spec.workdir:
        body["workingDir"] = spec.workdir
    if env:
        body["env"] = env
    if profile.volumes:
        body["volumeMounts"] = [
            {"name": v.name, "mountPath": v.mount_path, **({"readOnly": True} if v.read_only else {})}
            for v in profile.volumes
        ]
    return body


def _volume(volume: Any) -> dict[str, Any]:
    if volume.claim_name:
        source: dict[str, Any] = {"persistentVolumeClaim": {"claimName": volume.claim_name,
                                                            **({"readOnly": True} if volume.read_only else {})}}
    elif volume.nfs_server and volume.nfs_path:
        source = {"nfs": {"server": volume.nfs_server, "path": volume.nfs_path,
                          **({"readOnly": True} if volume.read_only else {})}}
    elif volume.host_path:
        source = {"hostPath": {"path": volume.host_path}}
    else:
        source = {"emptyDir": {}}
    return {"name": volume.name, **source}


def pod_spec(spec: JobSpec, replica: Replica, profile: ClusterProfile, *,
             restart_policy: str | None) -> dict[str, Any]:
    """The pod spec of one replica type (restartPolicy only when given)."""
    body: dict[str, Any] = {"containers": [container(spec, replica, profile)]}
    if restart_policy:
        body["restartPolicy"] = restart_policy
    if profile.volumes:
        body["volumes"] = [_volume(v) for v in profile.volumes]
    if profile.image_pull_secrets:
        body["imagePullSecrets"] = [{"name": name} for name in profile.image_pull_secrets]
    if profile.scheduler_name:
        body["schedulerName"] = profile.scheduler_name
    if profile.priority_class:
        body["priorityClassName"] = profile.priority_class
    return body


def metadata(spec: JobSpec, identity: JobIdentity, profile: ClusterProfile) -> dict[str, Any]:
    """Name, namespace, labels and annotations of the job object."""
    return {
        "name": object_name(spec.name, identity.id),
        "namespace": namespace_for(identity.partition, profile),
        "labels": job_labels(identity),
        "annotations": job_annotations(spec, identity),
    }


def to_tfjob(spec: JobSpec, identity: JobIdentity, profile: ClusterProfile, *, dialect: Dialect) -> dict[str, Any]:
    """The full TFJob body for `spec` in the given dialect."""
    replica_specs = {
        REPLICA_KEYS[r.type]: {
            "replicas": r.count,
            "restartPolicy": RESTART_POLICIES[r.type],
            "template": {
                "metadata": {"labels": pod_template_labels(identity),
                             "annotations": pod_template_annotations(identity)},
                "spec": pod_spec(spec, r, profile, restart_policy=None),
            },
        }
        for r in spec.replicas if r.count > 0
    }
    body_spec: dict[str, Any] = {"tfReplicaSpecs": replica_specs}
    policy = {RUN_POLICY_FIELDS[attr]: value for attr, value in _policy_items(spec.run_policy)}
    if dialect == "training-operator":
        if profile.scheduler_name:
            scheduling: dict[str, Any] = {"minAvailable": sum(r.count for r in spec.replicas)}
            if profile.queue:
                scheduling["queue"] = profile.queue
            if profile.priority_class:
                scheduling["priorityClass"] = profile.priority_class
            policy["schedulingPolicy"] = scheduling
        if policy:
            body_spec["runPolicy"] = policy
    else:
        body_spec.update(policy)
    if spec.run_policy.success_policy is not None:
        body_spec["successPolicy"] = spec.run_policy.success_policy
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata(spec, identity, profile),
            "spec": body_spec}


def _policy_items(policy: RunPolicy) -> list[tuple[str, Any]]:
    return [(attr, getattr(policy, attr)) for attr in RUN_POLICY_FIELDS if getattr(policy, attr) is not None]


def tfjob_in_place_patch(old: JobSpec, new: JobSpec, identity: JobIdentity, *, dialect: Dialect) -> dict[str, Any]:
    """Merge patch turning the live TFJob of `old` into `new` (description / run policy only)."""
    if classify_update(old, new) == "recreate":
        raise SpecError("this change cannot be applied to a live TFJob; the job must be recreated",
                        fields=[FieldError("", "only description, activeDeadlineSeconds, "
                                               "ttlSecondsAfterFinished and cleanPodPolicy change in place")])
    changes = {
        RUN_POLICY_FIELDS[attr]: getattr(new.run_policy, attr)
        for attr in sorted(IN_PLACE_RUN_POLICY_FIELDS)
        if getattr(old.run_policy, attr) != getattr(new.run_policy, attr)
    }
    patch: dict[str, Any] = {"metadata": {"annotations": update_annotations(new, identity)}}
    if changes:
        patch["spec"] = {"runPolicy": changes} if dialect == "training-operator" else changes
    return patch


def tfjob_from_cluster_object(obj: dict[str, Any]) -> tuple[JobSpec, JobIdentity]:
    """Rebuild (spec, identity) from a TFJob we made."""
    if obj.get("kind") not in (None, KIND):
        raise NotTranslatable(f"not a TFJob: {obj.get('kind')!r}")
    return record_from_metadata(obj.get("metadata"))

