"""No health value leaves the database by way of an error: provoked failures are checked on
stderr, the server's log (the embedded server's, where the test can read it), traces and dead
letters for the values that went in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import Engine, text

MARKER_NAME = "Zyxwvutrin"  # a test name and a value that nothing else prints
MARKER_VALUE = "987.6543"
ROOT = Path(__file__).resolve().parents[2]


def _schema_url(database_url: str, schema: str) -> str:
    parts = urlsplit(database_url)
    query = [*parse_qsl(parts.query), ("options", f"-csearch_path={schema}")]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _lab_lines(count: int) -> str:
    return "".join(
        json.dumps({"user_id": 1 + i % 7, "entry_id": f"e{i}", "test_name": MARKER_NAME,
                    "value": float(MARKER_VALUE), "unit": "mmol/L",
                    "collected_at": "2024-01-02", "report_id": f"r{i}"}) + "\n"
        for i in range(count)
    )  # fmt: skip


def _server_log(engine: Engine) -> str:
    """The embedded server's log (pgserver writes it to `log` in its data directory)."""
    with engine.connect() as conn:
        try:
            directory = conn.execute(text("SHOW data_directory")).scalar_one()
        except Exception:  # not allowed to see it: a server the test does not own
            return ""
    log = Path(directory) / "log"
    return log.read_text(errors="replace") if log.exists() else ""


def test_a_connection_dropped_during_ingest_prints_no_row(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    path = tmp_path / "labs.jsonl"
    path.write_text(_lab_lines(120_000))
    log_before = len(_server_log(engine))
    # An uncommitted row with the entry id of line 50: the ingest's COPY waits for it in the
    # middle of the stream, where the server's error quotes the line it is on.
    holder = engine.connect()
    holder.execute(
        text(
            "INSERT INTO lab_report_raw (user_id, entry_id, test_name, value_text, status, "
            "collected_local) "
            "VALUES (1, 'e49', 'held', '1', 'pending', '2024-01-02')"
        )
    )
    env = {**os.environ, "HEALTHFLOW_DATABASE_URL": _schema_url(database_url, schema),
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    ingest = subprocess.Popen(
        [sys.executable, "-m", "tasks.cli", "ingest", "labs", str(path)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    output: dict[str, str] = {}
    reader = threading.Thread(
        target=lambda: output.update(zip(("out", "err"), ingest.communicate(), strict=True))
    )
    reader.start()
    terminated = False
    with engine.connect() as watcher:
        while not terminated and ingest.poll() is None:
            terminated = bool(
                watcher.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE query LIKE 'COPY lab_report_raw%' AND wait_event_type = 'Lock'"
                    )
                ).all()
            )
            watcher.commit()
    reader.join()
    holder.rollback()
    holder.close()

    assert terminated and ingest.returncode not in (0, None)
    assert "nothing from this file was stored" in output["err"]
    for text_ in (output["out"], output["err"], _server_log(engine)[log_before:]):
        assert MARKER_NAME not in text_ and MARKER_VALUE not in text_
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM lab_report_raw")).scalar_one() == 0


def test_a_failing_insert_in_a_step_leaves_no_value_in_traces_logs_or_dead_letters(
    engine: Engine, caplog, capsys
) -> None:
    from tasks.ingest import ingest_lines
    from tasks.localcloud.cloud import LocalCloud
    from tasks.localcloud.moto_ext import silence_parser_logs

    silence_parser_logs()
    reading = {"user_id": 3, "metric": "heart_rate", "value": 98.7654, "unit": "bpm",
               "start_time": "2024-03-10T08:00:00+00:00", "source": MARKER_NAME}  # fmt: skip
    line = json.dumps(reading)
    ingest_lines(engine, "vitals", [line])
    log_before = len(_server_log(engine))
    with engine.begin() as conn:  # an insert that fails quoting the row, as a server error can
        conn.execute(
            text(
                "CREATE FUNCTION refuse_reading() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'refused %', NEW.value USING DETAIL = NEW.source; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse_reading BEFORE INSERT ON vitals_categorized "
                "FOR EACH ROW EXECUTE FUNCTION refuse_reading()"
            )
        )
    try:
        with caplog.at_level("DEBUG"), LocalCloud(heartbeat_seconds=0.5) as cloud:
            cloud.send_message({"job_type": "process_pending_vitals", "user_id": 3})
            [result] = cloud.drain()
            seen = [json.dumps(cloud.history(result.execution_arn), default=str)]
            seen += [dead.body for dead in cloud.dlq_messages()]
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_reading ON vitals_categorized"))
            conn.execute(text("DROP FUNCTION refuse_reading()"))
    assert not result.succeeded and len(seen) == 2
    captured = capsys.readouterr()
    seen += [caplog.text, captured.out, captured.err, _server_log(engine)[log_before:]]
    for text_ in seen:
        assert MARKER_NAME not in text_ and "98.7654" not in text_


def test_uncaught_and_logged_database_errors_print_no_value(engine: Engine, capsys) -> None:
    import logging
    import sys as sys_

    from tasks.errors import DatabaseRejectedRow
    from tasks.redaction import DataFreeFormatter, data_free_traceback, install_data_free_hooks

    try:
        with engine.connect() as conn:
            conn.execute(text(f"SELECT '{MARKER_NAME}'::int"))
    except DatabaseRejectedRow as error:
        raised = error
    assert MARKER_NAME in str(raised.__cause__)  # the driver's text quotes it
    assert MARKER_NAME not in data_free_traceback(raised)
    assert "SQLSTATE 22P02" in data_free_traceback(raised)
    hooks = (sys_.excepthook, threading.excepthook)
    try:
        install_data_free_hooks(root_log_handlers=False)
        sys_.excepthook(type(raised), raised, raised.__traceback__)
    finally:
        sys_.excepthook, threading.excepthook = hooks
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, None)
    record.exc_info = (type(raised), raised, raised.__traceback__)
    logged = DataFreeFormatter("%(message)s").format(record)
    printed = capsys.readouterr().err
    assert "Traceback" in printed and "Traceback" in logged
    assert MARKER_NAME not in printed and MARKER_NAME not in logged
