import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

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


# ---------------------------------------------------------------------------- robustness


def _vital(**fields: object) -> str:
    line = {"user_id": 1, "metric": "heart_rate", "value": 70, "unit": "bpm",
            "start_time": "2024-03-10T08:00:00+00:00", **fields}  # fmt: skip
    return json.dumps(line)


def _rows(engine, table: str) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(text(f"SELECT status, error FROM {table} ORDER BY id")).all()
        ]


def _balanced(report) -> bool:
    parts = report.inserted + report.rejected + report.malformed + report.duplicates
    return report.lines == parts


def test_one_bad_line_never_aborts_a_file(engine) -> None:
    """Each of these used to abort the whole file with a traceback quoting the row."""
    lines = [
        _vital(),
        _vital(metric=""),  # an empty CSV field: COPY reads it as NULL
        _vital(metric="   "),
        _vital(source="watch\u0000"),  # PostgreSQL text cannot hold NUL
        _vital(unit="b\u0000pm"),
        _vital(user_id=2**63),  # above bigint
        _vital(user_id=2**48),  # above the advisory-lock key's range
        _vital(user_id=True),
        _vital(user_id="2"),
        _vital(value=71),
    ]
    report = ingest_lines(engine, "vitals", lines)
    assert (report.lines, report.inserted, report.rejected, report.malformed) == (10, 2, 0, 8)
    assert _balanced(report)
    reasons = dict(report.problems)
    assert "metric: String should match pattern" in reasons[2]
    assert reasons[4] == "malformed: source: contains a NUL character"
    assert reasons[5] == "malformed: unit: contains a NUL character"
    assert all("user_id" in reasons[n] for n in (6, 7, 8, 9))
    labs = [
        '{"user_id": 1, "test_name": "", "value": "5.1", "collected_at": "2024-01-02"}',
        '{"user_id": 1, "test_name": "TSH", "value": "2.1", "collected_at": "2024-01-02"}',
    ]
    meals = [
        '{"user_id": 1, "meal_date": "2024-01-02", "meal_type": "lunch", "food_name": ""}',
        '{"user_id": 1, "meal_date": "2024-01-02", "meal_type": "", "food_name": "Dal"}',
        '{"user_id": 1, "meal_date": "2024-01-02", "meal_type": "lunch", "food_name": "Dal"}',
    ]
    lab_report = ingest_lines(engine, "labs", labs)
    meal_report = ingest_lines(engine, "nutrition", meals)
    assert (lab_report.inserted, lab_report.malformed) == (1, 1)
    assert (meal_report.inserted, meal_report.malformed) == (1, 2)
    assert _balanced(lab_report) and _balanced(meal_report)


def test_values_no_step_could_handle_are_rejected_with_a_reason(engine) -> None:
    vitals = [
        _vital(start_time="0001-01-01T00:00:00+00:00"),  # year 0 in New York
        _vital(start_time="3000-01-01T00:00:00+00:00"),
        _vital(end_time="9999-12-31T23:59:59+00:00"),
        _vital(metric="blood_glucose", value=1e308, unit="mmol/L"),  # inf once converted
        _vital(metric="blood_glucose", value=-5, unit="mg/dL"),
        _vital(value="5,5"),
        _vital(value="1,234.5", metric="steps", unit="count"),  # thousands, unambiguous
    ]
    labs = [
        '{"user_id": 1, "test_name": "Glucose", "value": 1e308, "unit": "mmol/L", '
        '"collected_at": "2024-01-02"}',
        '{"user_id": 1, "test_name": "Glucose", "value": "5,5", "unit": "mmol/L", '
        '"collected_at": "2024-01-02"}',
        '{"user_id": 1, "test_name": "Glucose", "value": "5.5", "unit": "mmol/L", '
        '"collected_at": "0001-01-01T00:00:00+00:00"}',
        '{"user_id": 1, "test_name": "Glucose", "value": "5.5", "unit": "mmol/L", '
        '"collected_at": "0001-01-01"}',
    ]
    meals = [
        '{"user_id": 1, "meal_date": "0001-01-01", "meal_type": "lunch", "food_name": "Dal"}',
        '{"user_id": 1, "meal_date": "2024-01-02", "meal_type": "lunch", "food_name": "Dal", '
        '"calories": "5,5"}',
    ]
    assert [r for _, r in ingest_lines(engine, "vitals", vitals).problems] == [
        "implausible_time",
        "implausible_time",
        "implausible_time",
        "out_of_range",
        "out_of_range",
        "ambiguous_decimal_comma",
    ]
    assert [r for _, r in ingest_lines(engine, "labs", labs).problems] == [
        "out_of_range",
        "ambiguous_decimal_comma",
        "implausible_time",
        "implausible_time",
    ]
    assert [r for _, r in ingest_lines(engine, "nutrition", meals).problems] == [
        "implausible_time",
        "ambiguous_decimal_comma:calories",
    ]
    with engine.connect() as conn:
        steps = conn.execute(
            text("SELECT status, value FROM vitals_raw_data WHERE metric = 'steps'")
        ).one()
    assert tuple(steps) == ("pending", 1234.5)
    assert ("rejected", "ambiguous_decimal_comma") in _rows(engine, "lab_report_raw")


