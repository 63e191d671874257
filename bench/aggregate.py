"""Aggregation cost, in one run on the same data:

Every line runs one claim at a time, single-threaded like the baselines, and pays the same row
writes (processing stamp, categorized copy, aggregated stamp), except the bare hourly GROUP BY
(the limit) and the line marked "not comparable" (two claims at once).

1. Full vitals processing of N new rows (copy to categorized + hourly, daily, weekly, monthly +
   mark), against the limit: one bare INSERT ... SELECT ... GROUP BY of the hourly buckets of the
   same rows (no conversion, no other granularity).
2. The same work the way a data engineer would without this engine: pandas (read, convert,
   tz-aware groupby per granularity) and a bulk COPY write.
3. Processing 1,000 new rows for one user whose history holds 10,000 rows, then 5,000,000 rows:
   the cost should follow the new data, not the history.

    .venv/bin/python bench/aggregate.py [--rows N] [--history-large N]
"""

from __future__ import annotations

import argparse
import io
import itertools
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd
from sqlalchemy import Engine, text

from bench._common import bench_engine, timed, truncate
from tasks.catalog import vital_types
from tasks.ingest import ingest_lines
from tasks.process import process_pending
from tasks.sample import generate_users, iter_vitals

AGG_TABLES = ("vitals_agg_hourly", "vitals_agg_daily", "vitals_agg_weekly", "vitals_agg_monthly")


def load_rows(engine: Engine, users: list[dict], n: int) -> None:
    import json

    truncate(engine, "vitals_raw_data", "vitals_categorized", "user_settings", *AGG_TABLES)
    ingest_lines(engine, "users", [json.dumps(u) for u in users])
    lines = (
        json.dumps(r)
        for r in itertools.islice(iter_vitals(users, date(2024, 1, 1), 366, seed=2), n)
    )
    ingest_lines(engine, "vitals", lines)


def bare_hourly(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO vitals_agg_hourly (user_id, loinc_code, bucket_start, count, sum, min,
                    max, last_value, last_time, unit)
                SELECT r.user_id, r.metric,
                       date_trunc('hour', r.start_time, COALESCE(u.timezone, 'UTC')),
                       count(*), sum(r.value), min(r.value), max(r.value), max(r.value),
                       max(r.start_time), min(r.unit)
                FROM vitals_raw_data r LEFT JOIN user_settings u USING (user_id)
                WHERE r.status = 'pending'
                GROUP BY 1, 2, 3
                """
            )
        )


def bare_lifecycle_floor(engine: Engine) -> None:
    """The row writes the design requires, as bare SQL and nothing else: stamp every pending
    row processing, copy it to the categorized table, stamp it aggregated. No conversion check,
    no aggregation: what any engine that keeps per-row status must at least pay."""
    with engine.begin() as conn:
        conn.execute(text(FLOOR_CLAIM))
        conn.execute(text(FLOOR_COPY))
        conn.execute(text(FLOOR_MARK))


FLOOR_CLAIM = (
    "UPDATE vitals_raw_data SET status = 'processing', claim_id = 'floor', "
    "claimed_at = now() WHERE status = 'pending'"
)
FLOOR_COPY = """
    INSERT INTO vitals_categorized (raw_id, user_id, metric, loinc_code, start_time,
        end_time, value, unit, source, original_value, original_unit)
    SELECT id, user_id, metric, metric, start_time, end_time, value, unit, source,
           value, unit
    FROM vitals_raw_data WHERE claim_id = 'floor'
    ON CONFLICT DO NOTHING
"""
FLOOR_MARK = (
    "UPDATE vitals_raw_data SET status = 'aggregated', processed_at = now() "
    "WHERE claim_id = 'floor'"
)


# ---------------------------------------------------------------------------- where it goes


def wal_position(engine: Engine) -> int:
    """Bytes of WAL written so far by the whole server (the bench's server is its own)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')")
            ).scalar_one()
        )


@dataclass
class Spent:
    seconds: float = 0.0
    wal_bytes: int = 0


