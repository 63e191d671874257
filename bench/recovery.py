"""Recovery in proportion to the fault: N vitals rows of one user whose batch failed twice
(a database fault, fixed afterwards) against a first run of the same rows, in one process.

Before bisection every row of a batch that failed twice was retried alone, one claim per row
(992 of 13,133 rows recovered in 300 s through `run`); now the suspects are bisected.

    .venv/bin/python bench/recovery.py [--rows 13133]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, text

from bench._common import bench_engine, truncate
from tasks.ingest import ingest_lines
from tasks.process import process_claim, process_pending

FAULT = (
    "CREATE TABLE fault_switch (on_ boolean)",
    "INSERT INTO fault_switch VALUES (true)",
    "CREATE FUNCTION fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF EXISTS (SELECT 1 FROM fault_switch) THEN RAISE EXCEPTION 'fault'; END IF; "
    "RETURN NEW; END $$",
    "CREATE TRIGGER fault BEFORE INSERT ON vitals_categorized "
    "FOR EACH STATEMENT EXECUTE FUNCTION fault()",
)


def readings(n: int) -> list[str]:
    return [
        f'{{"user_id": 7, "metric": "heart_rate", "value": {60 + i % 40}, "unit": "bpm", '
        f'"start_time": "2024-{1 + i // 40000:02d}-{1 + i // 1440 % 28:02d}T'
        f'{i // 60 % 24:02d}:{i % 60:02d}:00+00:00"}}'
        for i in range(n)
    ]


def load(engine: Engine, n: int) -> None:
    truncate(engine, "vitals_raw_data", "vitals_categorized", "vitals_agg_hourly",
             "vitals_agg_daily", "vitals_agg_weekly", "vitals_agg_monthly")  # fmt: skip
    ingest_lines(engine, "vitals", readings(n))


def first_run(engine: Engine, n: int) -> tuple[float, int]:
    load(engine, n)
    started = time.perf_counter()
    runs = process_pending(["vitals"])
    return time.perf_counter() - started, len(runs)


def recovery(engine: Engine, n: int) -> tuple[float, int, int]:
    load(engine, n)
    with engine.begin() as conn:
        for statement in FAULT:
            conn.execute(text(statement))
    failed = sum(process_claim("vitals", 7).error is not None for _ in range(2))
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER fault ON vitals_categorized"))
        conn.execute(text("DROP FUNCTION fault()"))
        conn.execute(text("DROP TABLE fault_switch"))
    started = time.perf_counter()
    runs = process_pending(["vitals"])
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        done = conn.execute(
            text("SELECT count(*) FROM vitals_raw_data WHERE status = 'aggregated'")
        ).scalar_one()
    assert failed == 2 and done == n, (failed, done)
    return elapsed, len(runs), done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=13_133)
    args = parser.parse_args()
    with bench_engine() as engine:
        first, first_claims = first_run(engine, args.rows)
        again, claims, done = recovery(engine, args.rows)
    print(f"{args.rows} vitals rows of one user, direct mode (healthflow process)")
    print(f"  first run:                     {first:6.2f} s  {first_claims} claim(s)")
    print(f"  after a fault, fixed:          {again:6.2f} s  {claims} claims, {done} aggregated")
    print(f"  ratio recovery / first run:    {again / first:6.2f}x")
    print(f"  before bisection: one claim per row, {args.rows} claims")


if __name__ == "__main__":
    main()
