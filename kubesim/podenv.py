"""A container's environment as the kubelet builds it: downward-API values resolved, `$(VAR)` expanded.

Contract: `container_env(pod, container, *, config_map=None) -> dict[str, str]` returns the variables a
process in that container of `pod` sees (Kubernetes-defined ones only: no image ENV, no service links),
in the kubelet's order (`envFrom` first, then `env` top to bottom, later definitions win):
- `value` has `$(NAME)` references to variables defined *earlier* replaced (`$$` is a literal `$`, an
  unknown or later-defined reference stays as written), exactly like kubelet's `expansion.Expand`;
- `valueFrom.fieldRef` reads `metadata.name|namespace|uid`, `metadata.labels['k']`,
  `metadata.annotations['k']`, `spec.nodeName`, `spec.serviceAccountName`, `status.hostIP`,
  `status.podIP` (a missing label or annotation is ""), and is never expanded;
- `valueFrom.configMapKeyRef` / `envFrom.configMapRef` read through `config_map(namespace, name)` (None →
  the ConfigMap does not exist); an unresolvable source leaves the variable out (the real kubelet would
  refuse to start the container: CreateContainerConfigError, which kubesim does not simulate).
`resolve_field(pod, path)` and `expand(text, env)` are the two halves, for command/args or other callers.
Pure functions over plain dicts: clients (tests, the gateway's tests) can call them on a pod read over
the API to see what the kubelet gave a container, e.g. its TF_CONFIG.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

ConfigMapLookup = Callable[[str, str], Mapping[str, Any] | None]

_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")
_SIMPLE_FIELDS: dict[str, tuple[str, str]] = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "metadata.uid": ("metadata", "uid"),
    "spec.nodeName": ("spec", "nodeName"),
    "spec.serviceAccountName": ("spec", "serviceAccountName"),
    "status.hostIP": ("status", "hostIP"),
    "status.podIP": ("status", "podIP"),
}


def resolve_field(pod: Mapping[str, Any], path: str) -> str | None:
    """The downward-API value of `fieldPath` for `pod`; None for a path the kubelet does not support."""
    match = _SUBSCRIPT.match(path)
    if match:
        mapping = (pod.get("metadata") or {}).get(match.group(1)) or {}
        return str(mapping.get(match.group(2), ""))
    if path in _SIMPLE_FIELDS:
        section, key = _SIMPLE_FIELDS[path]
        return str((pod.get(section) or {}).get(key) or "")
    return None


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names replaced, `$$` → `$`, anything else kept verbatim."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char != "$" or i + 1 >= n:
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            close = text.find(")", i + 2)
            if close < 0:  # an unterminated reference is copied as is
                out.append("$(")
                i += 2
                continue
            name = text[i + 2:close]
            out.append(env.get(name, f"$({name})"))
            i = close + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any], *,
                  config_map: ConfigMapLookup | None = None) -> dict[str, str]:
    """The environment the kubelet gives `container` of `pod` (see the module docstring)."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = (source or {}).get("configMapRef") or {}
        data = _config_map_data(config_map, namespace, ref.get("name"))
        prefix = str((source or {}).get("prefix") or "")
        for key, value in (data or {}).items():
            env[prefix + str(key)] = str(value)
    for var in container.get("env") or []:
        if not isinstance(var, dict) or not var.get("name"):
            continue
        name = str(var["name"])
        source = var.get("valueFrom")
        if not source:
            env[name] = expand(str(var.get("value") or ""), env)
            continue
        value = _value_from(pod, namespace, source, config_map)
        if value is not None:
            env[name] = value
    return env


def _value_from(pod: Mapping[str, Any], namespace: str, source: Mapping[str, Any],
                config_map: ConfigMapLookup | None) -> str | None:
    field_ref = source.get("fieldRef")
    if field_ref:
        return resolve_field(pod, str(field_ref.get("fieldPath") or ""))
    key_ref = source.get("configMapKeyRef")
    if key_ref:
        data = _config_map_data(config_map, namespace, key_ref.get("name"))
        if data is not None and key_ref.get("key") in data:
            return str(data[key_ref["key"]])
    return None


def _config_map_data(lookup: ConfigMapLookup | None, namespace: str, name: Any) -> dict[str, Any] | None:
    if lookup is None or not name:
        return None
    found = lookup(namespace, str(name))
    return None if found is None else dict(found.get("data") or {})


__all__ = ["ConfigMapLookup", "container_env", "expand", "resolve_field"]