@contextmanager
def spending(engine: Engine, into: Spent) -> Iterator[None]:
    wal, started = wal_position(engine), time.perf_counter()
    yield
    into.seconds += time.perf_counter() - started
    into.wal_bytes += wal_position(engine) - wal


def profiled_floor(engine: Engine) -> dict[str, Spent]:
    """The bare lifecycle floor, statement by statement."""
    spent = {label: Spent() for label in ("claim", "copy", "mark")}
    with spending(engine, spent["claim"]), engine.begin() as conn:
        conn.execute(text(FLOOR_CLAIM))
    with spending(engine, spent["copy"]), engine.begin() as conn:
        conn.execute(text(FLOOR_COPY))
    with spending(engine, spent["mark"]), engine.begin() as conn:
        conn.execute(text(FLOOR_MARK))
    return spent


def profiled_healthflow(engine: Engine) -> dict[str, Spent]:
    """healthflow's steps one claim at a time (as direct mode runs them), step by step."""
    from tasks.lifecycle import users_with_pending
    from tasks.process import step_plan
    from tasks.steps.registry import run_step

    spent: dict[str, Spent] = defaultdict(Spent)
    with engine.connect() as conn:
        users = users_with_pending(conn, "vitals")
    for user_id in users:
        claim_id = f"profile-{user_id}"
        claim = {"domain": "vitals", "user_id": user_id, "claim_id": claim_id}
        for label, name, payload in [
            ("claim", "claim", claim),
            *step_plan("vitals", claim_id, user_id),
        ]:
            with spending(engine, spent[label]):
                run_step(name, payload)
    return dict(spent)


def print_profile(rows: int, floor: dict[str, Spent], engine: dict[str, Spent]) -> None:
    print("  where it goes (one claim at a time; WAL bytes per raw row; seconds):")
    for label, spent in engine.items():
        base = floor.get(label)
        beside = (
            f"   floor {base.wal_bytes / rows:6.0f} B/row {base.seconds:6.2f} s" if base else ""
        )
        print(
            f"    {label:<8} healthflow {spent.wal_bytes / rows:6.0f} B/row "
            f"{spent.seconds:6.2f} s{beside}"
        )
    for name, spent in (("healthflow", engine), ("floor", floor)):
        wal = sum(s.wal_bytes for s in spent.values())
        print(f"    {name} in all: {wal / rows:,.0f} WAL bytes per raw row")


