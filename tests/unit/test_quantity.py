"""Kubernetes quantity grammar (apimachinery) and the canonical form we keep."""

from __future__ import annotations

from decimal import Decimal

import pytest

from translators.quantity import QuantityError, canonical_quantity, parse_quantity


@pytest.mark.parametrize(
    ("raw", "canonical", "value"),
    [
        ("1", "1", Decimal(1)),
        ("1.000", "1", Decimal(1)),
        ("+1", "1", Decimal(1)),
        ("01", "1", Decimal(1)),
        ("0.5", "0.5", Decimal("0.5")),
        ("0.50", "0.5", Decimal("0.5")),
        (".5", "0.5", Decimal("0.5")),
        ("1.", "1", Decimal(1)),
        ("500m", "500m", Decimal("0.5")),
        ("100u", "100u", Decimal("0.0001")),
        ("5n", "5n", Decimal("0.000000005")),
        ("2k", "2k", Decimal(2000)),
        ("2048Mi", "2048Mi", Decimal(2048 * 2**20)),
        ("1Gi", "1Gi", Decimal(2**30)),
        ("1.5Gi", "1.5Gi", Decimal(3 * 2**29)),
        ("1Ki", "1Ki", Decimal(1024)),
        ("1Ti", "1Ti", Decimal(2**40)),
        ("1Pi", "1Pi", Decimal(2**50)),
        ("1Ei", "1Ei", Decimal(2**60)),
        ("3M", "3M", Decimal(3_000_000)),
        ("3G", "3G", Decimal(3 * 10**9)),
        ("3T", "3T", Decimal(3 * 10**12)),
        ("3P", "3P", Decimal(3 * 10**15)),
        ("3E", "3E", Decimal(3 * 10**18)),
        ("1e3", "1e3", Decimal(1000)),
        ("1E3", "1E3", Decimal(1000)),
        ("1e+03", "1e3", Decimal(1000)),
        ("12e-3", "12e-3", Decimal("0.012")),
        ("0", "0", Decimal(0)),
        ("-1", "-1", Decimal(-1)),
        (" 2 ", "2", Decimal(2)),
        (4, "4", Decimal(4)),
        (0.25, "0.25", Decimal("0.25")),
        (2.0, "2", Decimal(2)),
    ],
)
def test_valid_quantities_parse_to_value_and_canonical_text(raw: object, canonical: str, value: Decimal) -> None:
    parsed = parse_quantity(raw)
    assert parsed.text == canonical
    assert parsed.value == value
    assert canonical_quantity(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    ["", "abc", "1x", "1 Gi", "Gi", "1gi", "1KI", "1mi", "1e", "1e1.5", "1ee1", "--1", "1..2", ".",
     "1.2.3", "0x10", "1,5", "∞", "1e999", "99999999999999999999999Ei", True, None, [1], {"v": 1},
     float("nan"), float("inf")],
)
def test_invalid_quantities_are_rejected(raw: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(raw)


def test_canonical_form_is_a_fixed_point() -> None:
    for raw in ["1.000", "0.50", "+2Gi", "007k", "1e+03", ".5m"]:
        once = canonical_quantity(raw)
        assert canonical_quantity(once) == once
        assert parse_quantity(once).value == parse_quantity(raw).value
