"""Every exit code of docs/cli.md made by a real mistake, one line each; every option has help;
`db url`/`db shell`, a reprocess without a range, `dlq purge` and the switch of `send`."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from tasks.cli import build_parser, main
from tasks.cli_args import all_parsers
from tasks.db import engine as db_engine
from tasks.settings import get_settings
from tests.support.deadletters import add_good_and_bad

ROOT = Path(__file__).resolve().parents[2]
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(engine, capsys) -> Run:  # type: ignore[no-untyped-def]
    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as stop:  # argparse's own exits (usage errors, --version)
            code = int(stop.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HEALTHFLOW_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _libpq(engine: Engine) -> tuple[str, dict[str, str]]:
    """The test database as psql and a subprocess see it (URL, and the schema in PGOPTIONS)."""
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with engine.connect() as conn:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    return url, {"HEALTHFLOW_DATABASE_URL": url, "PGOPTIONS": f"-csearch_path={schema}"}


def _with_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    db_engine.set_engine(None)  # the command builds its engine from these settings


# ---------------------------------------------------------------------------- the exit-code table


def documented_codes() -> set[int]:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text[text.index("## Exit codes") :]
    section = section[: section.index("\n## ", 1)]
    return {int(code) for code in re.findall(r"^\| (\d+) \|", section, re.M)}


def done(cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    code, _, err = cli("process")
    return code, err


def stored_nothing(cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    # A labs file ingested as vitals: every line lacks what a vitals line needs.
    labs = tmp_path / "labs.jsonl"
    labs.write_text(
        json.dumps({"user_id": 1, "test_name": "Glucose", "value": 5.4, "unit": "mmol/L",
                    "collected_at": "2024-01-02"}) + "\n"
    )  # fmt: skip
    code, _, err = cli("ingest", "vitals", str(labs))
    assert "nothing stored" in err and "Glucose" not in err
    return code, err


def bad_option(cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    code, _, err = cli("process", "--user-id", "0")
    assert "--user-id" in err and "from 1 to" in err
    return code, err


def missing_file(cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    code, _, err = cli("ingest", "labs", str(tmp_path / "missing.jsonl"))
    assert "missing.jsonl" in err
    return code, err


def no_execution(cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    code, _, err = cli("trace", "no-such-execution")
    return code, err


def unreachable(cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    # Port 1 on the loopback: refused at once, nothing listens there.
    _with_settings(monkeypatch, HEALTHFLOW_DATABASE_URL="postgresql://postgres@127.0.0.1:1/x")
    code, _, err = cli("process")
    assert err.startswith("healthflow: cannot reach the database")
    return code, err


def missing_setting(cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    _with_settings(monkeypatch, HEALTHFLOW_DATABASE_URL="localhost:5432/healthflow")
    code, _, err = cli("process")
    assert "HEALTHFLOW_DATABASE_URL" in err and "postgresql://" in err
    return code, err


def defect(cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    # No user mistake may reach 70: by definition only a defect does, so one is planted.
    import tasks.cli as cli_module

    def broken(args: object) -> int:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(cli_module, "cmd_db_upgrade", broken)
    code, _, err = cli("db", "upgrade")
    assert "--debug" in err
    return code, err


def interrupted(cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Ctrl-C while `ingest` waits on its input: a FIFO whose writer is this test, so the
    command is known to be inside its handler (our open returns once it opened the FIFO)."""
    fifo = tmp_path / "input.jsonl"
    os.mkfifo(fifo)
    _, env = _libpq(db_engine.get_engine())
    command = subprocess.Popen(
        [sys.executable, "-m", "tasks.cli", "ingest", "vitals", str(fifo)],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with fifo.open("w"):
        command.send_signal(signal.SIGINT)
        _, err = command.communicate(timeout=120)
    return command.returncode, err


MISTAKES = {
    0: done,
    1: stored_nothing,
    2: bad_option,
    3: missing_file,
    4: no_execution,
    5: unreachable,
    6: missing_setting,
    70: defect,
    130: interrupted,
}


def test_the_table_covers_every_documented_code() -> None:
    assert set(MISTAKES) == documented_codes()


@pytest.mark.parametrize("expected", sorted(MISTAKES))
def test_each_documented_code_from_a_real_mistake(
    expected: int, cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        code, err = MISTAKES[expected](cli, tmp_path, monkeypatch)
    finally:
        get_settings.cache_clear()
    assert code == expected, err
    if expected:
        assert err.count("\n") == 1 and err.startswith("healthflow"), err
        assert "Traceback" not in err
    else:
        assert err == ""


# ---------------------------------------------------------------------------- more mistakes


@pytest.mark.parametrize(
    ("argv", "code", "names"),
    [
        (["process", "--workers", "0"], 2, "--workers"),
        (["cost", "--messages-per-day", "-5"], 2, "--messages-per-day"),
        (["cost", "--mix", "1,2"], 2, "--mix"),
        (
            [
                "start-execution",
                "--domain",
                "vitals",
                "--user-id",
                "1",
                "--from",
                "2024-02-01",
                "--to",
                "2024-01-01",
            ],
            2,
            "--from",
        ),
        (
            ["start-execution", "--domain", "vitals", "--user-id", "1", "--to", "2024-02-30"],
            2,
            "--to",
        ),
        (["send", "--domain", "labs", "--user-id", "281474976710656"], 2, "--user-id"),
        (["sample", "--out", "README.md"], 2, "--out"),
        (["export", "labs", "--granularity", "fortnightly"], 2, "--granularity"),
        (["ingest", "vitals", "README.md"], 1, "vitals"),
        (["send", "--target", "aws", "--domain", "labs", "--user-id", "1"], 6, "HEALTHFLOW_"),
    ],
)
def test_a_mistake_names_its_option_or_variable(
    argv: list[str], code: int, names: str, cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("HEALTHFLOW_QUEUE_URL", "ML_WORKER_SQS_QUEUE_URL", "HEALTHFLOW_ENV"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        got, _, err = cli(*argv)
    finally:
        get_settings.cache_clear()
    assert (got, err.count("\n")) == (code, 1), err
    assert names in err and "Traceback" not in err


def test_a_database_that_does_not_exist_reads_differently(
    cli: Run, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = engine.url.set(drivername="postgresql", database="healthflow_no_such_database")
    _with_settings(monkeypatch, HEALTHFLOW_DATABASE_URL=url.render_as_string(hide_password=False))
    try:
        code, _, err = cli("process")
    finally:
        get_settings.cache_clear()
    assert code == 5 and err.startswith("healthflow: the database does not exist"), err


def test_cost_without_node_says_so_in_one_line(tmp_path: Path) -> None:
    """A PATH without node (the interpreter is named by its path): one line, exit 6, no jsii
    traceback."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {"PATH": str(bin_dir), "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path),
           "HEALTHFLOW_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    assert shutil.which("node", path=env["PATH"]) is None
    done = subprocess.run(
        [sys.executable, "-m", "tasks.cli", "cost"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 6, done.stderr
    assert done.stderr.count("\n") == 1 and "Node.js" in done.stderr
    assert "Traceback" not in done.stderr


def test_debug_after_the_command_and_version(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.cli as cli_module

    def broken(args: object) -> int:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(cli_module, "cmd_db_upgrade", broken)
    with pytest.raises(ZeroDivisionError):
        main(["db", "upgrade", "--debug"])
    code, out, _ = cli("--version")
    assert code == 0 and out.startswith("healthflow ")


def test_every_option_and_command_has_help() -> None:
    missing = []
    for parser in all_parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [
                    f"{parser.prog} {c.dest}" for c in action._choices_actions if not c.help
                ]
            elif not action.help:
                missing.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


# ---------------------------------------------------------------------------- db url / shell


def test_db_shell_runs_sql_on_the_database_the_commands_use(engine: Engine) -> None:
    _, env = _libpq(engine)
    run = subprocess.run(
        [sys.executable, "-m", "tasks.cli", "db", "shell", "-c",
         "SELECT count(*) AS views FROM pg_views WHERE viewname LIKE 'lab_report_%' "
        "AND schemaname = current_schema()"],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[:3] == ["views", "-------", "4"]
    failing = subprocess.run(
        [sys.executable, "-m", "tasks.cli", "db", "shell"], input="SELECT no_such_column;\n",
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert failing.returncode == 1 and "no_such_column" in failing.stderr


def test_db_url_opens_the_embedded_server_until_db_stop() -> None:
    """With no URL set, `db url` starts the embedded server under the data directory and keeps
    it for other programs; `db shell` uses the same one; `db stop` ends it."""
    # Not under pytest's basetemp (see conftest: the server's system user needs access).
    data_dir = Path(tempfile.mkdtemp(prefix="healthflow-test-dburl-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHFLOW_")}
    env.update(HEALTHFLOW_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT))
    env.pop("PGOPTIONS", None)

    def healthflow(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tasks.cli", *argv], env=env, capture_output=True, text=True,
            timeout=180,
        )  # fmt: skip

    try:
        url = healthflow("db", "url")
        assert url.returncode == 0, url.stderr
        assert str(data_dir / "pgdata") in make_url(url.stdout.strip()).query["host"]
        with psycopg2.connect(url.stdout.strip()) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 40 + 2")
            assert cursor.fetchone() == (42,)
        conn.close()
        shell = healthflow("db", "shell", "-c", "SELECT 6 * 7 AS answer")
        assert shell.returncode == 0 and "42" in shell.stdout, shell.stderr
        assert (data_dir / "pgdata" / "postmaster.pid").exists()  # still up after the shell
    finally:
        stop = healthflow("db", "stop")
        shutil.rmtree(data_dir, ignore_errors=True)
    assert stop.returncode == 0 and stop.stdout.startswith("stopped"), stop.stdout + stop.stderr


# ---------------------------------------------------------------------------- workflow commands


def test_start_execution_without_a_range_reprocesses_every_row(
    cli: Run, private_data_dir: Path, tmp_path: Path
) -> None:
    vitals = tmp_path / "vitals.jsonl"
    vitals.write_text(
        "".join(
            json.dumps({"user_id": 4, "metric": "heart_rate", "value": 60 + day, "unit": "bpm",
                        "start_time": f"20{20 + day}-01-0{day + 1}T08:00:00+00:00"}) + "\n"
            for day in range(3)
        )
    )  # fmt: skip
    assert cli("ingest", "vitals", str(vitals))[0] == 0
    assert cli("process")[0] == 0
    code, out, _ = cli("start-execution", "--domain", "vitals", "--user-id", "4")
    assert code == 0, out
    assert out.splitlines()[0].endswith("(vitals, user 4): SUCCEEDED")
    assert "AggregateVitalsHourly" in out and "NothingToDo" not in out
    help_text = build_parser()._subparsers._group_actions[0].choices["start-execution"]  # type: ignore[union-attr]
    assert "all of its rows" in help_text.format_help()


def test_send_to_the_local_cloud_honours_the_switch(
    cli: Run, private_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.cli_workflow import _store

    monkeypatch.setenv("ML_WORKER_ENABLED", "false")
    get_settings.cache_clear()
    code, out, _ = cli("send", "--domain", "labs", "--user-id", "3")
    assert code == 0 and out.startswith("not sent") and "ML_WORKER_ENABLED" in out
    assert _store().queued() == []


def test_dlq_purge_asks_and_takes_only_what_cannot_be_redriven(
    cli: Run, private_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.cli_workflow import _store

    store = _store()
    good, _ = add_good_and_bad(store)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal: --yes is required
    code, out, err = cli("dlq", "purge")
    assert code == 2 and "--yes" in err and len(store.list_dead_letters()) == 2
    code, out, _ = cli("dlq", "purge", "--yes")
    assert code == 0 and "purged 1 dead letters" in out
    assert [d["message"] for d in store.list_dead_letters()] == [good]
    code, out, _ = cli("dlq", "purge", "--yes", "--user-id", "9")
    assert code == 0 and out.startswith("nothing to purge")
    code, out, _ = cli("dlq", "purge", "--yes", "--user-id", "8")
    assert code == 0 and store.list_dead_letters() == []


def test_dlq_purge_on_the_deployed_queue(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--target aws`: the purged dead letter is deleted, the others are visible again at once."""
    import boto3
    from moto import mock_aws

    for name in list(os.environ):
        if name.startswith(("HEALTHFLOW_QUEUE", "HEALTHFLOW_ENV", "ML_WORKER_", "AWS_")):
            monkeypatch.delenv(name)
    for name, value in (("AWS_REGION", "eu-west-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):  # fmt: skip
        monkeypatch.setenv(name, value)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        dlq = sqs.create_queue(QueueName="healthflow-dev-dlq")["QueueUrl"]
        good = json.dumps({"job_type": "process_pending_vitals", "user_id": 5})
        for body in (good, "{not json"):
            sqs.send_message(QueueUrl=dlq, MessageBody=body)
        monkeypatch.setenv("HEALTHFLOW_DEAD_LETTER_QUEUE_URL", dlq)
        get_settings.cache_clear()
        try:
            code, out, err = cli("dlq", "purge", "--target", "aws", "--yes")
        finally:
            get_settings.cache_clear()
        assert code == 0 and "purged 1 dead letters" in out, err
        left = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in left] == [good]
