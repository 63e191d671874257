from __future__ import annotations

import math

import pytest

from tasks.labs.catalog import load_catalog
from tasks.labs.normalize import (
    FLAG_INVALID_VALUE,
    FLAG_OK,
    FLAG_UNKNOWN_UNIT,
    analyze_name,
    convert,
    normalize_text,
    normalize_unit,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Haemoglobin", "hemoglobin"),
        ("Total Leucocyte Count", "total leukocyte count"),
        ("Oestradiol", "estradiol"),
        ("T.S.H.", "tsh"),
        ("S.G.P.T.", "sgpt"),
        ("Creatinine by Jaffe's kinetic method", "creatinine"),
        ("Glycosylated Haemoglobin", "glycated hemoglobin"),
        ("S. Creatinine", "serum creatinine"),
        ("Sr. Iron", "serum iron"),
        ("CK-MB", "ck mb"),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_analyze_name_splits_brackets_and_specimen() -> None:
    forms = analyze_name("Creatinine (Urine)")
    assert forms.core == "creatinine"
    assert forms.specimen_hint == "urine"
    forms = analyze_name("SGPT (ALT)")
    assert forms.outside == "sgpt"
    assert forms.bracketed == ("alt",)
    assert analyze_name("S. Creatinine").specimen_hint == "serum"
    assert analyze_name("Serum Bilirubin (Total)").core == "bilirubin total"


def test_a_lone_specimen_word_stays_the_name() -> None:
    # "Blood" on a urinalysis report is the test itself, not a specimen qualifier.
    assert analyze_name("Blood").core == "blood"
    assert analyze_name("Urine Blood").core == "blood"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("mg/dl", "mg/dL"),
        ("mg %", "mg/dL"),
        ("gm/dl", "g/dL"),
        ("g%", "g/dL"),
        ("mcg/dL", "ug/dL"),
        ("µg/dL", "ug/dL"),
        ("µIU/mL", "u[IU]/mL"),
        ("uIU/ml", "u[IU]/mL"),
        ("x10^3/µL", "10*3/uL"),
        ("10^9/L", "10*3/uL"),
        ("thou/uL", "10*3/uL"),
        ("cells/cumm", "/uL"),
        ("/cumm", "/uL"),
        ("cumm", "/uL"),
        ("lakh/cumm", "10*5/uL"),
        ("million/cumm", "10*6/uL"),
        ("10^12/L", "10*6/uL"),
        ("IU/L", "U/L"),
        ("mEq/L", "meq/L"),
        ("mm/1st hr", "mm/h"),
        ("secs", "s"),
        ("/HPF", "/[HPF]"),
        ("mL/min/1.73m²", "mL/min/{1.73_m2}"),
        ("%", "%"),
        ("", ""),
    ],
)
def test_normalize_unit_spellings(raw: str, canonical: str) -> None:
    unit = normalize_unit(raw)
    assert unit.known
    assert unit.canonical == canonical


def test_unknown_unit_is_kept_as_given() -> None:
    unit = normalize_unit(" furlongs/fortnight ")
    assert not unit.known
    assert unit.canonical == "furlongs/fortnight"


def test_glucose_mmol_to_mg_dl() -> None:
    value, unit, flag = convert("2345-7", 5.5, "mmol/L")
    assert flag == FLAG_OK
    assert unit == "mg/dL"
    assert value == pytest.approx(99.1, abs=0.05)


def test_hba1c_ifcc_and_ngsp_round_trip() -> None:
    percent, unit, flag = convert("4548-4", 48, "mmol/mol")
    assert (unit, flag) == ("%", FLAG_OK)
    assert percent == pytest.approx(6.5, abs=0.05)
    ifcc, unit, flag = convert("59261-8", 6.5, "%")
    assert (unit, flag) == ("mmol/mol", FLAG_OK)
    assert ifcc == pytest.approx(48, abs=0.5)


@pytest.mark.parametrize(
    ("code", "value", "unit", "expected", "canonical"),
    [
        ("2160-0", 88.4, "µmol/L", 1.0, "mg/dL"),
        ("2093-3", 5.0, "mmol/L", 193.35, "mg/dL"),
        ("2571-8", 1.7, "mmol/l", 150.6, "mg/dL"),
        ("6690-2", 7500, "cells/cumm", 7.5, "10*3/uL"),
        ("777-3", 2.5, "lakh/cumm", 250, "10*3/uL"),
        ("789-8", 4.8, "million/cumm", 4.8, "10*6/uL"),
        ("718-7", 135, "g/L", 13.5, "g/dL"),
        ("1975-2", 17.1, "umol/L", 1.0, "mg/dL"),
        ("62292-8", 75, "nmol/L", 30.0, "ng/mL"),
        ("3016-3", 2.1, "µIU/mL", 2.1, "m[IU]/L"),
        ("9318-7", 3.0, "mg/mmol", 26.5, "mg/g"),
    ],
)
def test_analyte_specific_conversions(
    code: str, value: float, unit: str, expected: float, canonical: str
) -> None:
    converted, canonical_unit, flag = convert(code, value, unit)
    assert flag == FLAG_OK
    assert canonical_unit == canonical
    assert converted == pytest.approx(expected, rel=0.01)


def test_unknown_or_foreign_unit_is_flagged_not_converted() -> None:
    assert convert("2345-7", 99.0, "banana/L") == (99.0, "banana/L", FLAG_UNKNOWN_UNIT)
    # A real unit that does not fit the analyte is just as inconvertible.
    assert convert("2345-7", 99.0, "fL") == (99.0, "fL", FLAG_UNKNOWN_UNIT)
    assert convert("2345-7", 99.0, "") == (99.0, "", FLAG_UNKNOWN_UNIT)


def test_unitless_tests_accept_no_unit() -> None:
    assert convert("6301-6", 1.1, "") == (1.1, "{INR}", FLAG_OK)


def test_non_finite_value_is_flagged() -> None:
    value, _, flag = convert(load_catalog().by_code["2345-7"], math.inf, "mg/dL")
    assert flag == FLAG_INVALID_VALUE
    assert math.isinf(value)


@pytest.mark.parametrize(
    ("value", "unit"), [(0.52, "ug/mL FEU"), (520, "ng/mL FEU"), (0.52, "mg/L FEU")]
)
def test_d_dimer_feu_units_convert(value: float, unit: str) -> None:
    assert convert("48065-7", value, unit) == (0.52, "ug/mL{FEU}", "ok")


def test_converted_values_carry_the_catalogs_precision_not_more() -> None:
    # 2.06 mmol/L glucose is 37.11296 mg/dL: reports give glucose in whole mg/dL, and three
    # significant figures are kept.
    assert convert("2345-7", 2.06, "mmol/L")[0] == 37.1
    assert convert("2160-0", 88.4, "umol/L")[0] == 1.0
    # A value already in the canonical unit keeps the report's own precision.
    assert convert("2345-7", 37.1232, "mg/dL")[0] == 37.1232
    # Small values keep three significant figures rather than rounding to zero.
    assert convert("2842-3", 0.1, "mIU/L")[0] == 0.00472
