"""`kill -9` of `healthflow process` at random points (counted in statements, not seconds):
the next run completes what was cut off, and the exports equal those of a run that was never
interrupted.

Each run is a child process that executes `healthflow process` (the CLI's `main`). Children
are forked from the test process after its imports, so a kill point costs the work itself and
not an interpreter start (3 to 5 s on a busy two-core machine); a forked child has its own pid
and start time, and opens its own database connections, exactly as a fresh process would.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tasks.aggregation import GRANULARITIES
from tasks.export import export_rows
from tasks.ingest import ingest_lines
from tasks.sample import write_sample_dataset

KILLS = 20
SEED = 20261202
DOMAINS = ("vitals", "nutrition")  # labs share the lifecycle; their model load would dominate


def _url_for(database_url: str, engine: Engine) -> str:
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    separator = "&" if "?" in database_url else "?"
    return f"{database_url}{separator}options=-csearch_path%3D{schema}"


def _run_cli(url: str, data_dir: str, statements: Any, kill_at: int | None) -> None:
    """The child: `healthflow process` against `url`, its own engine, no output. It counts
    its statements in `statements` (shared with the parent) and kills itself with SIGKILL
    right after statement number `kill_at`: kill points are counted in the work done, not in
    seconds, so a slow machine moves none of them."""
    os.environ["HEALTHFLOW_DATABASE_URL"] = url
    os.environ["HEALTHFLOW_DATA_DIR"] = data_dir
    from sqlalchemy import event

    from tasks.cli import main
    from tasks.db import engine as db_engine
    from tasks.settings import get_settings

    get_settings.cache_clear()
    db_engine._engine = None  # the parent's pooled connections are not ours to touch

    @event.listens_for(db_engine.get_engine(), "after_cursor_execute")
    def _count(*_args: Any) -> None:
        with statements.get_lock():
            statements.value += 1
            done = statements.value
        if kill_at is not None and done >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    code = main(["process", "--workers", "2"])
    # No interpreter shutdown: it would close sockets the parent still uses.
    os._exit(code)


def _start(
    url: str, data_dir: Path, kill_at: int | None = None
) -> tuple[multiprocessing.process.BaseProcess, Any]:
    context = multiprocessing.get_context("fork")
    statements = context.Value("l", 0)
    child = context.Process(
        target=_run_cli, args=(url, str(data_dir), statements, kill_at), daemon=True
    )
    child.start()
    return child, statements


def _exports(engine: Engine) -> dict[str, list[list[str]]]:
    exports = {}
    for domain in DOMAINS:
        for granularity in GRANULARITIES[domain]:
            exports[f"{domain} {granularity}"] = list(export_rows(engine, domain, granularity))
    for granularity in GRANULARITIES["nutrition"]:
        exports[f"meals {granularity}"] = list(
            export_rows(engine, "nutrition", granularity, by_meal_type=True)
        )
    return exports


def _statuses(engine: Engine) -> dict[str, dict[str, int]]:
    with engine.connect() as conn:
        return {
            table: dict(
                conn.execute(text(f"SELECT status, count(*) FROM {table} GROUP BY 1")).all()
            )
            for table in ("vitals_raw_data", "nutrition_raw_data")
        }


@pytest.mark.slow
def test_kill_9_at_20_random_points_then_rerun_gives_the_uninterrupted_exports(
    make_schema_engine: Callable[..., Engine], database_url: str, tmp_path: Path
) -> None:
    paths = write_sample_dataset(tmp_path / "data", 3, date(2024, 3, 4), 4, 7, "light")
    lines = {name: path.read_text().splitlines() for name, path in paths.items()}
    rounds = KILLS + 1

    def slice_of(domain: str, index: int) -> list[str]:
        return lines[domain][index::rounds]

    interrupted, reference = make_schema_engine(), make_schema_engine()
    for engine in (interrupted, reference):
        ingest_lines(engine, "users", lines["users"])
    url = _url_for(database_url, interrupted)

    # Round 0 runs to the end: its statement count spreads the kill points over a whole run.
    for domain in DOMAINS:
        ingest_lines(interrupted, domain, slice_of(domain, 0))
    first, statements = _start(url, tmp_path)
    first.join(120)  # every join's bound only stops a broken build from hanging
    assert first.exitcode == 0

    rng = random.Random(SEED)
    points = [rng.randint(1, statements.value) for _ in range(KILLS)]
    killed = 0
    for index, point in enumerate(points, start=1):
        for domain in DOMAINS:
            ingest_lines(interrupted, domain, slice_of(domain, index))
        child, _ = _start(url, tmp_path, kill_at=point)
        child.join(120)
        killed += child.exitcode == -signal.SIGKILL
    assert killed >= KILLS // 2, "most points must fall inside a run"

    # The next run takes over what the killed ones held, and finishes it.
    final, _ = _start(url, tmp_path)
    final.join(120)
    assert final.exitcode == 0

    for index in range(rounds):
        for domain in DOMAINS:
            ingest_lines(reference, domain, slice_of(domain, index))
    whole, _ = _start(_url_for(database_url, reference), tmp_path)
    whole.join(120)
    assert whole.exitcode == 0

    assert _statuses(interrupted) == _statuses(reference)
    assert "processing" not in _statuses(interrupted)["vitals_raw_data"]
    with interrupted.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM claims")).scalar_one() == 0
    got, expected = _exports(interrupted), _exports(reference)
    assert all(len(rows) > 1 for rows in expected.values())
    assert got == expected
