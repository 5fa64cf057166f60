"""The backends behind one seam: the protocol (`base.JobBackend`), one module per backend, the registry.

Backends: `training-operator` and `tf-operator` (TFJob `kubeflow.org/v1 tfjobs`, two dialects:
`training_operator`, `tf_operator`, sharing `tfjob`), `volcano` (`batch.volcano.sh/v1alpha1 jobs`)
and `jobset` (`jobset.x-k8s.io/v1alpha2 jobsets`). `registry.backend_for(profile)` gives a cluster's
backend; nothing outside a backend's module branches on the backend.

The module-level functions below are FACADES kept for the gateway, which calls them today: each one
resolves the backend through the registry and calls its protocol method, adding nothing. The gateway
is to call the `JobBackend` of a cluster directly instead; then these go.

- `job_resource(profile)`, `to_cluster_object(spec, identity, profile)`,
  `in_place_patch(old, new, identity, profile)`: the profile's backend (an unknown backend name raises
  `registry.UnknownBackend`; nothing falls back to TFJob).
- `from_cluster_object(obj)`: the backend whose resource `obj` is (by apiVersion/kind); objects of any
  other kind, or without an apiVersion, are `NotTranslatable`.
- `job_status(obj, pods, profile=, last_failure=)`: the backend whose resource `obj` is (the profile's
  when both dialects match), the profile's backend when there is no object.
- `failure_of`, `job_id_of`, `pod_selector`, `owner_selector`, `MANAGED_SELECTOR`: the same on every
  backend (translators.status, translators.labels).
"""

from __future__ import annotations

from typing import Any

from translators import labels, status
from translators.backends import jobset, tfjob, volcano
from translators.backends.base import ApiResource, JobBackend
from translators.backends.registry import backend_for, backend_for_object
from translators.errors import NotTranslatable
from translators.spec import ClusterProfile, JobIdentity, JobSpec, JobStatus
from translators.status import PodProblem

__all__ = [
    "JOBSET_RESOURCE", "MANAGED_SELECTOR", "TFJOB_RESOURCE", "VOLCANO_JOB_RESOURCE", "ApiResource",
    "JobBackend", "failure_of", "from_cluster_object", "in_place_patch", "job_id_of", "job_resource",
    "job_status", "owner_selector", "pod_selector", "to_cluster_object",
]

MANAGED_SELECTOR: str = labels.MANAGED_SELECTOR
TFJOB_RESOURCE = tfjob.RESOURCE
VOLCANO_JOB_RESOURCE = volcano.RESOURCE
JOBSET_RESOURCE = jobset.RESOURCE


def job_resource(profile: ClusterProfile) -> ApiResource:
    """Facade: the API resource that holds this cluster's jobs (`JobBackend.resource`)."""
    return backend_for(profile).resource


def to_cluster_object(spec: JobSpec, identity: JobIdentity, profile: ClusterProfile) -> dict[str, Any]:
    """Facade: the full job body to create on the cluster (`JobBackend.build`)."""
    return backend_for(profile).build(spec, identity, profile)


def in_place_patch(old: JobSpec, new: JobSpec, identity: JobIdentity,
                   profile: ClusterProfile) -> dict[str, Any]:
    """Facade: JSON merge patch applying an in-place update (`JobBackend.in_place_patch`)."""
    return backend_for(profile).in_place_patch(old, new, identity, profile)


def from_cluster_object(obj: dict[str, Any]) -> tuple[JobSpec, JobIdentity]:
    """Facade: (spec, identity) of a managed job object (`JobBackend.from_object`); NotTranslatable
    when it is not ours."""
    if not isinstance(obj, dict):
        raise NotTranslatable("not a Kubernetes object")
    return backend_for_object(obj).from_object(obj)


def job_status(obj: dict[str, Any] | None, pods: list[dict[str, Any]], *, profile: ClusterProfile,
               last_failure: PodProblem | None = None) -> JobStatus:
    """Facade: legacy status of a job object (None: not on the cluster) and its pods (`JobBackend.status`)."""
    backend = backend_for(profile) if obj is None else backend_for_object(obj, prefer=profile.backend)
    return backend.status(obj, pods, last_failure)


def failure_of(pod: dict[str, Any]) -> PodProblem | None:
    """What went wrong in a pod when it is a failure worth remembering for `job_status(last_failure=)`."""
    return status.failure_of(pod)


def job_id_of(obj: dict[str, Any]) -> str | None:
    """The Clever job id of a managed job object or pod (None when it carries none)."""
    return labels.job_id_of(obj)


def pod_selector(job_id: str) -> str:
    """Label selector for the pods of one job (every backend's `pod_selector` is this one)."""
    return labels.pod_selector(job_id)


def owner_selector(owner: str) -> str:
    """Label selector for every managed job of one owner."""
    return labels.owner_selector(owner)