def test_a_user_with_an_implausible_row_is_processed_not_blocked(engine) -> None:
    from tasks.process import process_pending

    ingest_lines(engine, "users", ['{"user_id": 1, "timezone": "America/New_York"}'])
    ingest_lines(engine, "vitals", [_vital(start_time="0001-01-01T00:00:00+00:00"), _vital()])
    runs = process_pending(["vitals"])
    assert [r.error for r in runs] == [None]
    assert _rows(engine, "vitals_raw_data") == [
        ("rejected", "implausible_time"),
        ("aggregated", None),
    ]


def test_database_errors_are_one_line_without_row_values(engine) -> None:
    from tasks.ingest import IngestFailed

    with engine.begin() as conn:  # a constraint the rows cannot meet
        conn.execute(
            text("ALTER TABLE vitals_raw_data ADD CONSTRAINT hf_test_no CHECK (value < 0)")
        )
    try:
        with pytest.raises(IngestFailed) as raised:
            ingest_lines(engine, "vitals", [_vital(value=173.37)])
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE vitals_raw_data DROP CONSTRAINT hf_test_no"))
    message = str(raised.value)
    assert "\n" not in message and "173.37" not in message and "CheckViolation" in message
    assert raised.value.__cause__ is None and raised.value.__context__ is None


def test_validation_messages_name_the_field_not_the_value(engine) -> None:
    report = ingest_lines(
        engine,
        "labs",
        ['{"user_id": 1, "test_name": "HIV", "value": "positive", '
         '"collected_at": "HIV positive 173.37"}'],
    )  # fmt: skip
    [(_, reason)] = report.problems
    assert reason == "malformed: collected_at: Value error, not an ISO 8601 date or date and time"


def test_entry_ids_make_ingest_idempotent(engine) -> None:
    meals = [
        json.dumps({"user_id": 4, "meal_date": "2024-01-02", "meal_type": "lunch",
                    "food_name": "Dal", "calories": 300, "entry_id": f"m{i}"})
        for i in range(3)
    ] + [
        json.dumps({"user_id": 4, "meal_date": "2024-01-02", "meal_type": "dinner",
                    "food_name": "Soup", "calories": 200})  # no id: always a new entry
    ]  # fmt: skip
    first = ingest_lines(engine, "nutrition", meals)
    assert (first.inserted, first.duplicates) == (4, 0)
    again = ingest_lines(engine, "nutrition", [*meals, meals[0]], batch_rows=2)
    assert (again.lines, again.inserted, again.duplicates) == (5, 1, 4)
    assert _balanced(again)
    # The same id from another user is another entry; a vitals and a lab line dedupe too.
    other = json.loads(meals[0]) | {"user_id": 5}
    assert ingest_lines(engine, "nutrition", [json.dumps(other)]).inserted == 1
    for domain, line in (
        ("vitals", _vital(entry_id=77)),
        ("labs", '{"user_id": 1, "test_name": "TSH", "value": 2, "collected_at": "2024-01-02", '
                 '"entry_id": "lab-1"}'),
    ):  # fmt: skip
        assert ingest_lines(engine, domain, [line]).inserted == 1
        repeat = ingest_lines(
            engine, domain, [line, _vital(value=99) if domain == "vitals" else line]
        )
        assert repeat.duplicates >= 1 and _balanced(repeat)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM nutrition_raw_data")).scalar_one() == 6
        assert (
            conn.execute(
                text("SELECT count(*) FROM vitals_raw_data WHERE entry_id = '77'")
            ).scalar_one()
            == 1
        )


