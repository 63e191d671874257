"""Lab aggregates (daily, monthly, quarterly, yearly) equal a plain-Python reference over the
numeric categorized results; text results stay categorized but are not averaged; the same
report's result uploaded twice counts once."""

from __future__ import annotations

import csv
import json
import math
import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import text

from tasks.ingest import ingest_lines
from tasks.labs import load_catalog
from tasks.process import process_pending
from tests.support.reference import Stats, period_start

EVAL_SET = Path(__file__).parent.parent / "data" / "labs" / "eval_set.csv"
ZONES = {31: "America/New_York", 32: "Asia/Kolkata"}


def _named_tests() -> list[tuple[str, str, str]]:
    """(report-style name, canonical unit, code) for numeric catalog tests of the eval set."""
    catalog = load_catalog()
    picked = {}
    with EVAL_SET.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            code = row["expected_loinc"]
            test = catalog.by_code.get(code) if code else None
            if test and test.value_kind == "numeric" and test.canonical_unit and code not in picked:
                picked[code] = (row["test_name"], test.canonical_unit, code)
    return sorted(picked.values())[:25]


def _lines(seed: int = 3) -> tuple[list[str], list[dict]]:
    rng = random.Random(seed)
    tests = _named_tests()
    lines, results = [], []
    for user, zone in ZONES.items():
        for report in range(14):
            # Reports around quarter and year ends, as dates or instants with offsets.
            day = date(2023, 12, 30) + timedelta(days=report * 45 + rng.randrange(0, 3))
            if report % 2:
                local = datetime(day.year, day.month, day.day, 23, 30, tzinfo=ZoneInfo(zone))
                collected = local.astimezone(UTC).isoformat()  # the local date is still `day`
            else:
                collected = day.isoformat()
            for name, unit, code in rng.sample(tests, 8):
                value = round(rng.uniform(1, 200), 2)
                line = {"user_id": user, "report_id": f"R{user}-{report}", "test_name": name,
                        "value": value, "unit": unit, "collected_at": collected}  # fmt: skip
                lines.append(json.dumps(line))
                results.append({"user": user, "code": code, "day": day, "value": value,
                                "at": (report, value)})  # fmt: skip
            text_result = {"user_id": user, "report_id": f"R{user}-{report}",
                           "test_name": "Urine Ketones", "value": "Negative",
                           "collected_at": collected}  # fmt: skip
            lines.append(json.dumps(text_result))
    return lines, results


def _reference(results: list[dict], granularity: str) -> dict[tuple, Stats]:
    out: dict[tuple, Stats] = defaultdict(Stats)
    for r in results:
        key = (r["user"], r["code"], period_start(r["day"], granularity))
        # Reports are in time order, so (report number, value) orders like the instants.
        out[key].add(r["value"], r["at"])  # type: ignore[arg-type]
    return dict(out)


def test_labs_aggregates_match_reference(engine, lab_matcher) -> None:
    ingest_lines(
        engine, "users", [f'{{"user_id": {u}, "timezone": "{z}"}}' for u, z in ZONES.items()]
    )
    lines, results = _lines()
    ingest_lines(engine, "labs", lines[::2])
    assert all(r.error is None for r in process_pending(["labs"]))
    ingest_lines(engine, "labs", lines[1::2] + lines[:40])  # late results and a re-upload
    assert all(r.error is None for r in process_pending(["labs"]))

    with engine.connect() as conn:
        coded = dict(conn.execute(text(
            "SELECT status, count(*) FROM lab_report_categorized GROUP BY 1")).all())  # fmt: skip
    assert coded == {"categorized": len(lines)}
    for granularity in ("daily", "monthly", "quarterly", "yearly"):
        expected = _reference(results, granularity)
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT user_id, loinc_code, bucket_start, count, sum, min, max, last_value "
                    f"FROM labs_agg_{granularity}"
                )
            ).all()
        actual = {(r[0], r[1], r[2]): r[3:] for r in rows}
        assert set(actual) == set(expected), granularity
        for key, stats in expected.items():
            count, total, low, high, last = actual[key]
            assert count == stats.count, (granularity, key)
            assert math.isclose(total, stats.total, rel_tol=1e-9)
            assert (low, high) == (stats.low, stats.high)
            assert math.isclose(last, stats.last), (granularity, key)
