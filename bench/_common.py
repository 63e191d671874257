"""Shared set-up for benchmarks: a database (HEALTHFLOW_DATABASE_URL or a fresh embedded one)
in a throw-away schema, and timing helpers."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from tasks.db import engine as db_engine
from tasks.db.migrate import upgrade


@contextmanager
def bench_engine(
    url: str | None = None, *, prepare: Callable[[Engine], None] | None = None
) -> Iterator[Engine]:
    """A migrated throw-away schema on `url` (default: HEALTHFLOW_DATABASE_URL, else a fresh
    embedded server), installed as the process's engine. `prepare` runs on the engine before
    the migrations, to set up its sessions (bench/servers.py turns JIT on or off there)."""
    url = url or os.environ.get("HEALTHFLOW_DATABASE_URL")
    if not url:
        import pgserver

        # A server of its own, deleted when the benchmark process ends.
        scratch = Path(tempfile.mkdtemp(prefix="hf-bench-")) / "pgdata"
        server = pgserver.get_server(scratch, cleanup_mode="delete")
        url = server.get_uri()
    schema = f"hf_bench_{uuid.uuid4().hex[:8]}"
    admin = db_engine.make_engine(url, pool_size=1)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = db_engine.make_engine(url, schema=schema)
    if prepare is not None:
        prepare(engine)
    if os.environ.get("HEALTHFLOW_BENCH_TRACE"):
        trace_slow_statements(engine)
    upgrade(engine)
    db_engine.set_engine(engine)
    try:
        yield engine
    finally:
        db_engine.set_engine(None)
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def trace_slow_statements(engine: Engine, threshold_s: float = 1.0) -> None:
    """Print every statement slower than `threshold_s` (first words only, never parameters):
    how a benchmark shows where its time goes. On with HEALTHFLOW_BENCH_TRACE=1."""
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        conn.info.setdefault("started", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        took = time.perf_counter() - conn.info["started"].pop()
        if took > threshold_s:
            print(f"    slow: {took:6.2f} s  {' '.join(statement.split())[:90]}", flush=True)


@contextmanager
def timed(label: str, results: dict[str, float]) -> Iterator[None]:
    start = time.perf_counter()
    yield
    results[label] = time.perf_counter() - start


def truncate(engine: Engine, *tables: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


def make_statistics_stale(conn: Connection, table: str) -> None:
    """What the planner believes after an autoanalyze that ran while `table` was reloaded: an
    empty table with pages, and no column statistics (autovacuum is turned off for the table,
    so that it stays so)."""
    params = {"table": table}
    conn.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = off)"))
    conn.execute(text("DELETE FROM pg_statistic WHERE starelid = CAST(:table AS regclass)"), params)
    conn.execute(
        text(
            "UPDATE pg_class SET reltuples = 0, relpages = 60 WHERE oid = CAST(:table AS regclass)"
        ),
        params,
    )
