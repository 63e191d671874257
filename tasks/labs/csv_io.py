"""``healthflow labs categorize --input IN.csv --output OUT.csv``: categorize a CSV of test names.

IN has columns ``test_name,unit`` (others are carried through); OUT adds ``loinc_code`` (empty
when uncategorized), ``loinc_name``, ``confidence`` and ``method``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tasks.labs.matcher import LabQuery, Matcher

OUTPUT_COLUMNS = ("loinc_code", "loinc_name", "confidence", "method")
BATCH_SIZE = 2048  # bounded memory for large files; the model batches inside each call


class InvalidLabCsv(ValueError):
    """The input CSV lacks the required ``test_name`` column."""


def categorize_csv(in_path: str | Path, out_path: str | Path, matcher: Matcher) -> dict[str, int]:
    """Categorize every row; returns counts (never names: they are health data)."""
    counts = {"rows": 0, "categorized": 0, "uncategorized": 0}
    with (
        Path(in_path).open(newline="", encoding="utf-8-sig") as source,
        Path(out_path).open("w", newline="", encoding="utf-8") as target,
    ):
        reader = csv.DictReader(source)
        if reader.fieldnames is None or "test_name" not in reader.fieldnames:
            raise InvalidLabCsv("input CSV needs a test_name column (and optionally unit)")
        carried = [name for name in reader.fieldnames if name not in OUTPUT_COLUMNS]
        writer = csv.DictWriter(target, fieldnames=[*carried, *OUTPUT_COLUMNS])
        writer.writeheader()
        batch: list[dict[str, str]] = []
        for row in reader:
            batch.append(row)
            if len(batch) >= BATCH_SIZE:
                _write_batch(batch, matcher, writer, counts)
                batch = []
        _write_batch(batch, matcher, writer, counts)
    return counts


def _write_batch(
    rows: list[dict[str, str]],
    matcher: Matcher,
    writer: csv.DictWriter[str],
    counts: dict[str, int],
) -> None:
    if not rows:
        return
    queries = [LabQuery(row.get("test_name") or "", row.get("unit") or "") for row in rows]
    for row, result in zip(rows, matcher.match_many(queries), strict=True):
        output = {key: value for key, value in row.items() if key is not None}
        output.update(
            loinc_code=result.loinc_code or "",
            loinc_name=result.loinc_name or "",
            confidence=f"{result.confidence:.4f}",
            method=result.method,
        )
        writer.writerow(output)
        counts["rows"] += 1
        counts["categorized" if result.loinc_code else "uncategorized"] += 1