def test_coded_lab_results_outside_physiology_are_rejected_at_categorization() -> None:
    from tasks.steps.labs import implausible_result

    glucose_blood, creatinine, base_excess = "2339-0", "2160-0", "11555-0"
    assert implausible_result(glucose_blood, -5.0, "mg/dL") == "out_of_range"
    assert implausible_result(glucose_blood, 99.0, "mg/dL") is None
    assert implausible_result(glucose_blood, float("inf"), "mg/dL") == "non_finite_value"
    assert implausible_result(creatinine, -0.4, "mg/dL") == "out_of_range"
    assert implausible_result(base_excess, -3.0, "meq/L") is None
    assert implausible_result(creatinine, None, None) is None


def test_the_demo_data_ingested_twice_is_stored_once(engine, tmp_path) -> None:
    from datetime import date

    from tasks.sample import write_sample_dataset

    def demo(out):  # the `healthflow run --demo` dataset, written afresh each run
        return write_sample_dataset(out, 4, date(2024, 3, 4), 14, 7, "light")

    first, second = demo(tmp_path / "a"), demo(tmp_path / "b")
    for domain in ("labs", "vitals", "nutrition"):
        once = ingest_file(engine, domain, first[domain])
        twice = ingest_file(engine, domain, second[domain])
        assert once.duplicates == 0 and once.inserted > 0
        assert (twice.inserted, twice.rejected, twice.duplicates) == (0, 0, once.lines)
        assert _balanced(once) and _balanced(twice)


def _meal(**fields: object) -> str:
    line = {"user_id": 1, "meal_date": "2024-01-02", "meal_type": "lunch", "food_name": "Dal",
            "calories": 300, **fields}  # fmt: skip
    return json.dumps(line)


def _file_with_unreadable_lines(path: Path) -> Path:
    """Line 1 behind a byte-order mark; line 3 not UTF-8; lines 4-5 numbers no float holds."""
    body = b"\xef\xbb\xbf" + _meal(entry_id="a").encode() + b"\n"
    body += _meal(entry_id="b").encode() + b"\n"
    body += _meal(entry_id="c").encode().replace(b"Dal", b"D\xffal") + b"\n"
    body += _meal(entry_id="d", calories=10**400).encode() + b"\n"
    body += _meal(entry_id="e").encode().replace(b'"e"', b"1" + b"0" * 5000) + b"\n"
    body += _meal(entry_id="f").encode() + b"\n"
    path.write_bytes(body)
    return path


def test_unreadable_bytes_and_numbers_never_abort_a_file(engine, tmp_path) -> None:
    report = ingest_file(engine, "nutrition", _file_with_unreadable_lines(tmp_path / "m.jsonl"))
    assert (report.lines, report.inserted, report.rejected, report.malformed) == (6, 3, 1, 2)
    assert _balanced(report)
    reasons = dict(report.problems)
    assert reasons[3] == "malformed: line: not valid UTF-8"
    assert reasons[4] == "non_finite_value:calories"
    assert reasons[5].startswith("malformed")
    assert 1 not in reasons  # the byte-order mark is not part of the first line
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT entry_id, status FROM nutrition_raw_data ORDER BY entry_id")
        ).all()
    assert [tuple(r) for r in stored] == [
        ("a", "pending"), ("b", "pending"), ("d", "rejected"), ("f", "pending"),
    ]  # fmt: skip


def test_the_command_line_ingests_around_unreadable_lines(engine, tmp_path, capsys) -> None:
    from tasks.cli import main

    code = main(["ingest", "nutrition", str(_file_with_unreadable_lines(tmp_path / "m.jsonl"))])
    out = capsys.readouterr().out
    assert code == 0
    assert "3 inserted as pending, 1 stored as rejected, 2 malformed" in out
    assert "line 3: malformed: line: not valid UTF-8" in out


