"""The command-line contracts, run through `main()` in process against the test database."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from tasks.cli import (
    EXIT_DATABASE,
    EXIT_INTERNAL,
    EXIT_NO_EXECUTION,
    EXIT_NO_FILE,
    EXIT_USAGE,
    main,
)
from tests.support.deadletters import add_good_and_bad
from tests.support.poison import insert_poison_row

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture
def cli(engine, capsys):  # type: ignore[no-untyped-def]
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_ingest_process_export_contract(cli, tmp_path) -> None:
    users = tmp_path / "users.jsonl"
    users.write_text('{"user_id": 1, "timezone": "America/New_York"}\n')
    code, out, _ = cli("ingest", "users", str(users))
    assert code == 0 and out.startswith("users: 1 lines: 1 time zones stored")
    assert "pending" not in out  # a time zone is a setting, not a raw row waiting
    code, out, _ = cli("ingest", "vitals", str(DATA / "ingest" / "vitals_mixed.jsonl"))
    assert code == 0 and "5 inserted as pending, 6 stored as rejected, 4 malformed" in out
    assert "line 5: malformed" in out
    code, out, _ = cli("process", "--domain", "vitals")
    assert code == 0 and "processed 2 claims" in out and "0 failed" in out

    code, out, _ = cli("export", "vitals", "--granularity", "hourly", "--user-id", "1")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["user_id", "loinc_code", "granularity", "bucket_start", "count",
                             "sum", "min", "max", "avg", "last", "unit"]  # fmt: skip
    # 08:00-05:00 on the day clocks sprang forward (02:00) is 09:00 EDT in New York.
    heart = [r for r in rows if r["loinc_code"] == "8867-4"]
    assert heart == [
        {"user_id": "1", "loinc_code": "8867-4", "granularity": "hourly",
         "bucket_start": "2024-03-10T09:00:00-04:00", "count": "2", "sum": "147.5",
         "min": "72.0", "max": "75.5", "avg": "73.75", "last": "75.5", "unit": "/min"}
    ]  # fmt: skip
    code, _, err = cli("export", "vitals", "--granularity", "quarterly")
    assert code == 2 and "vitals has no quarterly buckets" in err


def test_nutrition_export_columns(cli, tmp_path) -> None:
    meals = tmp_path / "meals.jsonl"
    meals.write_text(
        json.dumps({"user_id": 3, "meal_date": "2024-01-02", "meal_type": "dinner",
                    "food_name": "Soup", "calories": 250, "sodium_mg": 900}) + "\n"
    )  # fmt: skip
    cli("ingest", "nutrition", str(meals))
    cli("process")
    _, out, _ = cli("export", "nutrition", "--granularity", "weekly")
    header, row = list(csv.reader(io.StringIO(out)))
    assert header[:4] == ["user_id", "granularity", "bucket_start", "entries"]
    assert "calories" in header and "fiber_g" in header
    values = dict(zip(header, row, strict=True))
    assert (values["bucket_start"], values["entries"], values["calories"]) == (
        "2024-01-01",
        "1",
        "250.0",
    )
    assert values["fiber_g"] == ""  # missing stays missing


def test_labs_categorize_csv_contract(cli, tmp_path, lab_matcher) -> None:
    source = tmp_path / "in.csv"
    source.write_text("test_name,unit\nS. Creatinine,mg/dL\nPatient name,\n")
    target = tmp_path / "out.csv"
    code, out, _ = cli("labs", "categorize", "--input", str(source), "--output", str(target))
    assert code == 0 and "2 rows: 1 categorized" in out
    rows = list(csv.DictReader(target.open()))
    assert list(rows[0]) == [
        "test_name",
        "unit",
        "loinc_code",
        "loinc_name",
        "confidence",
        "method",
    ]
    assert rows[0]["loinc_code"] == "2160-0" and rows[1]["loinc_code"] == ""
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nx\n")
    assert cli("labs", "categorize", "--input", str(bad), "--output", str(target))[0] == 2


def test_local_workflow_commands(cli, lab_matcher) -> None:
    code, out, _ = cli("send", "--domain", "vitals", "--user-id", "5")
    assert code == 0 and "queued" in out
    code, out, _ = cli("run")
    assert code == 0 and "1 executions, 1 succeeded" in out
    name = next(
        line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("execution")
    )
    code, out, _ = cli("trace", name)
    assert code == 0 and "NothingToDo" in out and "ValidateMessage" in out

    code, out, _ = cli("start-execution", "--domain", "nutrition", "--user-id", "5",
                       "--from", "2024-01-01", "--to", "2024-01-31")  # fmt: skip
    assert code == 0 and "SUCCEEDED" in out
    code, out, _ = cli("dlq", "list")
    assert code == 0 and out.startswith("0 dead letters")


def test_graph_and_cost(cli) -> None:
    code, out, _ = cli("graph")
    assert code == 0 and out.startswith("flowchart TD") and "CategorizeLabs" in out
    assert "subgraph express" in out and "subgraph labs" in out
    # A template of the stack's shape (tests/infra prices the real synthesized one).
    template = Path(__file__).parents[1] / "data" / "infra" / "cost_template.json"
    code, out, _ = cli("cost", "--messages-per-day", "10000", "--template", str(template))
    assert code == 0 and "Step Functions Express requests" in out and "total a month" in out
    assert "$1.20" in out and "10,000/day" in out and "idle" in out


def test_commands_refuse_an_out_of_date_schema(make_schema_engine, capsys) -> None:
    from tasks.db import engine as db_engine

    db_engine.set_engine(make_schema_engine(migrate=False))
    try:
        assert main(["process"]) == EXIT_DATABASE
        assert "healthflow db upgrade" in capsys.readouterr().err
        assert main(["db", "upgrade"]) == 0
        assert main(["process"]) == 0
    finally:
        db_engine.set_engine(None)


def test_dlq_redrive_keeps_what_it_cannot_resend(cli, tmp_path, monkeypatch) -> None:
    from tasks.cli_workflow import _store
    from tasks.settings import get_settings

    monkeypatch.setenv("HEALTHFLOW_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        store = _store()
        good, bad = add_good_and_bad(store)
        code, out, _ = cli("dlq", "redrive")
        assert code == 0 and "redriven 1, kept 1" in out
        assert [d["message"] for d in store.list_dead_letters()] == [bad]
        assert [json.loads(b) for b in store.take_queued()] == [good]
    finally:
        get_settings.cache_clear()


def test_user_mistakes_give_one_line_and_distinct_exit_codes(cli, tmp_path) -> None:
    code, _, err = cli("ingest", "labs", str(tmp_path / "missing.jsonl"))
    assert code == EXIT_NO_FILE and err.count("\n") == 1 and "missing.jsonl" in err
    code, _, err = cli("labs", "categorize", "--input", str(tmp_path / "no.csv"),
                       "--output", str(tmp_path / "out.csv"))  # fmt: skip
    assert code == EXIT_NO_FILE and err.count("\n") == 1
    code, _, err = cli("trace", "no-such-execution")
    assert (
        code == EXIT_NO_EXECUTION
        and err == "healthflow: no local execution named no-such-execution\n"
    )
    code, _, err = cli("export", "labs", "--granularity", "hourly")
    assert code == EXIT_USAGE and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "labs", "--granularity", "fortnightly"])
    assert exit_info.value.code == EXIT_USAGE
    assert len({EXIT_NO_FILE, EXIT_NO_EXECUTION, EXIT_USAGE, EXIT_DATABASE}) == 4


def test_an_unexpected_error_is_one_line_unless_debug(cli, monkeypatch) -> None:
    import tasks.cli as cli_module

    def broken(args: object) -> int:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(cli_module, "cmd_db_upgrade", broken)
    code, _, err = cli("db", "upgrade")
    assert code == EXIT_INTERNAL
    assert (
        err == "healthflow: unexpected ZeroDivisionError (rerun with --debug for the traceback)\n"
    )
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "db", "upgrade"])


def test_export_into_a_closed_pipe_exits_quietly(engine, tmp_path) -> None:
    """`healthflow export ... | head`: the reader leaves early; no traceback, exit 0."""
    import subprocess
    import sys

    from tasks.ingest import ingest_lines

    ingest_lines(engine, "users", ['{"user_id": 1, "timezone": "UTC"}'])
    from datetime import UTC, datetime, timedelta

    start = datetime(2024, 1, 1, tzinfo=UTC)
    # Well past a pipe's 64 KiB buffer, so the writer really meets the closed end.
    lines = [
        json.dumps({"user_id": 1, "metric": "heart_rate", "value": 60 + i % 40, "unit": "bpm",
                    "start_time": (start + timedelta(hours=i)).isoformat()})
        for i in range(24 * 120)
    ]  # fmt: skip
    ingest_lines(engine, "vitals", lines)
    from tasks.process import process_pending

    assert all(run.error is None for run in process_pending(["vitals"]))
    url = engine.url.render_as_string(hide_password=False)
    with engine.connect() as conn:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    env = {**os.environ, "HEALTHFLOW_DATABASE_URL": url}
    env["PGOPTIONS"] = f"-csearch_path={schema}"
    pipeline = subprocess.run(
        f"{sys.executable} -m tasks.cli export vitals --granularity hourly | head -n 2",
        shell=True, capture_output=True, text=True, env=env, timeout=120,
        executable="/bin/bash",
    )  # fmt: skip
    assert pipeline.stdout.count("\n") == 2
    assert pipeline.stderr == ""


def test_run_survives_a_corrupt_local_queue_line(cli, tmp_path, monkeypatch) -> None:
    """One corrupt line no longer loses the queue: it goes to the dead letters with a reason,
    the good triggers are delivered, and the spool is emptied only after they ran."""
    from tasks.cli_workflow import _store
    from tasks.settings import get_settings

    monkeypatch.setenv("HEALTHFLOW_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        store = _store()
        store.enqueue('{"job_type": "process_pending_vitals", "user_id": 91}')
        store.enqueue('{"job_type": "process_pending_vit')  # cut short by a crash
        code, out, _ = cli("run")
        assert code == 0, out
        assert "1 message queued" in out
        assert store.queued() == []
        code, out, _ = cli("dlq", "list")
        assert out.startswith("1 dead letters (1 local-queue)")
        assert "local queue line 2 is not a JSON object" in out and "pending_vit" not in out
    finally:
        get_settings.cache_clear()


def _heart_rates(tmp_path: Path, user_id: int, n: int) -> Path:
    path = tmp_path / f"vitals-{user_id}.jsonl"
    lines = [
        {"user_id": user_id, "metric": "heart_rate", "value": 60 + i, "unit": "bpm",
         "start_time": f"2024-03-10T08:{i:02d}:00+00:00"}
        for i in range(n)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_process_exits_0_when_a_later_claim_completes_a_failed_one(cli, engine, tmp_path) -> None:
    cli("ingest", "vitals", str(_heart_rates(tmp_path, 7, 5)))
    # A fault that strikes once: a sequence's value survives the failed transaction's rollback.
    with engine.begin() as conn:
        conn.execute(text("CREATE SEQUENCE fault_once"))
        conn.execute(
            text(
                "CREATE FUNCTION fault_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF nextval('fault_once') = 1 THEN RAISE EXCEPTION 'fault'; END IF; "
                "RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER fault_once BEFORE INSERT ON vitals_categorized "
                "FOR EACH ROW EXECUTE FUNCTION fault_once()"
            )
        )
    try:
        code, out, _ = cli("process", "--domain", "vitals")
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER fault_once ON vitals_categorized"))
            conn.execute(text("DROP FUNCTION fault_once()"))
            conn.execute(text("DROP SEQUENCE fault_once"))
    assert "processed 2 claims, 10 rows, 1 failed, 0 rows set aside, 0 users left unsettled" in out
    assert code == 0


def test_process_exits_1_when_a_row_is_set_aside(cli, engine, tmp_path) -> None:
    cli("ingest", "vitals", str(_heart_rates(tmp_path, 8, 3)))
    insert_poison_row(engine, 8)  # past every ingest check: the copy step overflows on it
    code, out, _ = cli("process", "--domain", "vitals")
    assert "1 rows set aside, 1 users left unsettled" in out
    assert code == 1


def _statuses(engine, user_id: int) -> dict[str, int]:
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT status, count(*) AS n FROM vitals_raw_data WHERE user_id = :user_id "
                "GROUP BY status"
            ),
            {"user_id": user_id},
        )
        return {row.status: row.n for row in rows}


def test_one_run_bisects_a_poison_row_to_the_end(cli, engine, tmp_path) -> None:
    """`run` sweeps a failed claim again while bisection narrows the fault: one run sets the
    row that breaks the copy step aside and aggregates the others (it took one run per
    halving, and as many dead letters)."""
    cli("ingest", "vitals", str(_heart_rates(tmp_path, 11, 12)))
    insert_poison_row(engine, 11)
    code, out, _ = cli("run")
    assert _statuses(engine, 11) == {"aggregated": 12, "failed": 1}, out
    assert "sweep 2:" in out and code == 1  # failed executions stay visible in the exit code
    code, out, _ = cli("run")  # nothing left: one sweep, nothing sent
    assert code == 0 and "summary: 0 executions" in out and "1 sweep," in out


def test_a_failed_half_re_sends_its_trigger_within_the_drain(cli, engine, tmp_path) -> None:
    """With the bad row in the first half of every split (the lowest id), each failed half and
    the row failing alone re-send the trigger from the state machine (ContinueBisection): the
    bisection ends in the sweep where it starts, as deployed it ends with no redrive."""
    insert_poison_row(engine, 13)  # first by id
    cli("ingest", "vitals", str(_heart_rates(tmp_path, 13, 12)))
    code, out, _ = cli("run")
    assert _statuses(engine, 13) == {"aggregated": 12, "failed": 1}, out
    # Two whole-batch failures (the run's sweeps retry them), then one sweep bisects to the end.
    assert code == 1 and "3 sweeps" in out and "ContinueBisection" in out, out


def test_a_fault_every_claim_meets_stops_run_after_the_strikes(cli, engine, tmp_path) -> None:
    """A fault no row causes (every insert fails) must not bisect the user's rows away: the
    sweeps stop after `max_attempts` strikes and leave the rows for the next run."""
    cli("ingest", "vitals", str(_heart_rates(tmp_path, 12, 8)))
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION fault_always() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'fault'; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER fault_always BEFORE INSERT ON vitals_categorized "
                "FOR EACH ROW EXECUTE FUNCTION fault_always()"
            )
        )
    try:
        code, out, _ = cli("run")
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER fault_always ON vitals_categorized"))
            conn.execute(text("DROP FUNCTION fault_always()"))
    # Two failures of the whole batch, a failed half (no strike: it narrows, and the workflow
    # re-sends its trigger itself), then the half it released fails: the third strike.
    assert code == 1 and "summary: 4 executions, 0 succeeded, 4 failed" in out, out
    assert _statuses(engine, 12) == {"failed": 8}  # kept for the next run, none set aside
    code, out, _ = cli("run")  # the fault is gone: the next run settles every row
    assert code == 0 and _statuses(engine, 12) == {"aggregated": 8}, out
