from __future__ import annotations

import csv
from pathlib import Path

from tasks.labs.catalog import CATALOG_PATH, SPECIMENS, load_catalog

PANEL_CODES = {
    # CBC with differential (percent and absolute)
    "718-7", "4544-3", "789-8", "6690-2", "777-3", "787-2", "785-6", "786-4", "788-0",
    "770-8", "736-9", "5905-5", "713-8", "706-2", "751-8", "731-0", "742-7", "711-2", "704-7",
    # lipids, liver, kidney, electrolytes, minerals
    "2093-3", "2085-9", "13457-7", "18262-6", "13458-5", "2571-8", "9830-1", "11054-4",
    "1742-6", "1920-8", "6768-6", "2324-2", "1975-2", "1968-7", "1971-1", "2885-2", "1751-7",
    "2336-6", "1759-0", "2160-0", "3091-6", "3094-0", "3084-1", "98979-8", "2951-2", "2823-3",
    "2075-0", "1963-8", "17861-6", "19123-9", "2777-1",
    # diabetes, thyroid, vitamins, iron, inflammation, cardiac, pancreas, coagulation
    "1558-6", "1521-4", "2345-7", "4548-4", "59261-8", "27353-2", "20448-7", "3016-3",
    "3053-6", "3026-2", "3051-0", "3024-7", "62292-8", "2132-9", "2284-8", "2498-4", "2500-7",
    "2502-3", "2276-4", "1988-5", "30522-7", "4537-7", "10839-9", "6598-7", "33762-6", "2157-6",
    "13969-1", "1798-8", "3040-3", "2532-0", "5902-2", "6301-6", "14979-9",
    # hormones, PSA, homocysteine, urinalysis, urine albumin
    "2143-6", "2986-8", "2842-3", "15067-2", "10501-5", "2243-4", "2857-1", "13965-9",
    "5803-2", "5811-5", "20454-5", "25428-4", "2514-8", "5770-3", "20405-7", "5802-4",
    "5799-2", "5821-4", "13945-1", "5787-7", "14957-5", "9318-7",
}  # fmt: skip


def test_catalog_carries_the_loinc_notice() -> None:
    head = CATALOG_PATH.read_text(encoding="utf-8").split("loinc_code,", 1)[0]
    assert "loinc.org/license" in head and "Regenstrief" in head
    notice = load_catalog().notice
    assert "loinc.org/license" in notice and "Regenstrief" in notice


def test_catalog_covers_the_panels_and_every_coded_reference_item() -> None:
    catalog = load_catalog()
    assert len(catalog.tests) >= 1100  # every MIMIC-IV lab item with a LOINC code
    assert set(catalog.by_code) >= PANEL_CODES


def test_catalog_is_a_reviewable_table() -> None:
    with CATALOG_PATH.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(line for line in handle if not line.startswith("#")))
    assert {"loinc_code", "long_name", "component", "specimen", "canonical_unit", "units"} <= set(
        rows[0]
    )
    assert {"aliases", "labels", "property", "method", "decimals"} <= set(rows[0])
    d_dimer = next(row for row in rows if row["loinc_code"] == "48065-7")
    assert d_dimer["canonical_unit"] == "ug/mL{FEU}"


def test_the_package_ships_the_catalog() -> None:
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert "labs/*.csv" in pyproject


def test_every_test_is_well_formed() -> None:
    for test in load_catalog().tests:
        assert test.value_kind in ("numeric", "ordinal")
        assert test.canonical_unit in test.units
        assert test.units[test.canonical_unit] == (1.0, 0.0)
        assert test.specimen in SPECIMENS
        assert test.long_name and test.rank > 0


def test_codes_are_unique_and_ranks_ordered() -> None:
    tests = load_catalog().tests
    assert len({test.loinc_code for test in tests}) == len(tests)
    assert [test.rank for test in tests] == sorted(test.rank for test in tests)
