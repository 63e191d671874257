"""The precision a reading was reported with, and what may be done to it.

A reading is shown as it was reported: 4.5 stays 4.5, 4.07 stays 4.07. A value converted to
another unit is computed once from the reported value and rounded once, to the significant
digits the report gave (57 umol/L is known to two digits, so 0.6447 mg/dL is 0.64) and never to
a coarser step than the report's own (converted_decimals); it is never rounded again. A mean
carries one decimal more than the finest of its readings; sums and counts are exact. The number
of decimals a stored value carries travels with it (`decimals` on the categorized rows and the
aggregates), so nothing has to guess it later.

The same rules are given twice: in Python (labs are converted row by row) and as SQL
expressions (vitals are converted set-based); tests hold the two to the same results.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

# A plain numeral as a report prints it: "4.50", "-0.3", "140", ".5", "1,234.5", "1.2e-05".
_NUMERAL = re.compile(r"[+-]?(?P<int>\d*)(?:\.(?P<frac>\d*))?(?:[eE](?P<exp>[+-]?\d+))?")


@dataclass(frozen=True)
class Precision:
    """How precisely a number was written: its significant digits and its decimals (negative
    when the last significant digit is left of the point, as in a conversion rounded to 90)."""

    significant: int
    decimals: int


def reported_precision(text: str | None, value: float) -> Precision:
    """The precision of a reading as printed in `text`; from the value's shortest form when the
    text is not a plain numeral (a JSON number, "<0.01")."""
    match = _NUMERAL.fullmatch(text.strip().replace(",", "")) if text else None
    if match is None or not (match["int"] or match["frac"]):
        shortest = repr(float(value)).removesuffix(".0")  # 140.0 was sent as 140
        match = _NUMERAL.fullmatch(shortest)
        assert match is not None  # a finite float's repr is always a numeral
    frac = match["frac"] or ""
    exponent = int(match["exp"] or 0)
    digits = ((match["int"] or "") + frac).lstrip("0")
    # Trailing zeros of a whole number ("140") count: never round below what the report gave.
    return Precision(significant=max(len(digits), 1), decimals=len(frac) - exponent)


def converted_decimals(reported_decimals: int, factor: float) -> int:
    """Decimals a value converted by `factor` keeps: the coarsest whose step is no larger than
    the report's own step, converted. That is the report's significant digits, plus one where
    the conversion carries into a new leading digit: 4.8 mmol/L cholesterol (a step of 0.1,
    3.9 mg/dL) is 186 mg/dL, not the 190 two digits would give, which 4.8 does not allow."""
    step = abs(factor) * 10.0**-reported_decimals
    # The small margin keeps exact powers of ten (0.001 /uL per 10*3/uL) from a float's noise.
    return math.ceil(-math.log10(step) - 1e-9)


def round_once(converted: float, reported_decimals: int, factor: float) -> tuple[float, int]:
    """A converted value rounded once to the decimals it keeps (see converted_decimals)."""
    decimals = converted_decimals(reported_decimals, factor)
    if not math.isfinite(converted):
        return converted, decimals
    # As PostgreSQL rounds a float8 (sql_round): its 15 digits, halves away from zero.
    exact = Decimal(f"{converted:.15g}").quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)
    return float(exact), decimals


def format_reading(value: float | None) -> str:
    """A stored reading written back as the number it is: the shortest decimal that is exactly
    this value, never rounded (4.07 -> "4.07", 140 -> "140.0", 0.00001 -> "0.00001")."""
    if value is None:
        return ""
    if not math.isfinite(value):
        return repr(float(value))
    text = format(Decimal(repr(float(value))), "f")
    return text if "." in text else f"{text}.0"


def mean_decimals(decimals: int | None) -> int | None:
    """Decimals of a mean: one more than its finest reading (none fewer than one)."""
    return None if decimals is None else max(decimals, 0) + 1


def format_mean(total: float, count: int, decimals: int | None) -> str:
    """sum / count at one decimal more than the readings (`decimals`, the finest of them)."""
    mean = total / count
    places = mean_decimals(decimals)
    if places is not None:
        mean = float(Decimal(f"{mean:.15g}").quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP))
    return format_reading(mean)


# ------------------------------------------------------------------------------------- in SQL


def sql_decimals(value: str) -> str:
    """SQL: the decimals of float8 `value` as PostgreSQL prints it (its shortest exact form,
    as Python's repr does); `1e-05` has 5, `1.5e+16` has -15."""
    text = f"lower(({value})::text)"
    mantissa = f"split_part({text}, 'e', 1)"
    exponent = f"COALESCE(NULLIF(split_part({text}, 'e', 2), '')::int, 0)"
    return f"(length(split_part({mantissa}, '.', 2)) - {exponent})"


def sql_converted_decimals(reported_decimals: str, factor: str) -> str:
    """SQL: converted_decimals of a value with `reported_decimals`, converted by `factor`."""
    return f"ceil(-log(abs({factor}) * 10.0 ^ (-({reported_decimals}))) - 1e-9)::int"


def sql_round(converted: str, decimals: str) -> str:
    """SQL: float8 `converted` rounded once to `decimals` (negative: left of the point)."""
    return f"round(({converted})::numeric, {decimals})::float8"
