"""The backend seam: what every backend module implements, and the pieces they share.

A backend is what a cluster runs jobs with (config `clusters[].backend`, names declared once in
`translators.spec.Backend`). Each lives in one module of this package and implements `JobBackend`:

- `name`, `resource`: its config name and the API resource it creates (group/version/plural/kind);
- `object_name(name, job_id)`: the cluster object's name for a Clever job (deterministic);
- `check(spec)`: what this backend cannot run although the legacy reader accepts it (as FieldErrors);
- `build(spec, identity, profile)`: the full body to create (SpecError when the cluster cannot run it);
- `status(obj, pods, last_failure)`: the legacy status of its object (None: not on the cluster) + pods;
- `in_place_fields`, `classify_update(old, new)`, `in_place_patch(old, new, identity, profile)`: which changes a
  live object takes as a JSON merge patch and which need a new object;
- `pod_selector(job_id)`, `pod_role(pod)`: how its pods are found and given a type and index;
- `rbac_rules()`: the Kubernetes permissions the gateway needs on a cluster running it;
- `from_object(obj)`: (JobSpec, JobIdentity) rebuilt from a managed object's labels/annotations.

`translators.backends.registry` maps names to implementations; typing each entry as `JobBackend`
makes mypy prove that every backend implements every member.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Protocol, TypedDict

from translators.errors import FieldError, NotTranslatable, SpecError
from translators.labels import record_from_metadata
from translators.spec import Backend, ClusterProfile, JobIdentity, JobSpec, JobStatus, RunPolicy
from translators.status import PodProblem

UpdateKind = Literal["unchanged", "in-place", "recreate"]


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


RbacRule = TypedDict("RbacRule", {"apiGroups": list[str], "resources": list[str], "verbs": list[str]})
"""One ClusterRole rule, as in an RBAC manifest."""


class JobBackend(Protocol):
    """One way of running Clever jobs on a cluster (see the module docstring)."""

    @property
    def name(self) -> Backend:
        """The config name (`clusters[].backend`)."""
        ...

    @property
    def resource(self) -> ApiResource:
        """The API resource holding this backend's jobs."""
        ...

    @property
    def in_place_fields(self) -> frozenset[str]:
        """RunPolicy attributes a live object takes in a merge patch (the description always does)."""
        ...

    def object_name(self, name: str, job_id: str) -> str:
        """The object name for Clever job `job_id` named `name`: stable, a DNS-1035 label."""
        ...

    def check(self, spec: JobSpec) -> list[FieldError]:
        """Why this backend cannot run `spec` ([] when it can), at legacy field paths."""
        ...

    def build(self, spec: JobSpec, identity: JobIdentity, profile: ClusterProfile) -> dict[str, Any]:
        """The full object to create; SpecError when the cluster cannot run it."""
        ...

    def status(self, obj: dict[str, Any] | None, pods: list[dict[str, Any]],
               last_failure: PodProblem | None) -> JobStatus:
        """Legacy status of the object (None: not on the cluster), its pods and the last pod failure seen."""
        ...

    def classify_update(self, old: JobSpec, new: JobSpec) -> UpdateKind:
        """How `old` becomes `new` on a live object: nothing, a merge patch, or a new object."""
        ...

    def in_place_patch(self, old: JobSpec, new: JobSpec, identity: JobIdentity,
                       profile: ClusterProfile) -> dict[str, Any]:
        """JSON merge patch applying an in-place update on a cluster of `profile` (whose defaults apply to
        what the update clears, as they did to the created object); SpecError when it needs a new object."""
        ...

    def pod_selector(self, job_id: str) -> str:
        """Label selector of the pods of one job."""
        ...

    def pod_role(self, pod: dict[str, Any]) -> tuple[str, int] | None:
        """(replica type, index) of one of its pods; None when the pod does not say."""
        ...

    def rbac_rules(self) -> list[RbacRule]:
        """The permissions the gateway needs on a cluster running this backend."""
        ...

    def from_object(self, obj: dict[str, Any]) -> tuple[JobSpec, JobIdentity]:
        """(spec, identity) of a managed object; NotTranslatable when it is not one of ours."""
        ...


def job_rules(resource: ApiResource) -> list[RbacRule]:
    """Full use of a job resource and read access to its status (as deploy/rbac grants today), then read
    access to pods, their logs and events: replica status comes from the pods, on every backend."""
    return [
        {"apiGroups": [resource.group], "resources": [resource.plural],
         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        {"apiGroups": [resource.group], "resources": [f"{resource.plural}/status"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["get", "list", "watch"]},
    ]


def classify(old: JobSpec, new: JobSpec, in_place_fields: frozenset[str]) -> UpdateKind:
    """`unchanged`, `in-place` (only the description and `in_place_fields` of the run policy differ) or
    `recreate`."""
    if old == new:
        return "unchanged"
    if replace(old, description="", run_policy=RunPolicy()) != replace(new, description="",
                                                                         run_policy=RunPolicy()):
        return "recreate"
    every = frozenset(f.name for f in fields(RunPolicy))
    return "recreate" if set(changed_policy(old, new, every)) - in_place_fields else "in-place"


def changed_policy(old: JobSpec, new: JobSpec, attrs: frozenset[str]) -> list[str]:
    """The RunPolicy attributes among `attrs` that differ, sorted."""
    return sorted(attr for attr in attrs if getattr(old.run_policy, attr) != getattr(new.run_policy, attr))


def record_of_kind(obj: dict[str, Any], kind: str, what: str) -> tuple[JobSpec, JobIdentity]:
    """`from_object` for a backend whose objects are of `kind` (a missing kind is tolerated)."""
    if obj.get("kind") not in (None, kind):
        raise NotTranslatable(f"not a {what}: {obj.get('kind')!r}")
    return record_from_metadata(obj.get("metadata"))


def ensure_runnable(problems: list[FieldError], profile: ClusterProfile) -> None:
    """SpecError naming `problems` (a backend's `check` of a spec), if any: `build` never half-builds."""
    if problems:
        first = problems[0]
        raise SpecError(f"this job cannot run on cluster {profile.id!r}: {first.path}: {first.message}",
                        fields=list(problems))


def reserved_env(spec: JobSpec, names: frozenset[str], *, setter: str) -> list[FieldError]:
    """One error per environment variable of `spec` that `setter` sets itself."""
    return [FieldError("environment", f"{key} is set by {setter} and cannot be given")
            for key, _ in spec.environment if key in names]
