"""Scenario strings: what the simulated kubelet makes a job's pods go through.

A scenario is chosen per job: `Controllers.set_job_scenario(ns, name, s)` wins, else the job's
annotation `kubesim.clever.dev/scenario`, else the cluster default (`set_default_scenario`,
initially "succeed"). The scenario is read again on every reconcile, so changing it (for example
from `hold` to `succeed`) moves pods that are already running.

Grammar (S are simulated seconds, float; real time = S * time_scale; N are integers)::

    scenario   := name [":" param ("," param)*]
    param      := key "=" value
    succeed            [:after=S]            S default 5    run S, then exit 0 (reason Completed)
    fail               [:exit=N][,after=S]   N default 1, S default 3
                                             run S, then exit N (reason Error)
    hold                                     run until the scenario changes
    unschedulable                            stay Pending: PodScheduled=False/Unschedulable and a
                                             FailedScheduling Warning event
    image-pull-backoff                       ErrImagePull, then ImagePullBackOff (events Failed, BackOff)
    oomkilled          [:after=S]            S default 2; exit 137, reason OOMKilled
    evicted            [:after=S]            S default 2; the kubelet evicts the pod (memory pressure):
                                             pod Failed with reason Evicted whatever its
                                             restartPolicy, Warning event Evicted (Volcano: PodEvicted)
    crashloop          [:restarts=N][,exit=N][,after=S]
                                             restarts default 3, exit default 1, after default 1:
                                             the container crashes `restarts` times (the kubelet
                                             restarts it in place with CrashLoopBackOff in between
                                             when the pod restartPolicy is OnFailure/Always), then
                                             runs as `succeed`. With restartPolicy Never the first
                                             crash fails the pod.
    slow-start         [:delay=S][,after=S]  delay default 30: ContainerCreating for `delay`, then
                                             as succeed (after default 5)

Whitespace around names, keys and values is ignored; names and keys are case-insensitive.
Every pod gets scheduled 0.5 simulated seconds after creation and its containers start 1 simulated
second later, unless the scenario says otherwise. In a TFJob, PS replicas serve: they keep running
through `succeed`/`fail`/`oomkilled`/`crashloop` (as real parameter servers do; `evicted` hits them too) until the operator
deletes them; every other pod (and every Volcano pod) follows the scenario.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCENARIO_ANNOTATION = "kubesim.clever.dev/scenario"

# name -> {param: default}; the order of the defaults is the documented order
_GRAMMAR: dict[str, dict[str, float]] = {
    "succeed": {"after": 5.0},
    "fail": {"exit": 1, "after": 3.0},
    "hold": {},
    "unschedulable": {},
    "image-pull-backoff": {},
    "oomkilled": {"after": 2.0},
    "evicted": {"after": 2.0},
    "crashloop": {"restarts": 3, "exit": 1, "after": 1.0},
    "slow-start": {"delay": 30.0, "after": 5.0},
}
_INTEGER_PARAMS = frozenset({"exit", "restarts"})

SCENARIO_NAMES: tuple[str, ...] = tuple(_GRAMMAR)


class ScenarioError(ValueError):
    """A scenario string does not follow the grammar."""


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario: its name and every parameter with defaults filled in."""

    name: str
    after: float = 0.0
    exit_code: int = 0
    restarts: int = 0
    delay: float = 0.0
    text: str = ""

    @property
    def terminates(self) -> bool:
        """True when the main container eventually exits on its own."""
        return self.name in ("succeed", "fail", "oomkilled", "evicted", "crashloop", "slow-start")


def parse_scenario(text: str) -> Scenario:
    """Parse a scenario string; ScenarioError says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ScenarioError("empty scenario; expected one of " + ", ".join(SCENARIO_NAMES))
    name, _, rest = text.strip().partition(":")
    name = name.strip().lower()
    if name not in _GRAMMAR:
        raise ScenarioError(f"unknown scenario {name!r}; expected one of " + ", ".join(SCENARIO_NAMES))
    allowed = _GRAMMAR[name]
    values: dict[str, float] = dict(allowed)
    if rest.strip():
        for part in rest.split(","):
            key, eq, raw = part.partition("=")
            key = key.strip().lower()
            if not eq or key not in allowed:
                params = ", ".join(allowed) or "none"
                raise ScenarioError(f"scenario {name!r}: bad parameter {part.strip()!r} (allowed: {params})")
            values[key] = _number(name, key, raw.strip())
    elif rest or text.strip().endswith(":"):
        raise ScenarioError(f"scenario {name!r}: ':' must be followed by key=value parameters")
    return Scenario(
        name=name,
        after=float(values.get("after", 0.0)),
        exit_code=int(values.get("exit", 0)),
        restarts=int(values.get("restarts", 0)),
        delay=float(values.get("delay", 0.0)),
        text=text.strip(),
    )


def _number(name: str, key: str, raw: str) -> float:
    try:
        value = int(raw) if key in _INTEGER_PARAMS else float(raw)
    except ValueError as e:
        raise ScenarioError(f"scenario {name!r}: {key}={raw!r} is not a number") from e
    if value < 0 or math.isnan(value):
        raise ScenarioError(f"scenario {name!r}: {key} must be >= 0")
    if key == "exit" and value > 255:
        raise ScenarioError(f"scenario {name!r}: exit must be 0..255")
    return value
