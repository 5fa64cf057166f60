"""Dispatch on the cluster's backend: the one translation API the gateway calls.

Backends: `training-operator` and `tf-operator` (TFJob, `kubeflow.org/v1 tfjobs`, two dialects,
see translators.tfjob) and `volcano` (`batch.volcano.sh/v1alpha1 jobs`, translators.volcano).
`from_cluster_object` needs no profile: everything comes from our labels/annotations.
`job_status` picks the mapping from the object's apiVersion when there is an object, else from
the profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from translators import labels, status
from translators.errors import NotTranslatable
from translators.spec import ClusterProfile, JobIdentity, JobSpec, JobStatus
from translators.status import PodProblem, tfjob_status, vcjob_status
from translators.tfjob import tfjob_from_cluster_object, tfjob_in_place_patch, to_tfjob
from translators.volcano import to_vcjob, vcjob_from_cluster_object, vcjob_in_place_patch

MANAGED_SELECTOR: str = labels.MANAGED_SELECTOR


@dataclass(frozen=True, slots=True)
class ApiResource:
    """Where a job kind lives in the Kubernetes API."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        """`group/version` (as in a body's apiVersion)."""
        return f"{self.group}/{self.version}"


TFJOB_RESOURCE = ApiResource("kubeflow.org", "v1", "tfjobs", "TFJob")
VOLCANO_JOB_RESOURCE = ApiResource("batch.volcano.sh", "v1alpha1", "jobs", "Job")


def job_resource(profile: ClusterProfile) -> ApiResource:
    """The API resource that holds this cluster's jobs."""
    return VOLCANO_JOB_RESOURCE if profile.backend == "volcano" else TFJOB_RESOURCE


def to_cluster_object(spec: JobSpec, identity: JobIdentity, profile: ClusterProfile) -> dict[str, Any]:
    """The full job body to create on the cluster; SpecError if the cluster cannot run it."""
    if profile.backend == "volcano":
        return to_vcjob(spec, identity, profile)
    return to_tfjob(spec, identity, profile, dialect=profile.backend)


def in_place_patch(old: JobSpec, new: JobSpec, identity: JobIdentity, profile: ClusterProfile) -> dict[str, Any]:
    """JSON merge patch applying an in-place update (see clever.classify_update with profile=)."""
    if profile.backend == "volcano":
        return vcjob_in_place_patch(old, new, identity)
    return tfjob_in_place_patch(old, new, identity, dialect=profile.backend)


def from_cluster_object(obj: dict[str, Any]) -> tuple[JobSpec, JobIdentity]:
    """Rebuild (spec, identity) of a managed job object; NotTranslatable when it is not ours."""
    if not isinstance(obj, dict):
        raise NotTranslatable("not a Kubernetes object")
    if obj.get("apiVersion") == VOLCANO_JOB_RESOURCE.api_version:
        return vcjob_from_cluster_object(obj)
    if obj.get("apiVersion") in (None, TFJOB_RESOURCE.api_version):
        return tfjob_from_cluster_object(obj)
    raise NotTranslatable(f"not a job kind the gateway makes: {obj.get('apiVersion')}/{obj.get('kind')}")


def job_status(obj: dict[str, Any] | None, pods: list[dict[str, Any]], *, profile: ClusterProfile,
               last_failure: PodProblem | None = None) -> JobStatus:
    """Legacy status of a job object (None: not on the cluster) and its pods (+ the last pod failure seen)."""
    if obj is not None:
        is_volcano = obj.get("apiVersion") == VOLCANO_JOB_RESOURCE.api_version
    else:
        is_volcano = profile.backend == "volcano"
    return vcjob_status(obj, pods, last_failure) if is_volcano else tfjob_status(obj, pods, last_failure)


def failure_of(pod: dict[str, Any]) -> PodProblem | None:
    """What went wrong in a pod when it is a failure worth remembering for `job_status(last_failure=)`."""
    return status.failure_of(pod)


def job_id_of(obj: dict[str, Any]) -> str | None:
    """The Clever job id of a managed job object or pod (None when it carries none)."""
    return labels.job_id_of(obj)


def pod_selector(job_id: str) -> str:
    """Label selector for the pods of one job (same on every backend)."""
    return labels.pod_selector(job_id)


def owner_selector(owner: str) -> str:
    """Label selector for every managed job of one owner."""
    return labels.owner_selector(owner)
