"""Label and field selectors with kube-apiserver syntax.

Contract: `parse_label_selector(text)` / `parse_field_selector(text, fields=...)` return a predicate over a
full object dict, or raise `ApiError` 400 BadRequest for bad syntax (or an unsupported field label).
Label operators: `=`, `==`, `!=`, `in (...)`, `notin (...)`, `key` (exists), `!key` (not exists).
Field operators: `=`, `==`, `!=`, with dotted paths into the object (`metadata.name`, `status.phase`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from kubesim.errors import ApiError, bad_request

Predicate = Callable[[dict[str, Any]], bool]

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


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def parse_label_selector(text: str | None) -> Predicate:
    """Compile a label selector; an empty selector matches everything."""
    if not text or not text.strip():
        return lambda obj: True
    requirements: list[Predicate] = []
    for part in _split_top_level(text):
        if not part:
            raise bad_request(f"unable to parse requirement: found '', expected: identifier in selector {text!r}")
        requirements.append(_label_requirement(part, text))
    return lambda obj: all(req(obj) for req in requirements)


def _check_key(key: str, whole: str) -> None:
    problem = label_key_error(key)
    if problem:
        raise bad_request(f"unable to parse requirement: invalid label key \"{key}\": {problem}")


def _label_requirement(part: str, whole: str) -> Predicate:
    if m := _SET_RE.match(part):
        key, op = m["key"], m["op"]
        _check_key(key, whole)
        values = {v.strip() for v in m["values"].split(",") if v.strip()}
        if not values:
            raise bad_request(f"unable to parse requirement: for '{op}' operators, values set can't be empty")
        if op == "in":
            return lambda obj: _labels(obj).get(key) in values
        return lambda obj: _labels(obj).get(key) not in values
    if m := _EQ_RE.match(part):
        key, op, value = m["key"], m["op"], m["value"]
        _check_key(key, whole)
        problem = label_value_error(value)
        if problem:
            raise bad_request(f"unable to parse requirement: invalid label value: \"{value}\": {problem}")
        if op == "!=":
            return lambda obj: _labels(obj).get(key) != value
        return lambda obj: _labels(obj).get(key) == value
    if m := _EXISTS_RE.match(part):
        key = m["key"]
        _check_key(key, whole)
        if m["neg"]:
            return lambda obj: key not in _labels(obj)
        return lambda obj: key in _labels(obj)
    raise bad_request(f"unable to parse requirement: couldn't parse the selector string \"{whole}\"")


def field_value(obj: dict[str, Any], path: str) -> str:
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


def parse_field_selector(text: str | None, *, fields: Iterable[str] | None = None) -> Predicate:
    """Compile a field selector; `fields` limits the supported labels (None = any dotted path)."""
    if not text or not text.strip():
        return lambda obj: True
    allowed = set(fields) if fields is not None else None
    requirements: list[Predicate] = []
    for part in (p.strip() for p in text.split(",")):
        m = re.match(r"^(?P<key>[^=!]+?)\s*(?P<op>==|=|!=)\s*(?P<value>.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        key, op, value = m["key"].strip(), m["op"], m["value"].strip()
        if allowed is not None and key not in allowed:
            raise bad_request(f'field label not supported: {key}')
        requirements.append(_field_requirement(key, op, value))
    return lambda obj: all(req(obj) for req in requirements)


def _field_requirement(key: str, op: str, value: str) -> Predicate:
    if op == "!=":
        return lambda obj: field_value(obj, key) != value
    return lambda obj: field_value(obj, key) == value


__all__ = ["ApiError", "Predicate", "field_value", "label_key_error", "label_value_error",
           "parse_field_selector", "parse_label_selector"]
