"""A claim right after a bulk load, when the planner believes the raw table is empty.

For each size: one user's N pending vitals rows, claimed once on an analyzed table and once on
the same table with `reltuples` 0 (as after an autoanalyze that ran mid-load), in the same run.
The claim should take the same time either way (the ratio stays near 1, whatever N).

    .venv/bin/python bench/stale_claims.py [--rows 10000 20000 50000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from bench._common import bench_engine, make_statistics_stale, truncate
from tasks import lifecycle


def load(engine: Engine, rows: int, *, stale: bool) -> None:
    truncate(engine, "vitals_raw_data")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO vitals_raw_data (user_id, metric, value, unit, start_time) "
                "SELECT 1, 'heart_rate', 60 + i % 40, 'bpm', "
                "timestamptz '2024-01-01' + i * interval '1 min' FROM generate_series(1, :n) i"
            ),
            {"n": rows},
        )
        if not stale:
            conn.execute(text("ANALYZE vitals_raw_data"))
            return
        make_statistics_stale(conn, "vitals_raw_data")


def claim_seconds(engine: Engine, rows: int, *, stale: bool) -> float:
    load(engine, rows, stale=stale)
    started = time.perf_counter()
    with Session(engine) as session, session.begin():
        summary = lifecycle.claim_pending(
            session.connection(), domain="vitals", user_id=1, claim_id="bench"
        )
    seconds = time.perf_counter() - started
    assert summary.claimed == rows
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 20_000, 50_000])
    args = parser.parse_args()
    print("claim of one user's pending rows: analyzed table against stale statistics")
    with bench_engine() as engine:
        for rows in args.rows:
            analyzed = claim_seconds(engine, rows, stale=False)
            stale = claim_seconds(engine, rows, stale=True)
            print(
                f"  {rows:>9,} rows: analyzed {analyzed:7.2f} s, stale {stale:7.2f} s, "
                f"stale/analyzed {stale / analyzed:5.2f}x"
            )


if __name__ == "__main__":
    main()
