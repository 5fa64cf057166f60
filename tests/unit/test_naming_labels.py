"""Object names, namespaces, label values and selectors."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from translators.backends import MANAGED_SELECTOR, job_id_of, pod_selector
from translators.errors import SpecError
from translators.labels import LABEL_JOB_ID, LABEL_MANAGED_BY, label_value, owner_selector
from translators.naming import MAX_OBJECT_NAME_LENGTH, is_dns1035_label, namespace_for, object_name
from translators.spec import ClusterProfile

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@pytest.mark.parametrize(
    ("name", "job_id", "expected"),
    [
        ("tfserving-0", "12345678", "tfserving-0-12345678"),
        ("My_Job.v2", "abc123", "my-job-v2-abc123"),
        ("0day", "abc123", "job-0day-abc123"),
        ("训练", "abc123", "job-abc123"),
        ("---", "abc123", "job-abc123"),
    ],
)
def test_object_name_is_derived_from_name_and_id(name: str, job_id: str, expected: str) -> None:
    assert object_name(name, job_id) == expected


def test_long_or_unusual_ids_are_shortened_but_stay_distinct() -> None:
    first = object_name("job", "0f9e8d7c6b5a49388271605f4e3d2c1b")
    second = object_name("job", "0f9e8d7c6b5a49388271605f4e3d2c1c")
    assert first != second
    assert object_name("job", "ABC") != object_name("job", "abc")


@given(name=st.text(min_size=1, max_size=63), job_id=st.text(min_size=1, max_size=64))
def test_object_name_leaves_room_for_operator_suffixes(name: str, job_id: str) -> None:
    result = object_name(name, job_id)
    assert result == object_name(name, job_id)
    assert len(result) <= MAX_OBJECT_NAME_LENGTH
    assert is_dns1035_label(result)
    assert is_dns1035_label(f"{result}-evaluator-99999")


def test_namespace_for_maps_and_validates() -> None:
    profile = ClusterProfile(id="c1", namespace_map={"Clever": "clever-ns", "bad": "Not_Valid"})
    assert namespace_for("clever", profile) == "clever"
    assert namespace_for("Clever", profile) == "clever-ns"
    for partition in ("bad", "UPPER", "a_b", "", "x" * 64, "-lead"):
        with pytest.raises(SpecError) as caught:
            namespace_for(partition, profile)
        assert caught.value.fields[0].path == "partition"


@given(st.text(max_size=100))
def test_label_value_is_always_a_valid_label_value(value: str) -> None:
    result = label_value(value)
    assert len(result) <= 63 and LABEL_VALUE.match(result)


def test_label_value_keeps_valid_values_and_separates_sanitised_ones() -> None:
    assert label_value("admin") == "admin"
    assert label_value("alice@example.com") != label_value("alice_example.com")
    assert label_value("alice@example.com").startswith("alice_example.com-")


def test_selectors() -> None:
    assert MANAGED_SELECTOR == f"{LABEL_MANAGED_BY}=clever-gateway"
    assert pod_selector("12345678") == f"{MANAGED_SELECTOR},{LABEL_JOB_ID}=12345678"
    assert owner_selector("a@b") == f"{MANAGED_SELECTOR},clever.dev/owner={label_value('a@b')}"


def test_job_id_of_prefers_the_exact_annotation() -> None:
    assert job_id_of({"metadata": {"annotations": {"clever.dev/job-id": "A@1"},
                                   "labels": {LABEL_JOB_ID: label_value("A@1")}}}) == "A@1"
    assert job_id_of({"metadata": {"labels": {LABEL_JOB_ID: "abc"}}}) == "abc"
    assert job_id_of({"metadata": {"labels": ["odd"]}}) is None
    assert job_id_of({}) is None
