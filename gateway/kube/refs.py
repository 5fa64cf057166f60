"""Typed references: the one place that builds Kubernetes URL paths.

Contract: `ResourceKind(group, version, plural, namespaced)` names an API resource (`PODS`, `EVENTS`, `NAMESPACES`,
`SUBJECT_ACCESS_REVIEWS`, or `ResourceKind.of(job_resource(profile))` for a backend's jobs);
`ObjectRef(cluster, resource, namespace, name)` is one object (name set) or collection (name None) on one
cluster, and `ref.path` its URL path with every segment percent-encoded. Nothing else pastes paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from translators.backends import ApiResource


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """A Kubernetes API resource (group "" = core)."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def base_path(self) -> str:
        """`/api/v1` for core, `/apis/<group>/<version>` otherwise."""
        return f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"

    @classmethod
    def of(cls, resource: ApiResource) -> ResourceKind:
        """The kind of a translators `ApiResource` (jobs are namespaced)."""
        return cls(resource.group, resource.version, resource.plural)


PODS = ResourceKind("", "v1", "pods")
EVENTS = ResourceKind("", "v1", "events")
NAMESPACES = ResourceKind("", "v1", "namespaces", namespaced=False)
SUBJECT_ACCESS_REVIEWS = ResourceKind("authorization.k8s.io", "v1", "subjectaccessreviews", namespaced=False)
SELF_SUBJECT_ACCESS_REVIEWS = ResourceKind("authorization.k8s.io", "v1", "selfsubjectaccessreviews", namespaced=False)


def discovery_path(group: str, version: str) -> str:
    """The APIResourceList of one group/version (`/api/v1` for the core group)."""
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One object (name set) or collection (name None) on one cluster; the only URL builder."""

    cluster: str
    resource: ResourceKind
    namespace: str | None = None
    name: str | None = None

    @property
    def path(self) -> str:
        """The URL path of this object or collection."""
        parts = [self.resource.base_path]
        if self.resource.namespaced and self.namespace is not None:
            parts.append(f"/namespaces/{quote(self.namespace, safe='')}")
        parts.append(f"/{self.resource.plural}")
        if self.name is not None:
            parts.append(f"/{quote(self.name, safe='')}")
        return "".join(parts)

    def collection(self) -> ObjectRef:
        """The collection that holds this object."""
        return ObjectRef(self.cluster, self.resource, self.namespace, None)

    def __str__(self) -> str:
        return f"{self.cluster}:{self.path}"
