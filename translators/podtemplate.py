"""The pod every backend runs for a replica: one `tensorflow` container, its volumes, and object metadata.

Shared by all backends (TFJob, Volcano, JobSet), which differ only in what wraps the pod template;
knows no backend. One container `tensorflow`, image from the runtime catalog (`gpu_image` when the
replica asks for GPUs), port `tfjob-port` 2222, command = runtime command + [bootfile], args,
workingDir, env = environment then `CHECKPOINT_DIR`/`EVENT_DIR`/`MODEL_DIR`/`LOG_DIR` for the
directory fields that are set, cpu/memory requests = limits, `nvidia.com/gpu` in limits and requests
when gpu > 0, volumes and image-pull secrets from the cluster profile, `schedulerName` /
`priorityClassName` from the profile. `pod_template_metadata` gives the template labels managed-by /
job id / owner (pods are selected by them) and the exact job id as an annotation.

The user's args, env values and bootfile reach the program literally: every `$` is written as `$$`,
because Kubernetes would otherwise expand `$(VAR)` references in command/args/env (and turn `$$` into
`$`). The spec annotation keeps the unescaped values.
"""

from __future__ import annotations

from typing import Any

from translators.errors import FieldError, SpecError
from translators.labels import job_annotations, job_labels, pod_template_annotations, pod_template_labels
from translators.naming import namespace_for
from translators.spec import (
    DIRECTORY_ENV,
    ClusterProfile,
    JobIdentity,
    JobSpec,
    Replica,
    Volume,
    resolve_runtime,
)

CONTAINER_NAME = "tensorflow"
PORT_NAME = "tfjob-port"
PORT = 2222
GPU_RESOURCE = "nvidia.com/gpu"


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


def _volume(volume: Volume) -> dict[str, Any]:
    read_only: dict[str, Any] = {"readOnly": True} if volume.read_only else {}
    if volume.claim_name:
        source: dict[str, Any] = {"persistentVolumeClaim": {"claimName": volume.claim_name, **read_only}}
    elif volume.nfs_server and volume.nfs_path:
        source = {"nfs": {"server": volume.nfs_server, "path": volume.nfs_path, **read_only}}
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


def pod_template_metadata(identity: JobIdentity) -> dict[str, Any]:
    """Labels and annotations of every pod template (pods are found by the job id label)."""
    return {"labels": pod_template_labels(identity), "annotations": pod_template_annotations(identity)}


def metadata(spec: JobSpec, identity: JobIdentity, profile: ClusterProfile, *, name: str) -> dict[str, Any]:
    """Name, namespace, labels and annotations of the job object (`name` is the backend's object name)."""
    return {
        "name": name,
        "namespace": namespace_for(identity.partition, profile),
        "labels": job_labels(identity),
        "annotations": job_annotations(spec, identity),
    }