def test_booleans_are_never_numbers_and_times_are_iso_text(engine) -> None:
    vitals = [
        _vital(value=True),  # not 1 step
        _vital(start_time=1700000000),
        _vital(start_time="1700000000"),
        _vital(entry_id=True),
        _vital(),
    ]
    labs = [
        '{"user_id": 1, "test_name": "Hemoglobin", "value": true, "unit": "g/dL", '
        '"collected_at": "2024-01-02"}',
        '{"user_id": 1, "test_name": "Hemoglobin", "value": 13.5, "unit": "g/dL", '
        '"collected_at": "2024-01-02", "report_id": false}',
        '{"user_id": 1, "test_name": "Hemoglobin", "value": 13.5, "unit": "g/dL", '
        '"collected_at": "1700000000"}',
    ]
    meals = [_meal(meal_date=19723), _meal(meal_date="1700000000"), _meal(calories=True)]
    vital_report = ingest_lines(engine, "vitals", vitals)
    lab_report = ingest_lines(engine, "labs", labs)
    meal_report = ingest_lines(engine, "nutrition", meals)
    assert (vital_report.inserted, vital_report.malformed) == (1, 4)
    assert [n for n, _ in vital_report.problems] == [1, 2, 3, 4]
    assert "ISO 8601" in dict(vital_report.problems)[3]
    assert (lab_report.inserted, lab_report.malformed) == (0, 3)
    assert (meal_report.inserted, meal_report.rejected, meal_report.malformed) == (0, 1, 2)


def test_a_byte_order_mark_is_not_part_of_the_first_line(engine) -> None:
    report = ingest_lines(engine, "vitals", ["\ufeff" + _vital(), _vital(value=72)])
    assert (report.inserted, report.malformed) == (2, 0)
    users = ingest_lines(engine, "users", ['\ufeff{"user_id": 1, "timezone": "Asia/Tokyo"}'])
    assert (users.inserted, users.malformed) == (1, 0)


def test_zones_the_database_reads_differently_are_refused_with_the_reason(engine) -> None:
    lines = [
        '{"user_id": 1, "timezone": "right/UTC"}',
        '{"user_id": 2, "timezone": "posix/Europe/Paris"}',
        '{"user_id": 3, "timezone": "Mars/Olympus_Mons"}',
        '{"user_id": 4, "timezone": "Europe/Paris"}',
    ]
    report = ingest_lines(engine, "users", lines)
    assert (report.inserted, report.malformed) == (1, 3)
    reasons = dict(report.problems)
    assert "leap-second" in reasons[1] and "leap-second" in reasons[2]
    assert reasons[3] == "malformed: timezone: not an IANA time zone"
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT user_id, timezone FROM user_settings")).all()
    assert [tuple(r) for r in stored] == [(4, "Europe/Paris")]


def test_a_zone_the_database_reads_with_other_offsets_is_refused_with_them(engine) -> None:
    # PostgreSQL's AT TIME ZONE reads "CET" as the abbreviation (+01:00 all year), Python as the
    # zone with summer time: July's buckets would be an hour apart from their labels.
    lines = [
        '{"user_id": 1, "timezone": "CET"}',
        '{"user_id": 2, "timezone": "Europe/Berlin"}',
        '{"user_id": 3, "timezone": "WET"}',
    ]
    report = ingest_lines(engine, "users", lines)
    assert (report.inserted, report.malformed) == (1, 2)
    reasons = dict(report.problems)
    assert reasons[1].startswith("malformed: timezone: the database reads it differently")
    assert "+01:00 instead of +02:00" in reasons[1]
    assert "+00:00 instead of +01:00" in reasons[3]
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT user_id, timezone FROM user_settings")).all()
    assert [tuple(r) for r in stored] == [(2, "Europe/Berlin")]


def test_a_zone_whose_rules_changed_since_the_servers_tz_data_is_refused(engine) -> None:
    # Paraguay kept summer time for good from October 2024 (tz 2024b); a server with older tz
    # data still moves America/Asuncion back to -04:00 each March.
    with engine.connect() as conn:
        server = conn.execute(
            text("SELECT (TIMESTAMPTZ '2025-07-01 12:00Z' AT TIME ZONE 'America/Asuncion')")
        ).scalar_one()
    python = datetime(2025, 7, 1, 12, tzinfo=UTC).astimezone(ZoneInfo("America/Asuncion"))
    if server == python.replace(tzinfo=None):
        pytest.skip("this server's tz data reads America/Asuncion as Python does")
    report = ingest_lines(engine, "users", ['{"user_id": 1, "timezone": "America/Asuncion"}'])
    assert (report.inserted, report.malformed) == (0, 1)
    assert "-04:00 instead of -03:00" in report.problems[0][1]
