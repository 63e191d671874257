"""The checks that accept or refuse a model's proposal come from the catalog, not the model."""

from __future__ import annotations

import pytest

from tasks.labs.catalog import load_catalog
from tasks.labs.matcher import AliasMatcher, CombinedMatcher, LabQuery
from tasks.labs.normalize import convert_reading
from tasks.labs.verify import AnalyteCheck, fold, phrases, tokens
from tasks.settings import Settings


@pytest.fixture(scope="module")
def check() -> AnalyteCheck:
    return AnalyteCheck.build(load_catalog())


@pytest.mark.parametrize(
    ("name", "code", "agrees"),
    [
        ("Total Thyroxine (T-4)", "3026-2", True),
        ("Free Thyroxine (T4)", "3026-2", False),  # a phrase and a word name free T4
        ("Dilantin (Phenytoin)", "3968-5", True),
        ("Vitamin B6", "2284-8", False),  # the model's neighbour, folate (B9)
        ("Procalcitonin", "2842-3", False),  # prolactin resembles it, and is not it
        ("Alpha-1-antitrypsin", "1825-9", True),
        ("β2-microglobulin", "1952-1", True),
        ("Haemoglobin", "718-7", True),
    ],
)
def test_a_proposal_is_accepted_only_when_the_name_names_the_component(
    check: AnalyteCheck, name: str, code: str, agrees: bool
) -> None:
    assert check.agrees(name, code) is agrees


def test_greek_letters_and_british_spellings_fold() -> None:
    assert fold("β2-Microglobulin") == "beta 2-microglobulin"
    assert tokens("Haemoglobin γ-GT") == ("hemoglobin", "gamma", "gt")
    assert tokens("T-4") == ("t4",)
    assert phrases("Folic Acid/Folate") == [
        frozenset({"folic", "acid", "folate"}),
        frozenset({"folic", "acid"}),
        frozenset({"folate"}),
    ]


def test_the_model_is_on_except_in_a_lambda() -> None:
    assert Settings(lab_model=None).lab_model_enabled
    assert not Settings(lab_model=None, lambda_function_name="labs-step").lab_model_enabled
    assert not Settings(lab_model=False).lab_model_enabled


@pytest.mark.parametrize(
    ("name", "unit", "code"),
    [
        ("Creatinine", "g/24 h", "2162-6"),  # the unit implies the 24-hour urine test
        ("Creatinine", "mg/dL", "2160-0"),
        ("Chloride", "mmol/d", "32307-1"),
        ("Glucose", "mmol/d", None),  # no 24-hour urine glucose in the catalog: no code
        ("β2-microglobulin", "mg/L", "1952-1"),
        ("α1-antitrypsin", "g/L", "1825-9"),
        ("γ-GT", "U/L", "2324-2"),
        ("ALT", "ukat/L", "1742-6"),
    ],
)
def test_the_unit_and_greek_letters_select_the_code(name: str, unit: str, code: str | None) -> None:
    assert AliasMatcher().match_one(LabQuery(name, unit)).loinc_code == code


@pytest.mark.parametrize(
    ("code", "value", "unit", "expected"),
    [
        ("1742-6", 0.5, "ukat/L", (30.0, "U/L")),  # 1 ukat/L = 60 U/L
        ("2162-6", 1.2, "g/24 h", (1200.0, "mg/(24.h)")),
        ("1834-1", 10.0, "kIU/L", (12.1, "ng/mL")),  # 1 kIU/L = 1 IU/mL
    ],
)
def test_report_units_convert_once(
    code: str, value: float, unit: str, expected: tuple[float, str]
) -> None:
    reading = convert_reading(code, value, unit, str(value))
    assert (reading.value, reading.unit, reading.flag) == (*expected, "ok")


def test_a_proposal_whose_unit_measures_another_property_is_refused(
    combined_matcher: CombinedMatcher,
) -> None:
    """The catalog's only estriol is a 24-hour urine rate; ng/mL is a concentration."""
    result = combined_matcher.match_many([LabQuery("Estriol", "ng/mL")])[0]
    assert result.loinc_code is None and result.candidates
