"""The checks that accept or refuse a model's proposal come from the catalog, not the model."""

from __future__ import annotations

import pytest

from tasks.labs.catalog import load_catalog
from tasks.labs.matcher import AliasMatcher, CombinedMatcher, LabQuery, unit_score
from tasks.labs.normalize import convert_reading, normalize_unit
from tasks.labs.verify import AnalyteCheck, fold, phrases, stem, tokens
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
    assert phrases("Folic Acid/Folate") == [  # words compared in one spelling (stem)
        frozenset({"folic", "acid", "folat"}),
        frozenset({"folic", "acid"}),
        frozenset({"folat"}),
    ]


@pytest.mark.parametrize(
    ("word", "spelled"),
    [
        ("prostatic", "prostat"),
        ("prostate", "prostat"),
        ("antibodies", "ab"),
        ("antigen", "ag"),
        ("platelets", "platelet"),
        ("creatine", "creatin"),  # distinct analytes keep distinct stems
        ("creatinine", "creatinin"),
        ("phosphate", "phosphat"),
        ("phosphatase", "phosphatas"),
        ("glucose", "glucos"),
    ],
)
def test_one_spelling_per_word(word: str, spelled: str) -> None:
    assert stem(word) == spelled


@pytest.mark.parametrize(
    ("name", "code", "agrees"),
    [
        ("ALT (Transferase Alanine Amino)", "1742-6", True),  # a compound written apart
        ("AST (Aspartate Transferase)", "1920-8", True),
        ("PSA (Prostatic Specific AG)", "2857-1", True),  # prostatic/prostate, AG/Ag
        ("Hepatitis A AB", "13951-9", True),  # LOINC's "Hepatitis A virus Ab"
        ("Hepatitis A IgG AB", "13951-9", False),  # IgG is not in the total antibody's names
        ("Hepatitis A IgG AB", "22314-9", False),  # nor in the IgM antibody's
        ("Pro B Natriuretic Peptide", "30934-4", False),  # NT-proBNP is not BNP
        ("CD11b Myelo/Monos %", "5905-5", False),  # an identifier the code does not carry
    ],
)
def test_spelling_variants_agree_and_other_analytes_still_do_not(
    check: AnalyteCheck, name: str, code: str, agrees: bool
) -> None:
    assert check.agrees(name, code) is agrees


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


def test_a_bare_anion_gap_takes_the_code_that_states_no_formula() -> None:
    assert AliasMatcher().match_one(LabQuery("Anion Gap", "mmol/L")).loinc_code == "33037-3"
    assert AliasMatcher().match_one(LabQuery("Anion gap 4", "mmol/L")).loinc_code == "1863-0"


@pytest.mark.parametrize(
    ("code", "unit"),
    [("29541-0", "{copies}/mL"), ("25836-8", "log copies/mL"), ("25836-8", "{Log_copies}/mL")],
)
def test_a_unit_on_the_other_scale_vetoes_the_code(code: str, unit: str) -> None:
    test = load_catalog().by_code[code]
    assert unit_score(test, normalize_unit(unit)) == -1.0
