"""Ingest throughput: `healthflow ingest vitals` on 1,000,000 JSON lines (parse and validate
each line with pydantic, catalog checks, COPY in batches) against a bare COPY of the same,
already-converted rows into the same table, in the same run. A third run ingests the same lines
carrying `entry_id`s, which go through a temp table and `INSERT ... ON CONFLICT DO NOTHING`
(duplicates dropped) instead of straight COPY.

    .venv/bin/python bench/ingest.py [--rows N]
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import bench_engine, timed, truncate
from tasks.ingest import DOMAIN_SPECS, ingest_file
from tasks.sample import generate_users, iter_vitals, write_jsonl


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    users = generate_users(8, seed=1)
    rows = list(itertools.islice(iter_vitals(users, date(2024, 1, 1), 366, seed=1), args.rows))
    workdir = Path(tempfile.mkdtemp(prefix="hf-bench-ingest-"))
    path = workdir / "vitals.jsonl"
    write_jsonl(path, rows)
    with_ids = workdir / "vitals-with-entry-ids.jsonl"
    write_jsonl(with_ids, ({**r, "entry_id": f"e{i}"} for i, r in enumerate(rows)))

    spec = DOMAIN_SPECS["vitals"]
    columns = (*spec.columns, "status")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for r in rows:
        unit, end, source = r.get("unit"), r.get("end_time"), r.get("source")
        writer.writerow(
            (
                r["user_id"],
                r["metric"],
                r["value"],
                None,
                unit,
                r["start_time"],
                end,
                source,
                None,  # entry_id
                "pending",
            )
        )
    payload = buffer.getvalue()

    times: dict[str, float] = {}
    with bench_engine() as engine:
        with timed("bare COPY (pre-converted CSV)", times):
            raw = engine.raw_connection()
            with raw.cursor() as cursor:
                cursor.copy_expert(
                    f"COPY vitals_raw_data ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)",
                    io.StringIO(payload),
                )
            raw.commit()
            raw.close()
        truncate(engine, "vitals_raw_data")
        with timed("healthflow ingest (JSONL -> validated rows)", times):
            report = ingest_file(engine, "vitals", path)
        truncate(engine, "vitals_raw_data")
        with timed("healthflow ingest, lines with entry_id", times):
            ingest_file(engine, "vitals", with_ids)
    n = len(rows)
    print(f"ingest benchmark: {n:,} vitals lines ({report.inserted:,} pending, "
          f"{report.rejected:,} rejected, {report.malformed:,} malformed)")  # fmt: skip
    for label, seconds in times.items():
        print(f"  {label:<46} {seconds:7.2f} s  {n / seconds:>11,.0f} rows/s")
    ratio = (
        times["bare COPY (pre-converted CSV)"]
        / times["healthflow ingest (JSONL -> validated rows)"]
    )
    print(f"  healthflow ingest runs at {ratio:.2f}x the rate of bare COPY (aim: >= 0.33)")
    with_ids_ratio = (
        times["bare COPY (pre-converted CSV)"] / times["healthflow ingest, lines with entry_id"]
    )
    print(f"  with entry_ids (duplicate-dropping path): {with_ids_ratio:.2f}x bare COPY")


if __name__ == "__main__":
    main()
