"""`healthflow`: the command line. Commands print ids and counts, never health data."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks import cli_args
from tasks.cli_args import OneLineParser, PrerequisiteMissing, UsageError
from tasks.progress import Progress, enable_notices
from tasks.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from tasks.process import ClaimRun

Handler = Callable[[argparse.Namespace], int]


def _engine(check_schema: bool = True) -> Engine:
    from tasks.db.engine import get_engine
    from tasks.db.migrate import ensure_current

    engine = get_engine()
    if check_schema:
        ensure_current(engine)
    return engine


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from tasks.db.migrate import current_revision, upgrade

    engine = _engine(check_schema=False)
    upgrade(engine)
    print(f"database schema at revision {current_revision(engine)}")
    return 0


def _input_file(name: str) -> Path:
    """The input path, checked before anything slow (the database, the model) starts."""
    path = Path(name)
    with path.open("rb"):
        pass
    return path


def _counted(lines: Iterable[str], progress: Progress, every: int = 10_000) -> Iterator[str]:
    """The lines, unchanged, reporting progress every `every` lines (cheap on a million)."""
    count = 0
    for line in lines:
        yield line
        count += 1
        if count == every:
            progress.update(count)
            count = 0
    progress.update(count)


def cmd_ingest(args: argparse.Namespace) -> int:
    from tasks.ingest import ingest_lines

    path = _input_file(args.file)
    engine = _engine()
    with (
        # Undecodable bytes reach ingest as lone surrogates: that line is malformed, not the file.
        path.open(encoding="utf-8", errors="surrogateescape") as handle,
        Progress(None, unit="lines", description=f"ingest {args.domain}") as progress,
    ):
        report = ingest_lines(engine, args.domain, _counted(handle, progress))
    print(report.summary())
    for reason, count in sorted(report.reasons.items()):
        print(f"  {count:>8}  {reason}")
    for line, reason in report.problems[: args.show]:
        print(f"  line {line}: {reason}")
    if len(report.problems) > args.show:
        print(f"  ... {len(report.problems) - args.show} more (use --show N)")
    if report.lines and not (report.inserted or report.rejected or report.duplicates):
        print(
            f"healthflow: nothing stored: none of the {report.lines} lines of {path} is a "
            f"{args.domain} line (formats: docs/formats.md)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def _print_run(run: ClaimRun) -> None:
    status = f"FAILED {run.error}" if run.error else "ok"
    details = " ".join(
        f"{label}={next(iter(out.values()))}" if label == "mark" else
        f"{label}:{','.join(f'{k}={v}' for k, v in out.items() if k != 'granularity')}"
        for label, out in run.steps.items()
    )  # fmt: skip
    print(f"{run.domain:<9} user {run.user_id:<6} claimed {run.claimed:<8} {status}  {details}")


def cmd_process(args: argparse.Namespace) -> int:
    from tasks.domains import DOMAINS_IN_ORDER
    from tasks.process import pending_work, process_work, unsettled

    _engine()
    domains = [args.domain] if args.domain else list(DOMAINS_IN_ORDER)
    work = pending_work(domains, args.user_id)
    progress = Progress(len(work), unit="claims", description="process")

    def done(run: ClaimRun) -> None:
        progress.update(1)
        if args.verbose:
            _print_run(run)

    with progress:
        runs = process_work(work, done, workers=args.workers)
    failed = [r for r in runs if r.error]
    rows = sum(r.claimed for r in runs)
    left = unsettled(runs)
    set_aside = sum(r.set_aside for r in runs)
    print(
        f"processed {len(runs)} claims, {rows} rows, {len(failed)} failed, "
        f"{set_aside} rows set aside, {len(left)} users left unsettled"
    )
    for run in failed:
        _print_run(run)
    # A failure a later claim of the same user completed is no failure of the command.
    return 1 if left else 0


def cmd_export(args: argparse.Namespace) -> int:
    from tasks.aggregation import GRANULARITIES
    from tasks.export import export_rows, write_csv

    levels = list(GRANULARITIES[args.domain])
    if args.granularity not in levels:
        print(
            f"healthflow: {args.domain} has no {args.granularity} buckets; "
            f"choose one of: {', '.join(levels)}",
            file=sys.stderr,
        )
        return EXIT_USAGE

    rows = export_rows(
        _engine(), args.domain, args.granularity, user_id=args.user_id,
        by_meal_type=args.by_meal_type,
    )  # fmt: skip
    try:
        write_csv(rows, sys.stdout)
        sys.stdout.flush()
    finally:
        # Close the stream here, not at garbage collection: when the reader left early the
        # rollback of the abandoned query must not surface as a second, misleading error.
        close = getattr(rows, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from tasks.sample import write_sample_dataset

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: give a folder (it is created when missing)")
    paths = write_sample_dataset(
        out, n_users=args.users, start=args.start, days=args.days, seed=args.seed,
        rate=args.rate,
    )  # fmt: skip
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_labs_review(args: argparse.Namespace) -> int:
    import getpass

    from tasks.labs.review import InvalidReviewFile, apply_review, export_review
    from tasks.steps.definitions import transaction

    if args.export:
        with transaction() as conn:
            lines = export_review(conn, Path(args.export))
        print(f"{lines} uncategorized names -> {args.export}")
        return 0
    source = _input_file(args.apply)
    try:
        applied = apply_review(source, reviewer=args.reviewer or getpass.getuser())
    except InvalidReviewFile as error:
        print(f"healthflow: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"{applied.aliases} site aliases stored; {applied.users} users reprocessed"
        + (f", {applied.failed_users} failed" if applied.failed_users else "")
    )
    return EXIT_FAILED if applied.failed_users else 0


def cmd_labs_categorize(args: argparse.Namespace) -> int:
    from tasks.labs.csv_io import InvalidLabCsv, categorize_csv
    from tasks.labs.matcher import LabQuery, MatchResult
    from tasks.steps.labs import get_matcher

    source = _input_file(args.input)
    with source.open("rb") as handle:
        total = max(sum(1 for _ in handle) - 1, 0)
    progress = Progress(total, unit="names", description="categorize")
    matcher = get_matcher()

    class CountingMatcher:
        def match_many(self, queries: Sequence[LabQuery]) -> list[MatchResult]:
            results = matcher.match_many(queries)
            progress.update(len(queries))
            return list(results)

    try:
        with progress:
            counts = categorize_csv(source, Path(args.output), CountingMatcher())
    except InvalidLabCsv as error:
        print(f"healthflow: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"{counts['rows']} rows: {counts['categorized']} categorized, "
        f"{counts['uncategorized']} left uncategorized -> {args.output}"
    )
    return 0


# ---------------------------------------------------------------------------- db url / shell


def _psql() -> str:
    """The psql that ships inside pgserver (in the venv), else one on PATH."""
    import shutil
    from importlib.util import find_spec

    spec = find_spec("pgserver")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "pginstall" / "bin" / "psql"
        if bundled.exists():
            return str(bundled)
    found = shutil.which("psql")
    if found is None:
        raise PrerequisiteMissing("psql not found: it ships with pgserver (make venv installs it)")
    return found


def _database_for_tools(*, keep_running: bool = False) -> tuple[str, dict[str, str]]:
    """The URL of the database the commands use, as psql reads it, and the environment psql
    needs (an IAM token as PGPASSWORD). Starts the embedded server when it is the one."""
    from sqlalchemy.engine import make_url

    from tasks.db import engine as db_engine

    settings = get_settings()
    extra: dict[str, str] = {}
    if settings.database_url:
        url = make_url(db_engine.sqlalchemy_url(settings.database_url))
    elif db_engine.uses_iam_authentication(settings):
        from tasks.aws import client

        url = db_engine.iam_url(settings)
        extra["PGPASSWORD"] = client("rds", settings).generate_db_auth_token(
            DBHostname=url.host, Port=url.port or 5432, DBUsername=url.username
        )
    elif settings.db_secret_arn:
        secret_url = db_engine.url_from_secret(
            settings.db_secret_arn, settings.aws_region, settings.db_name
        )
        url = make_url(secret_url)
    else:
        pgdata = settings.embedded_pgdata
        if keep_running:
            pgdata.mkdir(parents=True, exist_ok=True)
            db_engine.keep_running_marker(pgdata).touch()
        embedded = make_url(db_engine.embedded_url(pgdata))
        url = embedded.set(password=None)
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return libpq, extra


def cmd_db_url(args: argparse.Namespace) -> int:
    url, _ = _database_for_tools(keep_running=True)
    print(url)
    if not get_settings().database_url:
        print(
            "healthflow: the embedded PostgreSQL keeps running for other programs; "
            "`healthflow db stop` stops it",
            file=sys.stderr,
        )
    return 0


def cmd_db_shell(args: argparse.Namespace) -> int:
    import signal
    import subprocess

    from sqlalchemy.engine import make_url

    psql = _psql()
    url, extra = _database_for_tools()
    parsed = make_url(url)
    if parsed.password:  # to psql's environment, not its command line (`ps` shows that)
        extra["PGPASSWORD"] = parsed.password
        url = parsed.set(password=None).render_as_string(hide_password=False)
    command = [psql, url, "--set", "ON_ERROR_STOP=1"]
    for sql in args.command or []:
        command += ["--command", sql]
    if args.file:
        command += ["--file", str(_input_file(args.file))]
    # Ctrl-C belongs to psql (it cancels the running query); this process only waits.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        returncode = subprocess.call(command, env={**os.environ, **extra})
    finally:
        signal.signal(signal.SIGINT, previous)
    # psql: 1 a fatal error of its own, 2 the connection failed, 3 a statement failed.
    return {0: 0, 2: EXIT_DATABASE}.get(returncode, EXIT_FAILED)


def cmd_db_stop(args: argparse.Namespace) -> int:
    from tasks.db import engine as db_engine

    settings = get_settings()
    pgdata = settings.embedded_pgdata
    db_engine.keep_running_marker(pgdata).unlink(missing_ok=True)
    if settings.database_url or not (pgdata / "postmaster.pid").exists():
        print("the embedded PostgreSQL is not running")
        return 0
    import pgserver

    db_engine.forget_dead_handles(pgdata)
    pgserver.get_server(pgdata, cleanup_mode="stop").cleanup()
    if (pgdata / "postmaster.pid").exists():
        print("the embedded PostgreSQL is still used by another healthflow command; it stops "
              "when that one ends")  # fmt: skip
    else:
        print(f"stopped the embedded PostgreSQL in {pgdata}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"healthflow {version('healthflow')}"
    except PackageNotFoundError:
        return "healthflow (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="healthflow", description=__doc__)
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an unexpected error"
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_db_commands(sub)
    add_data_commands(sub)

    from tasks import cli_workflow

    cli_workflow.add_commands(sub)
    # `--debug` after the command as well (`healthflow run --debug`); SUPPRESS keeps a sub-
    # command's default from overwriting the one given before it.
    for each in cli_args.all_parsers(parser):
        if each is not parser:
            each.add_argument(
                "--debug", action="store_true", default=argparse.SUPPRESS,
                help="show the full traceback of an unexpected error",
            )  # fmt: skip
    return parser


def add_db_commands(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="the database: schema, address, a psql shell").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    db.add_parser("upgrade", help="apply migrations").set_defaults(handler=cmd_db_upgrade)
    db.add_parser(
        "url",
        help="print the URL of the database the commands use (the embedded one is started and "
        "kept running until `db stop`)",
    ).set_defaults(handler=cmd_db_url)
    shell = db.add_parser("shell", help="psql on the database the commands use")
    shell.add_argument(
        "-c", "--command", action="append", metavar="SQL",
        help="run SQL and exit (repeatable); without -c or -f psql reads stdin or prompts",
    )  # fmt: skip
    shell.add_argument("-f", "--file", help="run the SQL in this file and exit")
    shell.set_defaults(handler=cmd_db_shell)
    db.add_parser(
        "stop", help="stop the embedded PostgreSQL that `db url` left running"
    ).set_defaults(handler=cmd_db_stop)


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    ingest = sub.add_parser("ingest", help="insert JSON Lines as pending raw rows")
    ingest.add_argument(
        "domain", choices=["users", "labs", "vitals", "nutrition"], help="what the file holds"
    )
    ingest.add_argument("file", help="a JSON Lines file (formats: docs/formats.md)")
    ingest.add_argument(
        "--show", type=cli_args.non_negative_int, default=20,
        help="problem lines to list (default 20)",
    )  # fmt: skip
    ingest.set_defaults(handler=cmd_ingest)

    process = sub.add_parser("process", help="process pending rows directly (no workflow)")
    process.add_argument(
        "--domain", choices=["labs", "vitals", "nutrition"], help="only this domain"
    )
    process.add_argument("--user-id", type=cli_args.user_id, help="only this user")
    process.add_argument("-v", "--verbose", action="store_true", help="a line per claim")
    process.add_argument(
        "--workers", type=cli_args.positive_int, default=2,
        help="claims processed at once (default 2)",
    )  # fmt: skip
    process.set_defaults(handler=cmd_process)

    export = sub.add_parser("export", help="aggregates as CSV on stdout")
    export.add_argument("domain", choices=["labs", "vitals", "nutrition"], help="which aggregates")
    export.add_argument(
        "--granularity",
        required=True,
        choices=["hourly", "daily", "weekly", "monthly", "quarterly", "yearly"],
        help="vitals: hourly, daily, weekly, monthly; labs: daily, monthly, quarterly, yearly; "
        "nutrition: daily, weekly, monthly",
    )
    export.add_argument("--user-id", type=cli_args.user_id, help="only this user")
    export.add_argument("--by-meal-type", action="store_true", help="nutrition: per meal type")
    export.set_defaults(handler=cmd_export)

    sample = sub.add_parser("sample", help="write a synthetic sample dataset (JSON Lines)")
    sample.add_argument("--out", default="sample-data", help="folder for the .jsonl files")
    sample.add_argument(
        "--users", type=cli_args.positive_int, default=5, help="number of users (default 5)"
    )
    sample.add_argument(
        "--start", type=cli_args.iso_date, default=date(2024, 1, 1),
        help="first day, YYYY-MM-DD (default 2024-01-01)",
    )  # fmt: skip
    sample.add_argument(
        "--days", type=cli_args.positive_int, default=30, help="days of data (default 30)"
    )
    sample.add_argument("--seed", type=int, default=7, help="random seed: same seed, same data")
    sample.add_argument(
        "--rate",
        choices=["device", "light"],
        default="light",
        help="light: a heart rate about every 30 minutes; "
        "device: one every few minutes, as a wearable syncs",
    )
    sample.set_defaults(handler=cmd_sample)

    labs = sub.add_parser("labs", help="lab categorization").add_subparsers(
        dest="labs_command", required=True, metavar="ACTION"
    )
    categorize = labs.add_parser("categorize", help="map test names to LOINC codes (CSV)")
    categorize.add_argument("--input", required=True, help="a CSV with columns test_name,unit")
    categorize.add_argument(
        "--output", required=True,
        help="the CSV to write: the input's columns plus loinc_code, loinc_name, confidence, "
        "method",
    )  # fmt: skip
    categorize.set_defaults(handler=cmd_labs_categorize)
    review = labs.add_parser(
        "review", help="export uncategorized names for review; apply a reviewed file"
    )
    action = review.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--export", metavar="FILE",
        help="write the distinct uncategorized names: test_name, unit, rows, candidates and an "
        "empty accept_loinc column to fill",
    )  # fmt: skip
    action.add_argument(
        "--apply", metavar="FILE",
        help="store the filled accept_loinc lines as site aliases (they win over every matcher "
        "tier), then re-categorize and re-aggregate the rows they change",
    )  # fmt: skip
    review.add_argument("--reviewer", help="who reviewed (default: the login name)")
    review.set_defaults(handler=cmd_labs_review)


# Exit codes, one per kind of mistake, so a script can tell them apart (docs/cli.md).
EXIT_FAILED = 1  # the command ran and some of its work failed (see its output)
EXIT_USAGE = 2  # a bad argument (argparse uses 2 as well)
EXIT_NO_FILE = 3  # an input file that does not exist or cannot be read
EXIT_NO_EXECUTION = 4  # an execution name or ARN that does not exist
EXIT_DATABASE = 5  # the database is unreachable or its schema is out of date
EXIT_CONFIG = 6  # a setting the command needs is missing or invalid
EXIT_INTERNAL = 70  # a defect: rerun with --debug for the traceback


def _closed_pipe(error: BaseException | None) -> bool:
    """True when `error` is, or was raised while handling, a closed stdout (`| head`)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, BrokenPipeError):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def _validation_line(error: Any, name: Callable[[str], str]) -> str:
    """Each problem as `FIELD: rule`, never the value given (it may be a secret or health data)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "value"
        rule = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{name(where)}: {rule}")
    return "; ".join(problems)


def _database_line(error: BaseException) -> str:
    """Why the database cannot be used, from the driver's first line: a database that does not
    exist, a refused login and an unreachable server read differently."""
    cause = error.__cause__ or error.__context__
    detail = str(getattr(cause, "orig", None) or cause or error).strip().splitlines()
    first = detail[0] if detail else str(error)
    if "does not exist" in first and "database" in first:
        return (
            f"the database does not exist on its server ({first}): create it, or fix "
            "HEALTHFLOW_DATABASE_URL"
        )
    if "authentication failed" in first or ("role" in first and "does not exist" in first):
        return f"the database server refused the login ({first}): fix HEALTHFLOW_DATABASE_URL"
    return (
        f"cannot reach the database ({first}): is the server running, and is "
        "HEALTHFLOW_DATABASE_URL right?"
    )


def _one_line(error: BaseException) -> tuple[int, str]:
    """The exit code and the one line a user sees for `error` (no values, no traceback)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
    from pydantic import ValidationError

    from tasks.errors import (
        DatabaseUnavailable,
        ExecutionNotFound,
        HealthflowError,
        SchemaOutOfDate,
    )
    from tasks.settings import MissingSetting, env_name

    if isinstance(error, UsageError):
        return EXIT_USAGE, str(error)
    if isinstance(error, PrerequisiteMissing):
        return EXIT_CONFIG, str(error)
    if isinstance(error, ExecutionNotFound):
        return EXIT_NO_EXECUTION, str(error)
    if isinstance(error, DatabaseUnavailable):
        return EXIT_DATABASE, _database_line(error)
    if isinstance(error, SchemaOutOfDate):
        return EXIT_DATABASE, f"{type(error).__name__}: {error}"
    if isinstance(error, MissingSetting):
        return EXIT_CONFIG, f"configuration: {error}"
    if isinstance(error, ValidationError):
        # Settings come from the environment (exit 6); anything else was built from options.
        if error.title == "Settings":
            return EXIT_CONFIG, f"configuration: {_validation_line(error, env_name)}"
        return EXIT_USAGE, _validation_line(error, str)
    if isinstance(error, HealthflowError):
        return EXIT_FAILED, f"{type(error).__name__}: {error}"
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("ExecutionDoesNotExist", "InvalidArn", "StateMachineDoesNotExist"):
            return EXIT_NO_EXECUTION, f"{code}: {error.response['Error'].get('Message', '')}"
        return EXIT_FAILED, f"AWS {code}: {error.response.get('Error', {}).get('Message', '')}"
    if isinstance(error, NoRegionError):
        return EXIT_CONFIG, "AWS: no region: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's)"
    if isinstance(error, NoCredentialsError):
        return (
            EXIT_CONFIG,
            "AWS: no credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID and its secret",
        )
    if isinstance(error, BotoCoreError):
        return EXIT_CONFIG, f"AWS: {error}"
    if isinstance(
        error,
        FileNotFoundError
        | IsADirectoryError
        | PermissionError
        | NotADirectoryError
        | FileExistsError,
    ):
        where = f": {error.filename}" if error.filename else ""
        return EXIT_NO_FILE, f"{error.strerror or error}{where}"
    return (
        EXIT_INTERNAL,
        f"unexpected {type(error).__name__} (rerun with --debug for the traceback)",
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from tasks.redaction import install_data_free_hooks

    install_data_free_hooks()  # no traceback of a database error prints the row it quotes
    args = build_parser().parse_args(argv)
    enable_notices()
    try:
        get_settings()  # fail loudly on bad configuration before doing anything
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("healthflow: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if _closed_pipe(error):
            # The reader went away (`healthflow export ... | head`): stop quietly, and keep
            # Python from complaining again when it flushes stdout at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        if args.debug:
            raise
        code, line = _one_line(error)
        print(f"healthflow: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
