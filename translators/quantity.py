"""Kubernetes resource quantities: parse, compare and canonicalise (apimachinery's grammar).

Grammar (k8s.io/apimachinery/pkg/api/resource/quantity.go)::

    <quantity>  ::= <sign><number><suffix>
    <number>    ::= <digits> | <digits>.<digits>? | .<digits>
    <suffix>    ::= <binarySI> | <decimalSI> | <decimalExponent>
    <binarySI>  ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI> ::= n | u | m | "" | k | M | G | T | P | E
    <decimalExponent> ::= e<signed integer> | E<signed integer>

Canonical form, chosen so that a Clever spec round-trips unchanged: keep the user's suffix and
only normalise the number -- drop a leading `+`, leading zeros and trailing fractional zeros
(`"1.000"` -> `"1"`, `"0.50"` -> `"0.5"`, `".5"` -> `"0.5"`, `"2048Mi"` stays `"2048Mi"`,
`"1e+03"` -> `"1e3"`). We deliberately do not rewrite to Kubernetes' own serialisation
(`"0.5"` -> `"500m"`): the user would not recognise their input, and CRD objects are stored as sent.
JSON numbers are accepted too (`1` -> `"1"`, `0.5` -> `"0.5"`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

_QUANTITY_RE = re.compile(
    r"^(?P<sign>[+-])?(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)

# apimachinery keeps values in int64 scaled units; anything beyond that is not a usable request.
_MAX_VALUE = Decimal(2**63 - 1)


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity."""


@dataclass(frozen=True, slots=True)
class Quantity:
    """A parsed quantity: `value` is exact (base units, e.g. cores or bytes), `text` canonical."""

    value: Decimal
    text: str

    def __str__(self) -> str:
        return self.text


def parse_quantity(raw: object) -> Quantity:
    """Parse a quantity given as a string or JSON number; raise QuantityError if malformed."""
    if isinstance(raw, bool) or raw is None:
        raise QuantityError(f"not a quantity: {raw!r}")
    if isinstance(raw, int):
        text = str(raw)
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            raise QuantityError(f"not a quantity: {raw!r}")
        text = _plain_decimal(Decimal(repr(raw)))
    elif isinstance(raw, str):
        text = raw.strip()
    else:
        raise QuantityError(f"not a quantity: expected a string or number, got {type(raw).__name__}")
    match = _QUANTITY_RE.match(text)
    if not match or not (match["int"] or match["frac"]):
        raise QuantityError(f"not a Kubernetes quantity: {raw!r}")
    negative = match["sign"] == "-"
    int_part = match["int"].lstrip("0") or "0"
    frac_part = (match["frac"] or "").rstrip("0")
    suffix = match["suffix"] or ""
    number = int_part + (f".{frac_part}" if frac_part else "")
    try:
        magnitude = Decimal(number)
        if suffix in _BINARY:
            value = magnitude * _BINARY[suffix]
        elif len(suffix) > 1 and suffix[0] in ("e", "E"):
            exponent = int(suffix[1:])
            if abs(exponent) > 64:
                raise QuantityError(f"quantity exponent out of range: {raw!r}")
            value = magnitude.scaleb(exponent)
            suffix = f"{suffix[0]}{exponent}"
        else:
            value = magnitude.scaleb(_DECIMAL[suffix])
    except InvalidOperation as e:
        raise QuantityError(f"not a Kubernetes quantity: {raw!r}") from e
    if value > _MAX_VALUE:
        raise QuantityError(f"quantity too large: {raw!r}")
    if negative and magnitude != 0:
        value = -value
        number = "-" + number
    return Quantity(value=value, text=number + suffix)


def canonical_quantity(raw: object) -> str:
    """The canonical text of a quantity (see module docstring)."""
    return parse_quantity(raw).text


def _plain_decimal(value: Decimal) -> str:
    """A decimal without exponent notation, e.g. Decimal('1E+1') -> '10'."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