def pandas_peer(engine: Engine) -> None:
    """Claim pending rows, read them, convert, bucket in local time per user, write every
    level, mark: the same row writes healthflow pays (processing stamp, categorized copy,
    aggregated stamp), single-threaded like it runs here."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE vitals_raw_data SET status = 'processing', claim_id = 'pandas', "
                "claimed_at = now(), updated_at = now() WHERE status = 'pending'"
            )
        )
    with engine.connect() as conn:
        df = pd.read_sql(
            text(
                "SELECT r.id, r.user_id, r.metric, r.value, r.unit, r.start_time, r.end_time, "
                "r.source, "
                "COALESCE(u.timezone, 'UTC') AS tz FROM vitals_raw_data r "
                "LEFT JOIN user_settings u USING (user_id) WHERE r.claim_id = 'pandas'"
            ),
            conn,
        )
    # Vectorized conversion: a merge with the catalog's (metric, unit) table.
    conversions = pd.DataFrame(
        [
            (name, unit, factor, offset, vital.loinc_code, vital.canonical_unit)
            for name, vital in vital_types().items()
            for unit, (factor, offset) in vital.units.items()
        ],
        columns=["metric", "unit_key", "factor", "offset", "loinc_code", "canonical_unit"],
    )
    df["unit_key"] = df["unit"].str.strip().str.lower()
    df = df.merge(conversions, on=["metric", "unit_key"], how="inner")
    df["original_value"] = df["value"]
    df["value"] = df["value"] * df["factor"] + df["offset"]
    categorized = df[
        ["id", "user_id", "metric", "loinc_code", "start_time", "end_time", "value",
         "canonical_unit", "source", "original_value", "unit"]
    ]  # fmt: skip
    frames = {name: [] for name in AGG_TABLES}
    for tz, part in df.groupby("tz"):
        local = part["start_time"].dt.tz_convert(tz)
        part = part.assign(
            # The local hour's start as an instant: step back by the local minutes and seconds
            # (floor() in local time cannot tell the two 01:00 hours of a fall-back day apart).
            hour=part["start_time"]
            - pd.to_timedelta(local.dt.minute * 60 + local.dt.second, unit="s")
            - pd.to_timedelta(local.dt.microsecond, unit="us"),
            day=local.dt.date,
        )
        part = part.sort_values("start_time")
        keys = {
            "vitals_agg_hourly": part["hour"],
            "vitals_agg_daily": part["day"],
            "vitals_agg_weekly": pd.to_datetime(part["day"])
            .dt.to_period("W-SUN")
            .dt.start_time.dt.date,
            "vitals_agg_monthly": pd.to_datetime(part["day"])
            .dt.to_period("M")
            .dt.start_time.dt.date,
        }
        for table, bucket in keys.items():
            grouped = part.assign(bucket_start=bucket).groupby(
                ["user_id", "loinc_code", "bucket_start"]
            )
            agg = grouped.agg(
                count=("value", "size"),
                sum=("value", "sum"),
                min=("value", "min"),
                max=("value", "max"),
                last_value=("value", "last"),
                last_time=("start_time", "last"),
                unit=("canonical_unit", "first"),
            ).reset_index()
            frames[table].append(agg)
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            buffer = io.StringIO()
            categorized.to_csv(buffer, index=False, header=False)
            buffer.seek(0)
            cursor.copy_expert(
                "COPY vitals_categorized (raw_id, user_id, metric, loinc_code, start_time, "
                "end_time, value, unit, source, original_value, original_unit) "
                "FROM STDIN WITH (FORMAT csv)",
                buffer,
            )
            for table, parts in frames.items():
                out = pd.concat(parts)
                buffer = io.StringIO()
                out.to_csv(buffer, index=False, header=False)
                buffer.seek(0)
                cursor.copy_expert(
                    f"COPY {table} (user_id, loinc_code, bucket_start, count, sum, min, max, "
                    "last_value, last_time, unit) FROM STDIN WITH (FORMAT csv)",
                    buffer,
                )
            cursor.execute(
                "UPDATE vitals_raw_data SET status = 'aggregated', processed_at = now(), "
                "updated_at = now() WHERE claim_id = 'pandas' AND status = 'processing'"
            )
        raw.commit()
    finally:
        raw.close()


def history_case(
    engine: Engine, history_rows: int, new_rows: int = 1000, repeats: int = 5
) -> float:
    """Median seconds to process `new_rows` for a user with `history_rows` already aggregated
    (each repeat brings new readings for a later day, as a daily sync would)."""
    truncate(engine, "vitals_raw_data", "vitals_categorized", "user_settings", *AGG_TABLES)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO user_settings VALUES (1, 'Europe/Berlin')"))
        # History: a reading a minute, ending where the new data starts, already processed.
        conn.execute(
            text(
                """
                INSERT INTO vitals_raw_data (user_id, metric, value, unit, start_time, status,
                                             claim_id, processed_at)
                SELECT 1, 'heart_rate', 60 + g % 40, 'bpm',
                       timestamptz '2025-01-01 00:00+00' - make_interval(mins => g),
                       'aggregated', 'history', now()
                FROM generate_series(1, :n) g
                """
            ),
            {"n": history_rows},
        )
        conn.execute(
            text(
                """
                INSERT INTO vitals_categorized (raw_id, user_id, metric, loinc_code, start_time,
                    value, unit, original_value, original_unit)
                SELECT id, 1, 'heart_rate', '8867-4', start_time, value, '/min', value, 'bpm'
                FROM vitals_raw_data
                """
            )
        )
    # Aggregate the history once, as earlier executions would have.
    from tasks.process import step_plan
    from tasks.steps.registry import run_step

    for _, name, payload in step_plan("vitals", "history", 1):
        if name == "aggregate":
            run_step(name, payload)
    # The steady state autovacuum keeps: statistics and visibility maps up to date.
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    timings = []
    for repeat in range(repeats):
        day = f"2025-01-{2 + repeat:02d}"
        lines = [
            f'{{"user_id": 1, "metric": "heart_rate", "value": {60 + i % 30}, "unit": "bpm", '
            f'"start_time": "{day}T{i // 60 % 24:02d}:{i % 60:02d}:30+00:00"}}'
            for i in range(new_rows)
        ]
        ingest_lines(engine, "vitals", lines)
        start = time.perf_counter()
        runs = process_pending(["vitals"], user_id=1)
        timings.append(time.perf_counter() - start)
        assert runs and runs[0].error is None and runs[0].claimed == new_rows
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--history-small", type=int, default=10_000)
    parser.add_argument("--history-large", type=int, default=5_000_000)
    parser.add_argument("--skip-history", action="store_true", help="skip (3)")
    args = parser.parse_args()
    users = generate_users(8, seed=2)
    times: dict[str, float] = {}
    with bench_engine() as engine:
        load_rows(engine, users, args.rows)
        with timed("bare INSERT ... SELECT ... GROUP BY (hourly only)", times):
            bare_hourly(engine)
        truncate(engine, "vitals_agg_hourly")
        with timed("pandas peer (categorize, 4 granularities, COPY, mark)", times):
            pandas_peer(engine)
        load_rows(engine, users, args.rows)
        with timed("bare lifecycle floor (claim, copy, mark rows)", times):
            bare_lifecycle_floor(engine)
        load_rows(engine, users, args.rows)
        # One claim at a time: the baselines above are single-threaded too.
        with timed("healthflow (copy + 4 granularities + mark)", times):
            runs = process_pending(["vitals"], workers=1)
        assert all(r.error is None for r in runs)
        load_rows(engine, users, args.rows)
        # For information: two claims at once, as two executions would run on two cores.
        with timed("healthflow, 2 claims at a time (not comparable)", times):
            runs = process_pending(["vitals"], workers=2)
        assert all(r.error is None for r in runs)
        print(f"aggregate benchmark: {args.rows:,} new vitals rows, {len(users)} users")
        for label, seconds in times.items():
            print(f"  {label:<50} {seconds:7.2f} s  {args.rows / seconds:>11,.0f} rows/s")
        engine_s = times["healthflow (copy + 4 granularities + mark)"]
        bare_s = times["bare INSERT ... SELECT ... GROUP BY (hourly only)"]
        peer_s = times["pandas peer (categorize, 4 granularities, COPY, mark)"]
        floor_s = times["bare lifecycle floor (claim, copy, mark rows)"]
        print(f"  (1) healthflow / bare hourly limit: {engine_s / bare_s:.2f}x (aim <= 3x)")
        print(f"      healthflow / bare lifecycle floor: {engine_s / floor_s:.2f}x (aim <= 1.15x)")
        print(f"  (2) pandas peer / healthflow: {peer_s / engine_s:.2f}x faster (aim >= 2x)")
        load_rows(engine, users, args.rows)
        floor = profiled_floor(engine)
        load_rows(engine, users, args.rows)
        print_profile(args.rows, floor, profiled_healthflow(engine))
        if args.skip_history:
            return
        small = history_case(engine, args.history_small)
        large = history_case(engine, args.history_large)
        print(
            f"  (3) 1,000 new rows (median of 5) with {args.history_small:,} rows of history: "
            f"{small:.3f} s; "
            f"with {args.history_large:,}: {large:.3f} s; ratio {large / small:.2f} (aim < 1.3)"
        )


if __name__ == "__main__":
    main()
