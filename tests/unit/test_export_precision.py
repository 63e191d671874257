"""Exports show a reading at the precision its kind carries; counts and sums stay exact."""

from __future__ import annotations

from tasks.export import _number, _reading, reading_decimals


def test_a_converted_value_loses_its_false_precision() -> None:
    glucose = reading_decimals("2339-0")  # blood glucose, mg/dL: whole numbers
    assert glucose == 0
    assert _reading(37.1232, glucose) == "37.0"
    assert _reading(37.1232, glucose + 1) == "37.1"  # an average shows one digit more
    assert reading_decimals("29463-7") == 2  # weight in kg, converted from lb
    assert _reading(150 * 0.45359237, 2) == "68.04"


def test_without_a_stated_precision_four_significant_digits() -> None:
    assert _reading(37.1232, None) == "37.12"
    assert _reading(0.004567, None) == "0.004567"
    assert _reading(7400.0, None) == "7400.0"
    assert _reading(123456.7, None) == "123457.0"
    assert _reading(0.0, None) == "0.0"
    assert _reading(None, None) == ""


def test_sums_are_exact() -> None:
    assert _number(0.1 + 0.2) == "0.3"
    assert _number(147.1232) == "147.1232"
