"""Scenario grammar: defaults, parameters, and the errors malformed strings get."""

from __future__ import annotations

import pytest

from kubesim.controllers.scenarios import SCENARIO_NAMES, Scenario, ScenarioError, parse_scenario


@pytest.mark.parametrize(("text", "expected"), [
    ("succeed", Scenario("succeed", after=5.0, text="succeed")),
    ("succeed:after=0.5", Scenario("succeed", after=0.5, text="succeed:after=0.5")),
    ("fail", Scenario("fail", after=3.0, exit_code=1, text="fail")),
    ("fail:exit=3", Scenario("fail", after=3.0, exit_code=3, text="fail:exit=3")),
    ("fail:exit=2,after=1", Scenario("fail", after=1.0, exit_code=2, text="fail:exit=2,after=1")),
    ("hold", Scenario("hold", text="hold")),
    ("unschedulable", Scenario("unschedulable", text="unschedulable")),
    ("image-pull-backoff", Scenario("image-pull-backoff", text="image-pull-backoff")),
    ("oomkilled", Scenario("oomkilled", after=2.0, text="oomkilled")),
    ("evicted:after=1", Scenario("evicted", after=1.0, text="evicted:after=1")),
    ("crashloop", Scenario("crashloop", after=1.0, exit_code=1, restarts=3, text="crashloop")),
    ("crashloop:restarts=5", Scenario("crashloop", after=1.0, exit_code=1, restarts=5, text="crashloop:restarts=5")),
    ("slow-start", Scenario("slow-start", after=5.0, delay=30.0, text="slow-start")),
    ("slow-start:delay=2", Scenario("slow-start", after=5.0, delay=2.0, text="slow-start:delay=2")),
    (" Fail : EXIT = 4 ", Scenario("fail", after=3.0, exit_code=4, text="Fail : EXIT = 4")),
])
def test_parse_fills_defaults_and_parameters(text: str, expected: Scenario) -> None:
    assert parse_scenario(text) == expected


@pytest.mark.parametrize(("text", "needle"), [
    ("", "empty scenario"),
    ("   ", "empty scenario"),
    ("explode", "unknown scenario 'explode'"),
    ("succeed:exit=1", "bad parameter 'exit=1'"),
    ("hold:after=1", "allowed: none"),
    ("fail:exit", "bad parameter 'exit'"),
    ("fail:exit=x", "exit='x' is not a number"),
    ("fail:exit=1.5", "is not a number"),
    ("fail:exit=300", "exit must be 0..255"),
    ("succeed:after=-1", "after must be >= 0"),
    ("succeed:after=nan", "after must be >= 0"),
    ("succeed:", "must be followed by key=value"),
])
def test_malformed_scenarios_are_refused_with_a_reason(text: str, needle: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text)
    assert needle in str(info.value)


def test_scenario_error_is_a_value_error() -> None:
    assert issubclass(ScenarioError, ValueError)


def test_every_documented_name_parses_and_only_running_outcomes_terminate() -> None:
    terminating = {name for name in SCENARIO_NAMES if parse_scenario(name).terminates}
    assert terminating == {"succeed", "fail", "oomkilled", "evicted", "crashloop", "slow-start"}
    assert set(SCENARIO_NAMES) - terminating == {"hold", "unschedulable", "image-pull-backoff"}
