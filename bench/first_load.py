"""A first bulk load: one user's year of watch samples and many users' month, at once.

Loaded into a fresh database (a new embedded server unless HEALTHFLOW_DATABASE_URL is set), then
processed the way `healthflow run` drains the queue: one vitals trigger per user through the
local cloud (SQS, pipe, the real ASL, the real steps). The big user's bounded claims
(`claim_max_rows`) chain through backlog continuations. Then the same data is loaded fresh again
and processed by direct mode (`healthflow process`), and every export and aggregate table of
the two is compared. It prints both figures side by side and exits 1 if any execution failed,
any row is left unsettled, or anything differs.

`--stale-statistics` makes the planner believe the raw table is empty before processing (as
after an autoanalyze that ran mid-load): the claims must not care.

    .venv/bin/python bench/first_load.py [--big-rows 1000000] [--users 200] [--days 30]
                                         [--rate light] [--stale-statistics]
                                         [--claim-max-rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine

from bench._common import bench_engine, make_statistics_stale, truncate
from bench.workflow import aggregate_snapshot, all_exports, run_direct, unsettled_rows
from tasks.db.models import Base
from tasks.ingest import ingest_lines
from tasks.localcloud.cloud import LocalCloud
from tasks.sample import generate_users, iter_vitals
from tasks.settings import get_settings

BIG_USER = 1
YEAR_START = datetime(2024, 1, 1, tzinfo=UTC)
MONTH_START = date(2024, 12, 1)


def year_of_samples(rows: int) -> Iterator[str]:
    """`rows` readings of one watch spread evenly over 2024: heart rate mostly, with SpO2 and
    steps in between (each line a distinct reading)."""
    step = timedelta(seconds=366 * 86_400 / rows)
    for i in range(rows):
        at = (YEAR_START + i * step).isoformat()
        if i % 10 == 9:
            metric, value, unit = "spo2", 95 + i % 5, "%"
        elif i % 10 == 4:
            metric, value, unit = "steps", i % 120, "count"
        else:
            metric, value, unit = "heart_rate", 55 + i % 60, "bpm"
        yield (
            f'{{"user_id": {BIG_USER}, "metric": "{metric}", "value": {value}, '
            f'"unit": "{unit}", "start_time": "{at}", "source": "watch"}}'
        )


class Dataset:
    def __init__(self, big_rows: int, users: int, days: int, rate: str) -> None:
        everyone = generate_users(users + 1, seed=5)  # user 1 is the one with the watch
        small = everyone[1:]
        self.user_ids = [int(u["user_id"]) for u in everyone]
        self.users = [json.dumps(u) for u in everyone]
        self.vitals = list(year_of_samples(big_rows)) + [
            json.dumps(row) for row in iter_vitals(small, MONTH_START, days, seed=5, rate=rate)
        ]
        self.big_rows = big_rows

    def load(self, engine: Engine, *, stale: bool) -> float:
        """Empty every table and ingest the dataset; returns the ingest's seconds."""
        truncate(engine, *(table.name for table in Base.metadata.sorted_tables))
        started = time.perf_counter()
        ingest_lines(engine, "users", self.users)
        ingest_lines(engine, "vitals", self.vitals)
        seconds = time.perf_counter() - started
        if stale:
            with engine.begin() as conn:
                make_statistics_stale(conn, "vitals_raw_data")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rate", choices=("light", "device"), default="light")
    parser.add_argument("--stale-statistics", action="store_true")
    parser.add_argument(
        "--claim-max-rows", type=int, help="bound of a workflow claim (default: the setting's)"
    )
    args = parser.parse_args()
    if args.claim_max_rows:
        os.environ["HEALTHFLOW_CLAIM_MAX_ROWS"] = str(args.claim_max_rows)
        get_settings.cache_clear()

    data = Dataset(args.big_rows, args.users, args.days, args.rate)
    rows = len(data.vitals)
    max_rows = get_settings().claim_max_rows
    print(
        f"first load: user {BIG_USER} with {data.big_rows:,} vitals rows over a year, "
        f"{args.users} users with {args.days} days each ({rows - data.big_rows:,} rows); "
        f"{rows:,} rows in all; claims bounded at {max_rows:,} rows"
        + ("; statistics made stale before processing" if args.stale_statistics else ""),
        flush=True,
    )
    with bench_engine() as engine:
        ingest_seconds = data.load(engine, stale=args.stale_statistics)
        print(f"  ingest: {ingest_seconds:.1f} s ({rows / ingest_seconds:,.0f} rows/s)", flush=True)
        with LocalCloud() as cloud:
            for user_id in data.user_ids:
                cloud.send_message(
                    {"job_type": "process_pending_vitals", "user_id": user_id, "priority": "normal"}
                )
            started = time.perf_counter()
            results = cloud.drain()
            workflow_seconds = time.perf_counter() - started
            dead_letters = len(cloud.dlq_messages())
        failed = sum(not r.succeeded for r in results)
        unsettled = unsettled_rows(engine)
        through_workflow, tables = all_exports(engine), aggregate_snapshot(engine)
        data.load(engine, stale=args.stale_statistics)
        direct_seconds, direct_claims = run_direct()
        direct = all_exports(engine)
        same_tables = aggregate_snapshot(engine) == tables
    different = [name for name in direct if direct[name] != through_workflow.get(name)]
    print(
        f"  local cloud (SQS, pipe, ASL, steps): {len(results)} executions "
        f"({len(results) - len(data.user_ids)} backlog continuations) in "
        f"{workflow_seconds:.1f} s, {rows / workflow_seconds:,.0f} rows/s"
    )
    ratio = workflow_seconds / direct_seconds
    print(
        f"  direct mode (process_pending):       {direct_claims} claims in {direct_seconds:.1f} s, "
        f"{rows / direct_seconds:,.0f} rows/s; workflow/direct {ratio:.2f}x"
    )
    print(
        f"  failed executions {failed}, dead letters {dead_letters}, raw rows "
        + ", ".join(f"{status} {count}" for status, count in unsettled.items())
    )
    export_rows = sum(len(found) - 1 for found in direct.values())
    verdict = "yes" if not different else "NO: " + ", ".join(different)
    print(
        f"  exports equal to direct mode: {verdict}"
        f" ({len(direct)} exports, {export_rows:,} rows); aggregate tables equal: "
        f"{'yes' if same_tables else 'NO'}"
    )
    ok = not failed and not dead_letters and not any(unsettled.values())
    ok = ok and not different and same_tables
    print(f"  {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
