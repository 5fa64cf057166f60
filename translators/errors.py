"""Errors raised by pure translation: the gateway maps them to HTTP in one place."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one input field; `path` is dotted, e.g. `replicas[1].resource.cpu`."""

    path: str
    message: str


@dataclass(slots=True)
class SpecError(Exception):
    """The request cannot become a job: always the client's fault (400)."""

    message: str
    fields: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True)
class NotTranslatable(Exception):
    """A cluster object that the gateway did not make, or that lost its Clever labels."""

    message: str

    def __str__(self) -> str:
        return self.message
