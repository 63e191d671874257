"""Every exported min, max and last is the reading as the report gave it (canonical unit) or
its conversion rounded once to the report's significant digits; a mean has one decimal more
than its finest reading; sums and counts are exact. Through ingest, the real labs steps and
the export, on the real database."""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text

from tasks.export import export_rows
from tasks.ingest import ingest_file, ingest_lines
from tasks.process import process_pending

DATA = Path(__file__).parent.parent / "data" / "export"
USER = 81
FIRST_DAY = date(2024, 1, 1)


def _fixture() -> list[dict[str, str]]:
    with (DATA / "precision_readings.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def _export(engine, granularity: str) -> dict[tuple[str, str], dict[str, str]]:
    rows = export_rows(engine, "labs", granularity, user_id=USER)
    header = next(rows)
    return {(r[1], r[3]): dict(zip(header, r, strict=True)) for r in rows}


def _docs_example() -> list[str]:
    docs = (Path(__file__).parents[2] / "docs" / "formats.md").read_text(encoding="utf-8")
    block = docs.split("Example: potassium", 1)[1].split("```", 2)[1]
    return block.strip().splitlines()


def _line(day: date, index: int, name: str, value: str, unit: str, at: str = "08:00") -> str:
    # Values arrive as the report's text: "4.50" keeps its trailing zero.
    return json.dumps(
        {
            "user_id": USER,
            "report_id": f"R{index}",
            "test_name": name,
            "value": value,
            "unit": unit,
            "collected_at": f"{day.isoformat()}T{at}:00+00:00",
        }
    )


def test_each_reading_exports_as_reported_or_converted_once(engine) -> None:
    readings = _fixture()
    lines = [
        _line(FIRST_DAY + timedelta(days=i), i, r["test_name"], r["value"], r["unit"])
        for i, r in enumerate(readings)
    ]
    ingest_lines(engine, "labs", lines)
    process_pending(["labs"], USER)
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM lab_report_raw WHERE status <> 'aggregated'")
        ).scalar_one()
    assert left == 0

    daily = _export(engine, "daily")
    assert len(daily) == len(readings)
    wrong = []
    for i, reading in enumerate(readings):
        row = daily[(reading["loinc_code"], (FIRST_DAY + timedelta(days=i)).isoformat())]
        expected = Decimal(reading["exported"])
        # The mean of one reading is that reading, at one decimal more (never rounded off).
        columns = ("min", "max", "last", "sum", "avg")
        if any(Decimal(row[c]) != expected for c in columns) or row["count"] != "1":
            wrong.append((reading["test_name"], reading["value"], reading["unit"], row))
    assert wrong == [], f"{len(wrong)} of {len(readings)} readings exported otherwise"

    # Coarser buckets roll the same readings up: min, max and last are still readings.
    monthly = _export(engine, "monthly")
    by_month: dict[tuple[str, str], list[Decimal]] = {}
    for i, reading in enumerate(readings):
        month = (FIRST_DAY + timedelta(days=i)).replace(day=1).isoformat()
        by_month.setdefault((reading["loinc_code"], month), []).append(Decimal(reading["exported"]))
    for key, values in by_month.items():
        row = monthly[key]
        assert Decimal(row["min"]) == min(values)
        assert Decimal(row["max"]) == max(values)
        assert Decimal(row["last"]) == values[-1]  # the latest reading of the month
        assert Decimal(row["sum"]) == sum(values)
        assert row["count"] == str(len(values))


