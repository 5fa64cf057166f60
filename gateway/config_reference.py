"""The configuration reference (docs/configuration.md), generated from the configuration models.

Every key's name, type, default and meaning come from `gateway.config.Settings` and the models under it
(their field docstrings), so the reference cannot drift from the code: `clever-gateway config-reference`
prints it, and a test fails when docs/configuration.md differs from what it prints.
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticUndefined

from gateway.config import Settings

_HEADER = """# Configuration reference

One YAML file (`clever-gateway serve --config FILE`, or `$CLEVER_GATEWAY_CONFIG`); every key can be
overridden by an environment variable `CLEVER_GATEWAY__<KEY>__<KEY>...` (list items by index, e.g.
`CLEVER_GATEWAY__CLUSTERS__0__TOKEN_FILE`; values are read as YAML scalars). A bad file fails at start
with the key path in the message; `clever-gateway serve --check` validates a file and that every file it
names is readable. `deploy/config.example.yaml` is a commented example.

This page is generated from the configuration models (`clever-gateway config-reference`); do not edit it
by hand.
"""


def config_reference() -> str:
    """The whole reference as Markdown."""
    sections: list[str] = [_HEADER]
    _document(Settings, "", sections, seen=set())
    return "\n".join(sections).rstrip() + "\n"


def _document(model: type[BaseModel], path: str, sections: list[str], *, seen: set[str]) -> None:
    title = path.rstrip(".") or "(top level)"
    if title in seen:
        return
    seen.add(title)
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    nested: list[tuple[type[BaseModel], str]] = []
    for name, field in model.model_fields.items():
        key = field.alias or to_camel(name)
        annotation = field.annotation
        inner, suffix = _container(annotation)
        rows.append(f"| `{key}` | {_type_name(annotation)} | {_default(field)} | "
                    f"{_one_line(field.description or '')} |")
        if inner is not None:
            nested.append((inner, f"{path}{key}{suffix}"))
    doc = _one_line((model.__doc__ or "").strip())
    sections.append(f"## `{title}`\n\n{doc}\n\n" + "\n".join(rows) + "\n")
    for inner, inner_path in nested:
        _document(inner, inner_path + ".", sections, seen=seen)


def _container(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The model a field holds (directly, in a list, in a dict, or optionally) and the path suffix."""
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    if origin in (list, tuple):
        inner, _ = _container(get_args(annotation)[0])
        return inner, "[]"
    if origin is dict:
        inner, _ = _container(get_args(annotation)[1])
        return inner, "{}"
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            inner, suffix = _container(arg)
            if inner is not None:
                return inner, suffix
    return None, ""


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation) if a is not type(None)) + \
            (" or null" if type(None) in get_args(annotation) else "")
    if origin in (list, tuple):
        return f"list of {_type_name(get_args(annotation)[0])}"
    if origin is dict:
        key, value = get_args(annotation)
        return f"map {_type_name(key)} → {_type_name(value)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def _default(field: Any) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
        if isinstance(value, BaseModel):
            return "(section defaults)"
        return f"`{value!r}`" if value not in ([], {}) else "empty"
    if field.default is PydanticUndefined:
        return "**required**"
    if field.default is None:
        return "none"
    return f"`{field.default!r}`" if not isinstance(field.default, str) else f"`{field.default}`"


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
