"""Label and field selectors with kube-apiserver syntax.

Contract: `parse_label_selector(text)` / `parse_field_selector(text, fields=...)` return a predicate over a
full object dict, or raise `ApiError` 400 BadRequest for bad syntax (or an unsupported field label). A label
selector is a `LabelSelector` whose `requirements` the store reads to pick candidates from its label index.
Label operators: `=`, `==`, `!=`, `in (...)`, `notin (...)`, `key` (exists), `!key` (not exists).
Field operators: `=`, `==`, `!=`, with dotted paths into the object (`metadata.name`, `status.phase`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubesim.errors import ApiError, bad_request

Predicate = Callable[[Mapping[str, Any]], bool]

_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_key_error(key: str) -> str | None:
    """Why `key` is not a valid label/annotation key, or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in prefix:
        return "a qualified name must consist of alphanumeric characters, '-', '_' or '.', with an optional DNS subdomain prefix and '/'"
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _LABEL_NAME.match(name):
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character")
    return None


def label_value_error(value: str) -> str | None:
    """Why `value` is not a valid label value, or None."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL_VALUE.match(value):
        return ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character")
    return None


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


_SET_RE = re.compile(r"^(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQ_RE = re.compile(r"^(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_EXISTS_RE = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)$")


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


@dataclass(frozen=True)
class Requirement:
    """One label requirement. `=`/`==` are `in` with one value and `!=` is `notin` with one, as in apimachinery."""

    key: str
    op: str  # "in" | "notin" | "exists" | "!exists"
    values: frozenset[str] = frozenset()

    @property
    def narrows(self) -> bool:
        """True when only objects carrying the key can match, so a label index can supply the candidates."""
        return self.op in ("in", "exists")

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this requirement."""
        if self.op == "in":
            return labels.get(self.key) in self.values
        if self.op == "notin":
            return labels.get(self.key) not in self.values
        if self.op == "exists":
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector; calling it on an object tells whether the object's labels match."""

    requirements: tuple[Requirement, ...] = ()

    def __call__(self, obj: Mapping[str, Any]) -> bool:
        labels = _labels(obj)
        return all(req.matches(labels) for req in self.requirements)


EVERYTHING = LabelSelector()


def parse_label_selector(text: str | None) -> LabelSelector:
    """Compile a label selector; an empty selector matches everything."""
    if not text or not text.strip():
        return EVERYTHING
    return _parse_label_selector(text)


@functools.lru_cache(maxsize=1024)
def _parse_label_selector(text: str) -> LabelSelector:
    # Cached: the controllers and watchers send the same few selectors over and over. Errors are raised, and
    # lru_cache keeps no exceptions, so a bad selector is rejected every time.
    requirements: list[Requirement] = []
    for part in _split_top_level(text):
        if not part:
            raise bad_request(f"unable to parse requirement: found '', expected: identifier in selector {text!r}")
        requirements.append(_label_requirement(part, text))
    return LabelSelector(tuple(requirements))


def _check_key(key: str, whole: str) -> None:
    problem = label_key_error(key)
    if problem:
        raise bad_request(f"unable to parse requirement: invalid label key \"{key}\": {problem}")


def _label_requirement(part: str, whole: str) -> Requirement:
    if m := _SET_RE.match(part):
        key, op = m["key"], m["op"]
        _check_key(key, whole)
        values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
        if not values:
            raise bad_request(f"unable to parse requirement: for '{op}' operators, values set can't be empty")
        return Requirement(key, op, values)
    if m := _EQ_RE.match(part):
        key, op, value = m["key"], m["op"], m["value"]
        _check_key(key, whole)
        problem = label_value_error(value)
        if problem:
            raise bad_request(f"unable to parse requirement: invalid label value: \"{value}\": {problem}")
        return Requirement(key, "notin" if op == "!=" else "in", frozenset((value,)))
    if m := _EXISTS_RE.match(part):
        key = m["key"]
        _check_key(key, whole)
        return Requirement(key, "!exists" if m["neg"] else "exists")
    raise bad_request(f"unable to parse requirement: couldn't parse the selector string \"{whole}\"")


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string value of a dotted field path (missing → "")."""
    node: Any = obj
    for segment in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(segment)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector: (dotted path, "=" or "!=", value) requirements, all of which must hold."""

    requirements: tuple[tuple[str, str, str], ...] = ()

    def __call__(self, obj: Mapping[str, Any]) -> bool:
        for path, op, value in self.requirements:
            if (field_value(obj, path) == value) != (op == "="):
                return False
        return True

    def equals(self, path: str) -> str | None:
        """The value `path` must equal, if the selector pins it (lets the store look a name up directly)."""
        return next((value for p, op, value in self.requirements if p == path and op == "="), None)


def parse_field_selector(text: str | None, *, fields: Iterable[str] | None = None) -> FieldSelector:
    """Compile a field selector; `fields` limits the supported labels (None = any dotted path)."""
    if not text or not text.strip():
        return FieldSelector()
    return _parse_field_selector(text, tuple(fields) if fields is not None else None)


@functools.lru_cache(maxsize=1024)
def _parse_field_selector(text: str, fields: tuple[str, ...] | None) -> FieldSelector:
    requirements: list[tuple[str, str, str]] = []
    for part in (p.strip() for p in text.split(",")):
        m = re.match(r"^(?P<key>[^=!]+?)\s*(?P<op>==|=|!=)\s*(?P<value>.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        key, op, value = m["key"].strip(), m["op"], m["value"].strip()
        if fields is not None and key not in fields:
            raise bad_request(f'field label not supported: {key}')
        requirements.append((key, "!=" if op == "!=" else "=", value))
    return FieldSelector(tuple(requirements))


__all__ = ["EVERYTHING", "ApiError", "FieldSelector", "LabelSelector", "Predicate", "Requirement", "field_value", "label_key_error",
           "label_value_error", "parse_field_selector", "parse_label_selector"]
