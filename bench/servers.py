"""Direct mode on the embedded server and on an external one, JIT on and off, side by side.

A stock PostgreSQL built with LLVM has `jit = on`; the embedded server (pgserver) has no JIT
provider, which is why no embedded benchmark can show what JIT does to the aggregation
statements. This runs the same vitals data (and nutrition) through `healthflow process` (direct
mode, 2 claims at a time) on each server, once with the session's `jit` on and once off, in one
process, each in a schema of its own, and prints the times and the ratio JIT on / JIT off.

    HEALTHFLOW_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/servers.py [--rows N] [--users N]

Without HEALTHFLOW_DATABASE_URL only the embedded server runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, event, text

from bench._common import bench_engine
from tasks.ingest import ingest_lines
from tasks.process import process_pending
from tasks.sample import generate_users, iter_nutrition, iter_vitals


def jit_setting(jit: bool) -> Callable[[Engine], None]:
    """Start every session of an engine with `jit` on or off."""

    def prepare(engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _jit(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET jit = {'on' if jit else 'off'}")

    return prepare


def jit_available(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT pg_jit_available()")).scalar_one())


def run_once(url: str, *, jit: bool, users: list[dict], rows: int) -> tuple[float, bool, str]:
    """Seconds for direct mode over the data; whether JIT could run; a digest of the output."""
    with bench_engine(url, prepare=jit_setting(jit)) as engine:
        ingest_lines(engine, "users", [json.dumps(u) for u in users])
        # Every user gets an equal share: a few weeks of readings, as a sync after a while would.
        share = rows // len(users)
        days = share // 150 + 1
        vitals = itertools.chain.from_iterable(
            itertools.islice(iter_vitals([u], date(2024, 3, 1), days, seed=2, rate="light"), share)
            for u in users
        )
        ingest_lines(engine, "vitals", (json.dumps(r) for r in vitals))
        meals = iter_nutrition(users, date(2024, 3, 1), days, seed=2)
        ingest_lines(engine, "nutrition", (json.dumps(r) for r in meals))
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        start = time.perf_counter()
        runs = process_pending(["vitals", "nutrition"], workers=2)
        seconds = time.perf_counter() - start
        assert runs and all(r.error is None for r in runs)
        with engine.connect() as conn:
            digest = conn.execute(
                text(
                    "SELECT md5(string_agg(concat_ws(',', user_id, loinc_code, bucket_start, "
                    "count, round(sum::numeric, 6)), ';' ORDER BY user_id, loinc_code, "
                    "bucket_start)) FROM vitals_agg_hourly"
                )
            ).scalar_one()
        return seconds, jit_available(engine), digest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    users = generate_users(args.users, seed=4)
    servers: list[tuple[str, str]] = []
    external = os.environ.get("HEALTHFLOW_DATABASE_URL")
    import pgserver

    scratch = Path(tempfile.mkdtemp(prefix="hf-bench-")) / "pgdata"
    embedded = pgserver.get_server(scratch, cleanup_mode="delete")
    servers.append(("embedded", embedded.get_uri()))
    if external:
        servers.append(("external", external))
    print(
        f"direct mode (2 claims at a time), {args.rows:,} vitals rows and their users' meals, "
        f"{args.users} users"
    )
    print(f"  {'server':<10} {'jit available':<14} {'jit off':>9} {'jit on':>9} {'on/off':>7}")
    digests = set()
    for name, url in servers:
        off, _, digest_off = run_once(url, jit=False, users=users, rows=args.rows)
        # (pg_jit_available() is false in a session with jit off: ask the JIT-on one.)
        on, available, digest_on = run_once(url, jit=True, users=users, rows=args.rows)
        digests |= {digest_off, digest_on}
        print(
            f"  {name:<10} {('yes' if available else 'no'):<14} {off:8.2f}s {on:8.2f}s "
            f"{on / off:6.2f}x (aim <= 1.5x)"
        )
    print(f"  identical hourly tables on every server and setting: {len(digests) == 1}")


if __name__ == "__main__":
    main()