def test_a_days_min_max_last_and_mean_over_several_readings(engine) -> None:
    day = date(2024, 6, 3)
    lines = [
        _line(day, 1, "Potassium", "4.5", "mEq/L", "08:00"),
        _line(day, 2, "Potassium", "4.07", "mmol/L", "09:00"),
        _line(day, 3, "Potassium", "4.7", "mEq/L", "10:00"),
        _line(day, 4, "Creatinine", "0.85", "mg/dL", "08:00"),
        _line(day, 5, "Creatinine", "57", "umol/L", "09:00"),
        _line(day, 6, "HbA1c", "5.4", "%", "08:00"),
        _line(day, 7, "HbA1c", "36", "mmol/mol", "09:00"),  # 5.44528 % -> 5.45
        # Two results at the same time: `last` is the larger, whatever order they arrive in.
        _line(day, 8, "TSH", "2.5", "mIU/L", "08:00"),
        _line(day, 9, "TSH", "2.15", "mIU/L", "08:00"),
    ]
    ingest_lines(engine, "labs", lines)
    process_pending(["labs"], USER)
    daily = _export(engine, "daily")
    potassium = daily[("2823-3", day.isoformat())]
    assert [potassium[c] for c in ("count", "min", "max", "last", "avg", "unit")] == [
        "3",
        "4.07",
        "4.7",
        "4.7",
        "4.423",
        "meq/L",
    ]  # fmt: skip  (13.27 / 3 = 4.42333: the finest reading has 2 decimals, the mean 3)
    assert Decimal(potassium["sum"]) == Decimal("13.27")
    creatinine = daily[("2160-0", day.isoformat())]
    assert [creatinine[c] for c in ("min", "max", "last", "avg")] == [
        "0.64", "0.85", "0.64", "0.745",
    ]  # fmt: skip
    # HbA1c in % and in mmol/mol is one series: one code, one unit, one bucket.
    hba1c = [key for key in daily if key[0] in ("4548-4", "59261-8")]
    assert hba1c == [("4548-4", day.isoformat())]
    hba1c_row = daily[hba1c[0]]
    assert [hba1c_row[c] for c in ("count", "min", "max", "unit")] == ["2", "5.4", "5.45", "%"]

    assert daily[("3016-3", day.isoformat())]["last"] == "2.5"
    # docs/formats.md shows these two rows as its example: they are what the export writes.
    example = _docs_example()
    shown = [",".join(daily[(code, day.isoformat())].values()) for code in ("2160-0", "2823-3")]
    assert shown == example[1:]
    assert list(daily[("2160-0", day.isoformat())]) == example[0].split(",")

    # The app's lab_report_daily view shows the same readings and the same mean.
    with engine.connect() as conn:
        view = conn.execute(
            text(
                "SELECT min, max, last_value, avg, decimals FROM lab_report_daily "
                "WHERE user_id = :u AND loinc_code = '2823-3'"
            ),
            {"u": USER},
        ).one()
    assert tuple(view) == (4.07, 4.7, 4.7, 4.423, 2)


def test_vitals_without_a_unit_are_in_the_canonical_unit(engine) -> None:
    # docs/formats.md: a vitals `unit` is optional and defaults to the metric's canonical unit.
    report = ingest_file(engine, "vitals", DATA / "vitals_units.jsonl")
    assert (report.inserted, report.rejected) == (7, 1)  # only the unknown unit is refused
    process_pending(["vitals"], 82)
    with engine.connect() as conn:
        statuses = conn.execute(
            text("SELECT status, error, count(*) FROM vitals_raw_data GROUP BY 1, 2 ORDER BY 1")
        ).all()
    assert [tuple(s) for s in statuses] == [
        ("aggregated", None, 7),
        ("rejected", "unconvertible_unit", 1),
    ]
    daily = {row[1]: row for row in list(export_rows(engine, "vitals", "daily", user_id=82))[1:]}
    columns = slice(4, 11)  # count, sum, min, max, avg, last, unit
    # 72 sent with and without its unit is one reading; 150 lb is 68.0388 kg, rounded once to
    # its three digits; 98.6 [degF] is 37.0 Cel. Means carry one decimal more.
    assert daily["8867-4"][columns] == ["2", "147.5", "72.0", "75.5", "73.75", "75.5", "/min"]
    assert daily["29463-7"][columns] == ["2", "136.45", "68.0", "68.45", "68.225", "68.45", "kg"]
    assert daily["8310-5"][columns] == ["2", "73.85", "36.85", "37.0", "36.925", "36.85", "Cel"]


def test_the_precision_a_value_was_sent_with_is_stored(engine) -> None:
    day = date(2024, 7, 1)
    lines = [
        _line(day, 1, "Potassium", "4.50", "mEq/L"),  # text: two decimals, as printed
        json.dumps(  # a JSON number: 140, not 140.0
            {
                "user_id": USER,
                "report_id": "R2",
                "test_name": "Sodium",
                "value": 140,
                "unit": "mEq/L",
                "collected_at": day.isoformat(),
            }
        ),
    ]
    ingest_lines(engine, "labs", lines)
    process_pending(["labs"], USER)
    with engine.connect() as conn:
        decimals = dict(
            conn.execute(text("SELECT loinc_code, decimals FROM lab_report_categorized")).all()
        )
    assert decimals == {"2823-3": 2, "2951-2": 0}
    # Shown as the number it is (4.50 is 4.5); the stored decimals set the mean's precision.
    daily = _export(engine, "daily")
    assert [daily[("2823-3", day.isoformat())][c] for c in ("min", "avg")] == ["4.5", "4.5"]
    assert daily[("2951-2", day.isoformat())]["avg"] == "140.0"
