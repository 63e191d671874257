"""`healthflow`: the command line. Commands print ids and counts, never health data."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

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


def cmd_ingest(args: argparse.Namespace) -> int:
    from tasks.ingest import ingest_file

    report = ingest_file(_engine(), args.domain, Path(args.file))
    print(report.summary())
    for reason, count in sorted(report.reasons.items()):
        print(f"  {count:>8}  {reason}")
    for line, reason in report.problems[: args.show]:
        print(f"  line {line}: {reason}")
    if len(report.problems) > args.show:
        print(f"  ... {len(report.problems) - args.show} more (use --show N)")
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
    from tasks.process import pending_work, process_work
    from tasks.steps.models import DOMAINS_IN_ORDER

    _engine()
    domains = [args.domain] if args.domain else list(DOMAINS_IN_ORDER)
    work = pending_work(domains, args.user_id)
    progress = None
    if sys.stderr.isatty() and work:
        from tqdm import tqdm

        progress = tqdm(total=len(work), unit="claim", file=sys.stderr)

    def done(run: ClaimRun) -> None:
        if progress:
            progress.update(1)
        elif args.verbose:
            _print_run(run)

    runs = process_work(work, done, workers=args.workers)
    if progress:
        progress.close()
    failed = [r for r in runs if r.error]
    rows = sum(r.claimed for r in runs)
    print(f"processed {len(runs)} claims, {rows} rows, {len(failed)} failed")
    for run in failed:
        _print_run(run)
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from tasks.export import export_rows, write_csv

    rows = export_rows(
        _engine(), args.domain, args.granularity, user_id=args.user_id,
        by_meal_type=args.by_meal_type,
    )  # fmt: skip
    write_csv(rows, sys.stdout)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from tasks.sample import write_sample_dataset

    paths = write_sample_dataset(
        Path(args.out), n_users=args.users, start=date.fromisoformat(args.start), days=args.days,
        seed=args.seed, rate=args.rate,
    )  # fmt: skip
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_labs_categorize(args: argparse.Namespace) -> int:
    from tasks.labs.csv_io import InvalidLabCsv, categorize_csv
    from tasks.steps.labs import get_matcher

    try:
        counts = categorize_csv(Path(args.input), Path(args.output), get_matcher())
    except InvalidLabCsv as error:
        print(f"healthflow: {error}", file=sys.stderr)
        return 2
    print(
        f"{counts['rows']} rows: {counts['categorized']} categorized, "
        f"{counts['uncategorized']} left uncategorized -> {args.output}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="healthflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply migrations").set_defaults(handler=cmd_db_upgrade)

    ingest = sub.add_parser("ingest", help="insert JSON Lines as pending raw rows")
    ingest.add_argument("domain", choices=["users", "labs", "vitals", "nutrition"])
    ingest.add_argument("file")
    ingest.add_argument("--show", type=int, default=20, help="problem lines to list")
    ingest.set_defaults(handler=cmd_ingest)

    process = sub.add_parser("process", help="process pending rows directly (no workflow)")
    process.add_argument("--domain", choices=["labs", "vitals", "nutrition"])
    process.add_argument("--user-id", type=int)
    process.add_argument("-v", "--verbose", action="store_true", help="a line per claim")
    process.add_argument("--workers", type=int, default=2, help="claims processed at once")
    process.set_defaults(handler=cmd_process)

    export = sub.add_parser("export", help="aggregates as CSV on stdout")
    export.add_argument("domain", choices=["labs", "vitals", "nutrition"])
    export.add_argument("--granularity", required=True)
    export.add_argument("--user-id", type=int)
    export.add_argument("--by-meal-type", action="store_true", help="nutrition: per meal type")
    export.set_defaults(handler=cmd_export)

    sample = sub.add_parser("sample", help="write a synthetic sample dataset (JSON Lines)")
    sample.add_argument("--out", default="sample-data")
    sample.add_argument("--users", type=int, default=5)
    sample.add_argument("--start", default="2024-01-01")
    sample.add_argument("--days", type=int, default=30)
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument("--rate", choices=["device", "light"], default="light")
    sample.set_defaults(handler=cmd_sample)

    labs = sub.add_parser("labs", help="lab categorization").add_subparsers(
        dest="labs_command", required=True
    )
    categorize = labs.add_parser("categorize", help="map test names to LOINC codes (CSV)")
    categorize.add_argument("--input", required=True)
    categorize.add_argument("--output", required=True)
    categorize.set_defaults(handler=cmd_labs_categorize)

    from tasks import cli_workflow

    cli_workflow.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    get_settings()  # fail loudly on bad configuration before doing anything
    from tasks.errors import HealthflowError
    from tasks.settings import MissingSetting

    try:
        return int(args.handler(args))
    except (HealthflowError, MissingSetting) as error:
        print(f"healthflow: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
