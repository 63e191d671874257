from pathlib import Path

import pytest
from sqlalchemy import text

from tasks.ingest import ingest_file, ingest_lines

DATA = Path(__file__).parent.parent / "data" / "ingest"


def test_vitals_good_malformed_and_implausible_lines_are_counted_exactly(engine) -> None:
    report = ingest_file(engine, "vitals", DATA / "vitals_mixed.jsonl")

    assert (report.inserted, report.rejected, report.malformed) == (5, 6, 4)
    reasons = dict(report.problems)
    assert reasons[5].startswith("malformed")
    assert "user_id" in reasons[6]
    assert "start_time" in reasons[7]  # no offset
    assert "start_time" in reasons[8]  # missing
    assert [reasons[n] for n in range(10, 16)] == [
        "unknown_metric",
        "unparseable_value",
        "out_of_range",
        "unconvertible_unit",
        "non_finite_value",
        "end_before_start",
    ]
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT status, error, count(*) FROM vitals_raw_data GROUP BY 1, 2 ORDER BY 1, 2")
        ).all()
    assert [(r.status, r.error, r.count) for r in rows] == [
        ("pending", None, 5),
        ("rejected", "end_before_start", 1),
        ("rejected", "non_finite_value", 1),
        ("rejected", "out_of_range", 1),
        ("rejected", "unconvertible_unit", 1),
        ("rejected", "unknown_metric", 1),
        ("rejected", "unparseable_value", 1),
    ]


def test_reasons_never_carry_the_values(engine) -> None:
    report = ingest_lines(
        engine,
        "vitals",
        [
            '{"user_id": 1, "metric": "heart_rate", "value": 13371337, "unit": "bpm", '
            '"start_time": "not-a-time-424242"}'
        ],
    )
    assert report.malformed == 1
    assert "424242" not in report.problems[0][1]


def test_labs_keep_text_results_and_local_dates(engine) -> None:
    lines = [
        '{"user_id": 5, "test_name": "S. Creatinine", "value": "1.1", "unit": "mg/dL", '
        '"collected_at": "2024-01-31", "report_id": "R1"}',
        '{"user_id": 5, "test_name": "Urine Glucose", "value": "Negative", '
        '"collected_at": "2024-01-31T08:30:00+05:30", "report_id": "R1"}',
        '{"user_id": 5, "test_name": "HbA1c", "value": "6.1", "unit": "%", '
        '"collected_at": "2024-01-31T08:30:00"}',
        '{"user_id": 5, "test_name": "TSH", "unit": "mIU/L", "collected_at": "2024-01-31"}',
        '{"user_id": 5, "test_name": "TSH", "value": 2, "collected_at": "31/01/2024"}',
    ]
    report = ingest_lines(engine, "labs", lines)
    assert (report.inserted, report.rejected, report.malformed) == (3, 1, 1)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT value_text, value, collected_at IS NULL AS local, status "
                "FROM lab_report_raw ORDER BY id"
            )
        ).all()
    assert [(r.value_text, r.value, r.local, r.status) for r in rows] == [
        ("1.1", 1.1, True, "pending"),
        ("Negative", None, False, "pending"),
        ("6.1", 6.1, True, "pending"),
        (None, None, True, "rejected"),
    ]


def test_nutrition_missing_nutrients_stay_null(engine) -> None:
    lines = [
        '{"user_id": 7, "meal_date": "2024-02-29", "meal_type": "Lunch", "food_name": "Dal", '
        '"calories": 320, "protein_g": 14, "carbs_g": null, "fat_g": 6}',
        '{"user_id": 7, "meal_date": "2024-02-29", "meal_type": "brunch", "food_name": "Eggs", '
        '"calories": 200}',
        '{"user_id": 7, "meal_date": "2024-02-29", "meal_type": "dinner", "food_name": "Soup", '
        '"calories": -5}',
    ]
    report = ingest_lines(engine, "nutrition", lines)
    assert (report.inserted, report.rejected, report.malformed) == (1, 2, 0)
    assert [r for _, r in report.problems] == ["unknown_meal_type", "out_of_range:calories"]
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT meal_type, calories, carbs_g, fiber_g FROM nutrition_raw_data "
                "WHERE status = 'pending'"
            )
        ).one()
    assert tuple(row) == ("lunch", 320.0, None, None)


def test_users_upsert_and_reject_unknown_zones(engine) -> None:
    lines = [
        '{"user_id": 1, "timezone": "America/New_York"}',
        '{"user_id": 2, "timezone": "Mars/Olympus_Mons"}',
        '{"user_id": 1, "timezone": "Asia/Kolkata"}',
    ]
    report = ingest_lines(engine, "users", lines)
    assert (report.inserted, report.malformed) == (1, 1)
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT timezone FROM user_settings")).scalar_one() == "Asia/Kolkata"
        )


def test_a_file_lands_whole_or_not_at_all(engine) -> None:
    good = (
        '{"user_id": 1, "metric": "heart_rate", "value": 70, "unit": "bpm", '
        '"start_time": "2024-03-10T08:00:00+00:00"}'
    )

    def lines():
        for _ in range(5):
            yield good
        raise OSError("the upload stream broke")

    with pytest.raises(OSError):
        ingest_lines(engine, "vitals", lines(), batch_rows=2)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM vitals_raw_data")).scalar_one() == 0
