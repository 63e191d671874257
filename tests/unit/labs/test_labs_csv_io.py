from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tasks.labs.csv_io import InvalidLabCsv, categorize_csv
from tasks.labs.matcher import AliasMatcher


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_categorize_csv_adds_the_contract_columns(tmp_path: Path) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    write_csv(
        source,
        [
            {"test_name": "S. Creatinine", "unit": "mg/dL"},
            {"test_name": "Patient name", "unit": ""},
        ],
    )
    counts = categorize_csv(source, target, AliasMatcher())
    assert counts == {"rows": 2, "categorized": 1, "uncategorized": 1}
    with target.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "test_name", "unit", "loinc_code", "loinc_name", "confidence", "method",
    ]  # fmt: skip
    assert rows[0]["loinc_code"] == "2160-0"
    assert rows[0]["method"] == "exact"
    assert float(rows[0]["confidence"]) == 1.0
    assert rows[1]["loinc_code"] == ""
    assert rows[1]["method"] == "none"


def test_categorize_csv_requires_test_name(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    write_csv(source, [{"name": "x", "unit": ""}])
    with pytest.raises(InvalidLabCsv):
        categorize_csv(source, tmp_path / "out.csv", AliasMatcher())
