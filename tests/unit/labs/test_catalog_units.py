"""The catalog's units, checked against an independent source: every canonical unit is a
valid UCUM expression (ucumvert's UCUM grammar and its pint registry of UCUM units), and its
dimension is the one the code's LOINC property names (the long name's bracket: a [#/volume]
code counts per volume, [Mass/volume] is mass per volume, [Moles/volume] moles per volume, a
ratio or fraction is dimensionless). No code is aggregated without a unit."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from pint.util import UnitsContainer
from ucumvert import PintUcumRegistry, get_ucum_parser

from tasks.labs.build_catalog import build, write_catalog
from tasks.labs.catalog import CATALOG_PATH, LabTest, load_catalog
from tasks.labs.normalize import FLAG_NO_UNIT, convert_reading

REFERENCE = Path("/work/shared/data/reference/mimic-code/d_labitems_to_loinc.csv")

_MASS, _LENGTH, _TIME, _SUBSTANCE = "[mass]", "[length]", "[time]", "[substance]"
DIMENSIONLESS = UnitsContainer({})
PER_VOLUME = UnitsContainer({_LENGTH: -3})
CATALYTIC_PER_VOLUME = UnitsContainer({_SUBSTANCE: 1, _TIME: -1, _LENGTH: -3})
# LOINC property (as the long name's bracket writes it) -> the dimensions its unit may have.
PROPERTY_DIMENSIONS: dict[str, set[UnitsContainer]] = {
    "Mass/volume": {UnitsContainer({_MASS: 1, _LENGTH: -3})},
    "Moles/volume": {UnitsContainer({_SUBSTANCE: 1, _LENGTH: -3})},
    "#/volume": {PER_VOLUME},
    "#/area": {DIMENSIONLESS},  # per microscope field: [HPF] and [LPF] are arbitrary units
    "Enzymatic activity/volume": {CATALYTIC_PER_VOLUME},
    "Enzymatic activity/mass": {UnitsContainer({_SUBSTANCE: 1, _TIME: -1, _MASS: -1})},
    # Arbitrary units: [IU] is dimensionless in UCUM, U is catalytic.
    "Units/volume": {PER_VOLUME, CATALYTIC_PER_VOLUME},
    "Entitic volume": {UnitsContainer({_LENGTH: 3})},
    "Entitic mass": {UnitsContainer({_MASS: 1})},
    "Mass/time": {UnitsContainer({_MASS: 1, _TIME: -1})},
    "Partial pressure": {UnitsContainer({_MASS: 1, _LENGTH: -1, _TIME: -2})},
    # mL/min/{1.73_m2}: the body surface is an annotation, dimensionless in UCUM.
    "Volume Rate/Area": {UnitsContainer({_LENGTH: 3, _TIME: -1})},
    "Time": {UnitsContainer({_TIME: 1})},
}
# The catalog's own property class, for the names that carry no bracket.
CLASS_DIMENSIONS: dict[str, set[UnitsContainer]] = {
    "fraction": {DIMENSIONLESS},
    "ratio": {DIMENSIONLESS},
}

_registry = PintUcumRegistry()
_parser = get_ucum_parser()


def _dimension(unit: str) -> UnitsContainer | str:
    """The unit's dimension by the UCUM library; "pH" for UCUM's [pH], which it cannot scale."""
    if re.fullmatch(r"\{[^}]*\}", unit):
        return DIMENSIONLESS  # a bare annotation ({ratio}, {INR}) is the unity
    if unit == "[pH]":
        return "pH"
    return _registry.from_ucum(unit).dimensionality


def _expected(test: LabTest) -> set[UnitsContainer] | None:
    bracket = re.search(r"\[([^\]]+)\]", test.long_name)
    prop = bracket.group(1) if bracket else ""
    if re.search(r"ratio|fraction", prop, re.IGNORECASE):
        return {DIMENSIONLESS}
    if prop:
        return PROPERTY_DIMENSIONS.get(prop)
    return CLASS_DIMENSIONS.get(test.property_class)


def _numeric_tests() -> list[LabTest]:
    return [t for t in load_catalog().tests if t.value_kind == "numeric"]


def unit_problems(tests: list[LabTest]) -> dict[str, str]:
    """code -> what is wrong with its canonical unit (tests/README: also run on main's CSV)."""
    problems = {}
    for test in tests:
        unit = test.canonical_unit
        if not unit:
            continue
        try:
            _parser.parse(unit)
            dimension = _dimension(unit)
        except Exception as error:  # the library's own parse errors have no common base
            problems[test.loinc_code] = f"{unit!r} is not UCUM: {type(error).__name__}"
            continue
        expected = _expected(test)
        if expected is not None and dimension not in expected:
            problems[test.loinc_code] = f"{unit!r} is {dimension}, the property wants {expected}"
    return problems


def test_every_canonical_unit_is_valid_ucum_of_its_propertys_dimension() -> None:
    assert unit_problems(_numeric_tests()) == {}


def test_the_check_catches_a_unit_of_the_wrong_dimension() -> None:
    reticulocytes = load_catalog().by_code["60474-4"]  # Reticulocytes [#/volume] in Blood
    from dataclasses import replace

    wrong = [
        replace(reticulocytes, canonical_unit="%"),
        replace(reticulocytes, canonical_unit="mg/dx"),
    ]
    assert set(unit_problems(wrong[:1])) == {"60474-4"}
    assert "not UCUM" in unit_problems(wrong[1:])["60474-4"]


@pytest.mark.parametrize(
    ("code", "unit"),
    [
        ("60474-4", "10*3/uL"),  # reticulocytes, a count per volume (was %)
        ("5631-7", "ug/dL"),  # copper
        ("5763-8", "ug/dL"),  # zinc
        ("15069-8", "umol/L"),  # fructosamine
        ("32546-4", "U/g{Hb}"),  # G6PD
        ("1825-9", "mg/dL"),  # alpha-1-antitrypsin
    ],
)
def test_the_codes_the_issue_named_have_their_unit(code: str, unit: str) -> None:
    assert load_catalog().by_code[code].canonical_unit == unit


def test_no_code_is_aggregated_without_a_unit() -> None:
    # A numeric test without a unit keeps its values flagged: never averaged with anything.
    unitless = [t for t in _numeric_tests() if not t.canonical_unit]
    assert unitless, "the check below would prove nothing"
    for test in unitless:
        assert convert_reading(test, 1.0, "").flag == FLAG_NO_UNIT
        assert convert_reading(test, 1.0, "mg/dL").flag == FLAG_NO_UNIT


def test_decimals_say_where_they_come_from() -> None:
    catalog = load_catalog()
    assert all(t.decimals_source for t in catalog.tests)
    assert catalog.by_code["777-3"].decimals == 0  # platelets print as 250, not 250.00
    assert catalog.by_code["2823-3"].decimals == 1  # potassium 4.5


@pytest.mark.skipif(not REFERENCE.exists(), reason="the shared reference data is not here")
def test_the_shipped_csv_is_what_the_builder_makes(tmp_path: Path) -> None:
    out = tmp_path / "catalog.csv"
    write_catalog(build(REFERENCE), out)
    assert out.read_text(encoding="utf-8") == CATALOG_PATH.read_text(encoding="utf-8")


def test_the_csv_has_the_columns_the_loader_reads() -> None:
    with CATALOG_PATH.open(encoding="utf-8") as handle:
        header = next(csv.reader(line for line in handle if not line.startswith("#")))
    assert {"canonical_unit", "decimals", "decimals_source", "series"} <= set(header)


def test_one_code_per_analyte_whatever_the_unit() -> None:
    # docs/formats.md: moles and mass results of one analyte are one series. No analyte has a
    # mass and a moles code side by side, and HbA1c by IFCC is stored as the NGSP code.
    catalog = load_catalog()
    properties: dict[tuple[str, str, str], set[str]] = {}
    for test in _numeric_tests():
        bracket = re.search(r"\[(Mass|Moles)/volume\]", test.long_name)
        if bracket:
            key = (test.component.lower(), test.specimen, test.method)
            properties.setdefault(key, set()).add(bracket.group(1))
    assert [key for key, found in properties.items() if len(found) > 1] == []
    assert catalog.by_code["59261-8"].series == "4548-4"
    assert "mmol/mol" in catalog.by_code["4548-4"].units
    assert {t.series for t in catalog.tests} == {"", "4548-4"}
