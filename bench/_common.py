"""Shared set-up for benchmarks: a database (HEALTHFLOW_DATABASE_URL or a fresh embedded one)
in a throw-away schema, and timing helpers."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from tasks.db import engine as db_engine
from tasks.db.migrate import upgrade


@contextmanager
def bench_engine() -> Iterator[Engine]:
    url = os.environ.get("HEALTHFLOW_DATABASE_URL")
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


@contextmanager
def timed(label: str, results: dict[str, float]) -> Iterator[None]:
    start = time.perf_counter()
    yield
    results[label] = time.perf_counter() - start


def truncate(engine: Engine, *tables: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
