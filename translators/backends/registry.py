"""Backend name (config `clusters[].backend`, `translators.spec.Backend`) -> its implementation.

- `backend_named(name)`: the backend registered under `name`; `UnknownBackend` for any other name (no
  fallback: a cluster whose backend is unknown cannot be translated for).
- `backend_for(profile)`: the backend of a cluster.
- `backend_for_object(obj, prefer=None)`: the backend whose resource an object is (its apiVersion and,
  when given, kind); `prefer` picks among backends sharing a resource (the two TFJob dialects), else the
  first registered. `NotTranslatable` when no backend makes such objects.
- `REGISTRY`: every registered backend by name (read-only).

Each entry is typed `JobBackend`, so mypy proves every backend implements the whole protocol; a unit
test proves the registry covers exactly `translators.spec.BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from translators.backends.base import JobBackend
from translators.backends.jobset import JobSetBackend
from translators.backends.tf_operator import TFOperatorBackend
from translators.backends.training_operator import TrainingOperatorBackend
from translators.backends.volcano import VolcanoBackend
from translators.errors import NotTranslatable
from translators.spec import Backend, ClusterProfile

_BACKENDS: dict[Backend, JobBackend] = {
    "training-operator": TrainingOperatorBackend(),
    "tf-operator": TFOperatorBackend(),
    "volcano": VolcanoBackend(),
    "jobset": JobSetBackend(),
}
REGISTRY: Mapping[Backend, JobBackend] = MappingProxyType(_BACKENDS)
# apiVersion -> the backends making objects of it, in registration order (looked up per status read).
_BY_API_VERSION: dict[str, list[JobBackend]] = {}
for _backend in _BACKENDS.values():
    _BY_API_VERSION.setdefault(_backend.resource.api_version, []).append(_backend)


class UnknownBackend(ValueError):
    """A backend name nothing is registered under."""

    def __init__(self, name: object) -> None:
        super().__init__(f"unknown backend {name!r}; known backends: {', '.join(REGISTRY)}")


def backend_named(name: str) -> JobBackend:
    """The backend registered under `name`; UnknownBackend otherwise."""
    for registered, backend in REGISTRY.items():
        if registered == name:
            return backend
    raise UnknownBackend(name)


def backend_for(profile: ClusterProfile) -> JobBackend:
    """The backend a cluster runs."""
    return backend_named(profile.backend)


def backend_for_object(obj: dict[str, Any], *, prefer: Backend | None = None) -> JobBackend:
    """The backend whose objects look like `obj` (apiVersion, kind); NotTranslatable when none does."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    candidates = _BY_API_VERSION.get(api_version, []) if isinstance(api_version, str) else []
    matching = [b for b in candidates if kind in (None, b.resource.kind)]
    if not matching:
        raise NotTranslatable(f"not a job kind the gateway makes: {api_version}/{kind}")
    return next((b for b in matching if b.name == prefer), matching[0])
