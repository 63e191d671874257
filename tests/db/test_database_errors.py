"""Database failures are named for what happened, and the workflow retries each as it deserves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tasks.db.failures import error_class_of
from tasks.errors import (
    DatabaseConflict,
    DatabaseRejectedRow,
    DatabaseResourceExhausted,
    DatabaseTimeout,
    DatabaseUnavailable,
)
from tasks.ingest import ingest_lines
from tasks.process import process_pending

STATEMACHINES = Path(__file__).resolve().parents[2] / "statemachines"


def test_a_value_too_large_for_an_index_is_a_rejected_row_not_an_outage(engine: Engine) -> None:
    with engine.begin() as conn:  # what a 1 MB `source` did to the copy step
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        with pytest.raises(DatabaseRejectedRow, match="SQLSTATE 54000") as raised:
            conn.execute(
                text(
                    "INSERT INTO vitals_categorized (raw_id, user_id, metric, loinc_code, "
                    "start_time, value, unit, source, original_value, original_unit) "
                    "VALUES (1, 1, 'heart_rate', '8867-4', now(), 70, '/min', "
                    "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i), "
                    "70, 'bpm')"
                )
            )
    assert "md5" not in str(raised.value)


def test_timeouts_and_lost_connections_have_their_own_names(engine: Engine) -> None:
    with engine.connect() as holder, engine.connect() as other:
        holder.execute(text("LOCK TABLE user_settings IN ACCESS EXCLUSIVE MODE"))
        other.execute(text("SET lock_timeout = '1ms'"))
        with pytest.raises(DatabaseTimeout, match="SQLSTATE 55P03"):
            other.execute(text("SELECT count(*) FROM user_settings"))
        other.rollback()
        holder.rollback()
    with engine.connect() as doomed:
        with pytest.raises(DatabaseUnavailable):
            doomed.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        doomed.invalidate()


@pytest.mark.parametrize(
    ("code", "named"),
    [
        ("08006", DatabaseUnavailable), ("57P01", DatabaseUnavailable),
        ("53300", DatabaseUnavailable), ("57014", DatabaseTimeout), ("55P03", DatabaseTimeout),
        ("53100", DatabaseResourceExhausted), ("53200", DatabaseResourceExhausted),
        ("40001", DatabaseConflict), ("40P01", DatabaseConflict),
        ("54000", DatabaseRejectedRow), ("23505", DatabaseRejectedRow),
        ("22003", DatabaseRejectedRow), ("42P01", None),
    ],
)  # fmt: skip
def test_sqlstates_map_to_names(code: str, named: type | None) -> None:
    assert error_class_of(code) is named


def test_a_megabyte_source_is_rejected_at_ingest_and_the_user_is_processed(
    engine: Engine,
) -> None:
    reading = {"user_id": 4, "metric": "heart_rate", "value": 70, "unit": "bpm",
               "start_time": "2024-03-10T08:00:00+00:00"}  # fmt: skip
    lines = [json.dumps({**reading, "source": "s" * 1_000_000}), json.dumps(reading)]
    report = ingest_lines(engine, "vitals", lines)
    assert (report.inserted, report.rejected) == (1, 1)
    assert dict(report.problems) == {1: "too_long:source"}
    assert all(run.error is None for run in process_pending(["vitals"]))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM vitals_agg_hourly")).scalar_one() == 1


def _lambda_retriers(path: Path) -> dict[str, list[dict]]:
    retriers: dict[str, list[dict]] = {}

    def walk(states: dict) -> None:
        for name, state in states.items():
            if state.get("Type") == "Task" and "lambda" in json.dumps(state.get("Resource", "")):
                retriers[name] = state.get("Retry", [])
            for branch in state.get("Branches", []):
                walk(branch["States"])

    walk(json.loads(path.read_text())["States"])
    return retriers


@pytest.mark.parametrize("definition", ["healthflow.asl.json", "labs.asl.json"])
def test_every_lambda_step_retries_transient_database_failures_only(definition: str) -> None:
    tasks = _lambda_retriers(STATEMACHINES / definition)
    assert tasks
    for name, retry in tasks.items():
        retried = {error for retrier in retry for error in retrier["ErrorEquals"]}
        for transient in ("DatabaseUnavailable", "DatabaseTimeout", "DatabaseResourceExhausted",
                          "DatabaseConflict"):  # fmt: skip
            assert transient in retried, (name, transient)
        assert "DatabaseRejectedRow" not in retried and "States.ALL" not in retried, name


def test_a_connection_dropped_during_a_claim_does_not_end_process(engine: Engine) -> None:
    """The first claim's backend is terminated in the middle of its UPDATE (a real dropped
    connection, as a failover or an idle-session killer gives): `healthflow process` stopped
    with DatabaseUnavailable there, every other user's work with it."""
    ingest_lines(
        engine,
        "vitals",
        [
            json.dumps(
                {
                    "user_id": user,
                    "metric": "heart_rate",
                    "value": 60 + minute,
                    "unit": "bpm",
                    "start_time": f"2024-03-01T08:{minute:02d}:00Z",
                }
            )
            for user in (1, 2)
            for minute in range(10)
        ],
    )
    with engine.begin() as conn:
        conn.execute(text("CREATE SEQUENCE drop_once"))
        conn.execute(
            text(
                "CREATE FUNCTION drop_connection_once() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN IF nextval('drop_once') = 1 THEN "  # a sequence survives the rollback
                "PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NULL; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER drop_connection_once BEFORE UPDATE ON vitals_raw_data "
                "FOR EACH STATEMENT EXECUTE FUNCTION drop_connection_once()"
            )
        )
    try:
        runs = process_pending(["vitals"])
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER drop_connection_once ON vitals_raw_data"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT last_value FROM drop_once")).scalar_one() > 1
        statuses = dict(
            conn.execute(text("SELECT status, count(*) FROM vitals_raw_data GROUP BY 1")).all()
        )
    assert [(run.user_id, run.error) for run in runs] == [(1, None), (2, None)]
    assert statuses == {"aggregated": 20}
