from __future__ import annotations

import math
from dataclasses import astuple

import pytest

from tasks.labs.catalog import load_catalog
from tasks.labs.normalize import (
    FLAG_INVALID_VALUE,
    FLAG_OK,
    FLAG_UNKNOWN_UNIT,
    ConvertedReading,
    convert,
    convert_reading,
    normalize_unit,
)
from tasks.labs.parse import analyze_name, normalize_text


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
        # A multiplier's "cells" names what is counted.
        ("1000 cells/uL", "10*3/uL"),
        ("1000 cell/uL", "10*3/uL"),
        ("10^9 cells/L", "10*3/uL"),
        ("x10^6 cells/uL", "10*6/uL"),
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
    value, unit, flag, _ = astuple(convert_reading("2345-7", 5.5, "mmol/L", "5.50"))
    assert flag == FLAG_OK
    assert unit == "mg/dL"
    assert value == 99.1


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
        ("2093-3", 5.17, "mmol/L", 199.9, "mg/dL"),
        ("2571-8", 1.7, "mmol/l", 150.6, "mg/dL"),
        ("6690-2", 7500, "cells/cumm", 7.5, "10*3/uL"),
        ("777-3", 2.5, "lakh/cumm", 250, "10*3/uL"),
        ("789-8", 4.8, "million/cumm", 4.8, "10*6/uL"),
        ("718-7", 135, "g/L", 13.5, "g/dL"),
        ("1975-2", 17.1, "umol/L", 1.0, "mg/dL"),
        ("62292-8", 75, "nmol/L", 30.0, "ng/mL"),
        ("3016-3", 2.1, "µIU/mL", 2.1, "m[IU]/L"),
        ("9318-7", 3.05, "mg/mmol", 26.96, "mg/g"),
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


def test_a_conversion_is_rounded_once_to_the_reports_significant_digits() -> None:
    # 57 umol/L creatinine is known to two digits: 0.6447 mg/dL is 0.64, not 0.645 nor 0.65.
    assert convert_reading("2160-0", 57.0, "umol/L", "57") == ConvertedReading(
        0.64, "mg/dL", FLAG_OK, 2
    )
    assert convert("2345-7", 2.06, "mmol/L")[0] == 37.1  # three digits: 37.11296 -> 37.1
    assert convert("2160-0", 88.4, "umol/L")[0] == 1.0  # 1.00
    assert convert("2842-3", 0.1, "mIU/L")[0] == 0.005  # one digit, never rounded to 0
    # Whole-number conversions may round left of the point: 5 mmol/L glucose is 90 mg/dL.
    assert convert_reading("2345-7", 5.0, "mmol/L", "5").decimals == -1
    # Trailing zeros the report printed are significant: 5.00 mmol/L is 90.1 mg/dL.
    assert convert_reading("2345-7", 5.0, "mmol/L", "5.00") == ConvertedReading(
        90.1, "mg/dL", FLAG_OK, 1
    )


def test_a_value_in_the_canonical_unit_keeps_the_reports_precision() -> None:
    assert convert("2345-7", 37.1232, "mg/dL")[0] == 37.1232
    assert convert_reading("2823-3", 4.5, "mmol/L", "4.50") == ConvertedReading(
        4.5, "meq/L", FLAG_OK, 2
    )
