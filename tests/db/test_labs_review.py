"""The review loop: a reviewer's mapping, applied to a database, recodes rows and their buckets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tasks.ingest import ingest_lines
from tasks.labs.matcher import AliasMatcher
from tasks.labs.review import InvalidReviewFile, apply_review, export_review
from tasks.process import process_claim
from tasks.steps.labs import get_matcher, set_matcher


@pytest.fixture
def alias_only_matcher():  # type: ignore[no-untyped-def]
    previous = get_matcher()
    set_matcher(AliasMatcher())
    yield
    set_matcher(previous)


def _ingest(engine: Engine) -> None:
    readings = (
        ("R1", "2024-03-01", "Kalium", 4.1, "mmol/L"),
        ("R2", "2024-03-05", "Kalium", 4.3, "mmol/L"),
        ("R2", "2024-03-05", "Sodium", 140, "mmol/L"),
    )
    lines = [
        json.dumps(
            {
                "user_id": 9,
                "report_id": report,
                "test_name": name,
                "value": value,
                "unit": unit,
                "collected_at": day,
            }
        )
        for report, day, name, value, unit in readings
    ]
    ingest_lines(engine, "labs", lines)


def test_an_applied_review_recodes_the_rows_and_their_buckets(
    engine: Engine, alias_only_matcher: None, tmp_path: Path
) -> None:
    _ingest(engine)
    assert process_claim("labs", 9).error is None
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM labs_agg_daily WHERE loinc_code = '2823-3'")
            ).scalar_one()
            == 0
        )
    review_file = tmp_path / "review.csv"
    with engine.connect() as conn:
        assert export_review(conn, review_file) == 1
    with review_file.open(newline="", encoding="utf-8") as handle:
        lines = list(csv.DictReader(handle))
    assert [(line["test_name"], line["unit"], line["rows"]) for line in lines] == [
        ("Kalium", "mmol/L", "2")
    ]
    lines[0]["accept_loinc"] = "2823-3"  # potassium, serum or plasma
    with review_file.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(lines[0]))
        writer.writeheader()
        writer.writerows(lines)

    applied = apply_review(review_file, reviewer="reviewer-1")

    assert (applied.aliases, applied.users, applied.failed_users) == (1, 1, 0)
    with engine.connect() as conn:
        coded = conn.execute(
            text(
                "SELECT r.test_name, c.loinc_code, c.method FROM lab_report_categorized c "
                "JOIN lab_report_raw r ON r.id = c.raw_id ORDER BY r.id"
            )
        ).all()
        buckets = conn.execute(
            text(
                "SELECT bucket_start::text, count, sum FROM labs_agg_daily "
                "WHERE loinc_code = '2823-3' ORDER BY bucket_start"
            )
        ).all()
        audit = conn.execute(
            text("SELECT loinc_code, reviewed_by, source_file FROM lab_site_alias")
        ).all()
        statuses = conn.execute(text("SELECT DISTINCT status FROM lab_report_raw")).scalars()
        assert set(statuses) == {"aggregated"}
    assert [tuple(row) for row in coded] == [
        ("Kalium", "2823-3", "reviewed"),
        ("Kalium", "2823-3", "reviewed"),
        ("Sodium", "2951-2", "exact"),
    ]
    assert [tuple(row) for row in buckets] == [("2024-03-01", 1, 4.1), ("2024-03-05", 1, 4.3)]
    assert [tuple(row) for row in audit] == [("2823-3", "reviewer-1", "review.csv")]


def test_a_review_naming_a_code_outside_the_catalog_is_refused(
    engine: Engine, tmp_path: Path
) -> None:
    review_file = tmp_path / "review.csv"
    review_file.write_text("test_name,unit,rows,candidates,accept_loinc\nKalium,mmol/L,2,,9999-9\n")
    with pytest.raises(InvalidReviewFile, match="9999-9"):
        apply_review(review_file, reviewer="reviewer-1")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM lab_site_alias")).scalar_one() == 0
