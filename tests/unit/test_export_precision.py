"""What tasks.precision promises: readings as reported, conversions rounded once to the
report's significant digits, means one decimal finer than their readings, sums exact."""

from __future__ import annotations

import pytest

from tasks.export import _number
from tasks.precision import (
    Precision,
    converted_decimals,
    format_mean,
    format_reading,
    reported_precision,
    round_once,
)


@pytest.mark.parametrize(
    ("text", "significant", "decimals"),
    [
        ("4.5", 2, 1),
        ("4.50", 3, 2),
        ("4.07", 3, 2),
        ("57", 2, 0),
        ("140", 3, 0),  # a whole number's zeros count: never round below the report
        ("0.0042", 2, 4),
        ("1,234.5", 5, 1),
        ("1.2e-05", 2, 6),
    ],
)
def test_the_precision_a_report_printed(text: str, significant: int, decimals: int) -> None:
    value = float(text.replace(",", ""))
    assert reported_precision(text, value) == Precision(significant, decimals)


def test_without_a_numeral_the_values_shortest_form_counts() -> None:
    assert reported_precision(None, 140.0) == Precision(3, 0)  # JSON 140 arrives as 140.0
    assert reported_precision("<0.01", 0.01) == Precision(1, 2)


def test_a_reading_is_written_exactly_as_stored() -> None:
    assert [format_reading(v) for v in (4.5, 4.07, 33.3, 0.724, 92.8, 140.0)] == [
        "4.5", "4.07", "33.3", "0.724", "92.8", "140.0",
    ]  # fmt: skip
    assert format_reading(0.00001) == "0.00001"  # never in exponent notation
    assert format_reading(None) == ""


def test_a_conversion_is_rounded_once_to_the_reports_digits() -> None:
    assert round_once(57 * 0.01131, 0, 0.01131) == (0.64, 2)  # creatinine 57 umol/L in mg/dL
    assert round_once(5 * 18.016, 0, 18.016) == (90.0, -1)  # glucose "5" mmol/L: one digit
    assert round_once(0.0, 1, 18.016) == (0.0, 0)
    # Never coarser than the report: 4.8 mmol/L cholesterol allows 183.7-187.5 mg/dL, so it is
    # 186 (two digits would say 190); 33.3 mmol/mol HbA1c is 5.198 %, a step of 0.009 %.
    assert round_once(4.8 * 38.67, 1, 38.67) == (186.0, 0)
    assert round_once(33.3 * 0.09148 + 2.152, 1, 0.09148) == (5.198, 3)
    assert [converted_decimals(0, f) for f in (0.001, 0.1, 10.0, 1000.0)] == [3, 1, -1, -3]


def test_a_mean_carries_one_decimal_more_than_its_finest_reading() -> None:
    assert format_mean(4.5 + 4.6 + 4.6, 3, 1) == "4.57"
    assert format_mean(140 + 141, 2, 0) == "140.5"
    assert format_mean(90 + 100, 2, -1) == "95.0"  # never fewer than one decimal
    assert format_mean(4.5 + 4.07, 2, 2) == "4.285"


def test_sums_are_exact() -> None:
    assert _number(0.1 + 0.2) == "0.3"
    assert _number(147.1232) == "147.1232"
