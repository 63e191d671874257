"""`kill -9` of `healthflow process` at random points (counted in statements and model loads,
not seconds): the next run completes what was cut off, and the exports and lab codes equal those
of a run that was never interrupted.

Each run is a child process that executes `healthflow process` (the CLI's `main`). Children
are forked from the test process after its imports (torch and the model's classes included), so
a kill point costs the work itself and not an interpreter start (3 to 5 s on a busy two-core
machine); a forked child has its own pid and start time, opens its own database connections and
loads the lab model's weights itself, exactly as a fresh ml-worker would.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tasks.aggregation import GRANULARITIES
from tasks.domains import Domain
from tasks.export import export_rows
from tasks.ingest import ingest_lines
from tasks.sample import with_entry_ids, write_sample_dataset

KILLS = 20
SEED = 20261202
DOMAINS: tuple[Domain, ...] = ("labs", "vitals", "nutrition")
# Report names the alias tier leaves, so every run that reaches a lab claim loads the model: two it
# codes under the independent checks, one that stays uncategorized with its candidates.
MODEL_NAMES = (
    ("Dilantin (Phenytoin)", "ug/mL", 12.0),
    ("Total Thyroxine (T-4)", "ug/dL", 7.5),
    ("Lipoprotein (a)", "mg/dL", 21.0),
)


def _url_for(database_url: str, engine: Engine) -> str:
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    separator = "&" if "?" in database_url else "?"
    return f"{database_url}{separator}options=-csearch_path%3D{schema}"


def _run_cli(url: str, data_dir: str, embeddings: str, events: Any, kill_at: int | None) -> None:
    """The child: `healthflow process` against `url`, its own engine, no output. It counts
    its statements and model loads in `events[0]` (shared with the parent; `events[1]` is the
    number of the model load) and kills itself with SIGKILL right after event number `kill_at`:
    kill points are counted in the work done, not in seconds, so a slow machine moves none."""
    os.environ["HEALTHFLOW_DATABASE_URL"] = url
    os.environ["HEALTHFLOW_DATA_DIR"] = data_dir
    os.environ["HEALTHFLOW_LAB_MODEL"] = "1"  # the ml-worker's matcher, as `process` runs it
    os.environ["HEALTHFLOW_EMBEDDING_CACHE_DIR"] = embeddings
    from sqlalchemy import event

    from tasks.cli import main
    from tasks.db import engine as db_engine
    from tasks.labs import matcher as lab_matcher
    from tasks.settings import get_settings
    from tasks.steps import labs as lab_step

    get_settings.cache_clear()
    db_engine._engine = None  # the parent's pooled connections are not ours to touch
    # A matcher or weights an earlier test left in the parent would be inherited by the fork:
    # the child starts as a fresh `healthflow process` does, and loads the weights itself.
    lab_step.set_matcher(None)
    lab_matcher._MODELS.clear()

    def _count(*_args: Any) -> int:
        with events.get_lock():
            events[0] += 1
            done = int(events[0])
        if kill_at is not None and done >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return done

    event.listen(db_engine.get_engine(), "after_cursor_execute", _count)
    load_weights = lab_matcher.load_model

    def counted_load(model_path: str) -> tuple[Any, Any]:
        events[1] = _count()  # a kill point may fall on the load, before the weights are read
        return load_weights(model_path)

    lab_matcher.load_model = counted_load

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    code = main(["process", "--workers", "2"])
    # No interpreter shutdown: it would close sockets the parent still uses.
    os._exit(code)


def _start(
    url: str, data_dir: Path, embeddings: Path, kill_at: int | None = None
) -> tuple[multiprocessing.process.BaseProcess, Any]:
    context = multiprocessing.get_context("fork")
    events = context.Array("l", 2)
    child = context.Process(
        target=_run_cli,
        args=(url, str(data_dir), str(embeddings), events, kill_at),
        daemon=True,
    )
    child.start()
    return child, events


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
            for table in ("lab_report_raw", "vitals_raw_data", "nutrition_raw_data")
        }


def _lab_results(engine: Engine) -> list[tuple[Any, ...]]:
    """Each lab row's outcome by its source id. Model scores are left out: the batch a name is
    embedded in (which a kill changes) moves them in the last digits, never the code."""
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text(
                    "SELECT r.entry_id, c.status, c.loinc_code, c.method, c.value, c.unit, "
                    "c.unit_flag FROM lab_report_categorized c "
                    "JOIN lab_report_raw r ON r.id = c.raw_id ORDER BY r.entry_id"
                )
            )
        ]


def _model_lines(users: list[str], index: int, start: date) -> list[str]:
    """Round `index`'s report per user with the names only the model's tier can settle."""
    rows = [
        {
            "user_id": json.loads(user)["user_id"],
            "report_id": f"MODEL-{index}",
            "test_name": name,
            "value": value + index,
            "unit": unit,
            "collected_at": (start + timedelta(days=index % 4)).isoformat(),
        }
        for user in users
        for name, unit, value in MODEL_NAMES
    ]
    return [json.dumps(row) for row in with_entry_ids(rows)]


@pytest.mark.slow
def test_kill_9_at_20_random_points_then_rerun_gives_the_uninterrupted_exports(
    make_schema_engine: Callable[..., Engine],
    database_url: str,
    tmp_path: Path,
    embedding_cache_dir: Path,
) -> None:
    # Imported once here, not in every child (see the docstring); the weights load in each.
    import torch  # noqa: F401
    from transformers.models.bert import modeling_bert  # noqa: F401

    start = date(2024, 3, 4)
    paths = write_sample_dataset(tmp_path / "data", 3, start, 4, 7, "light")
    lines = {name: path.read_text().splitlines() for name, path in paths.items()}
    rounds = KILLS + 1

    def slice_of(domain: str, index: int) -> list[str]:
        extra = _model_lines(lines["users"], index, start) if domain == "labs" else []
        return lines[domain][index::rounds] + extra

    interrupted, reference = make_schema_engine(), make_schema_engine()
    for engine in (interrupted, reference):
        ingest_lines(engine, "users", lines["users"])
    url = _url_for(database_url, interrupted)

    # Round 0 runs to the end: its statement count spreads the kill points over a whole run.
    for domain in DOMAINS:
        ingest_lines(interrupted, domain, slice_of(domain, 0))
    first, events = _start(url, tmp_path, embedding_cache_dir)
    # Every join's bound only stops a broken build from hanging (this one may embed the catalog).
    first.join(600)
    assert first.exitcode == 0
    assert events[1] > 0, "the labs branch loads the model"

    rng = random.Random(SEED)
    points = [rng.randint(1, events[0]) for _ in range(KILLS)]
    killed = killed_with_model = 0
    for index, point in enumerate(points, start=1):
        for domain in DOMAINS:
            ingest_lines(interrupted, domain, slice_of(domain, index))
        child, events = _start(url, tmp_path, embedding_cache_dir, kill_at=point)
        child.join(120)
        killed += child.exitcode == -signal.SIGKILL
        killed_with_model += child.exitcode == -signal.SIGKILL and events[1] > 0
    assert killed >= KILLS // 2, "most points must fall inside a run"
    assert killed_with_model >= 1, "some runs must die during or after their model load"

    # The next run takes over what the killed ones held, and finishes it.
    final, _ = _start(url, tmp_path, embedding_cache_dir)
    final.join(120)
    assert final.exitcode == 0

    for index in range(rounds):
        for domain in DOMAINS:
            ingest_lines(reference, domain, slice_of(domain, index))
    whole, _ = _start(_url_for(database_url, reference), tmp_path, embedding_cache_dir)
    whole.join(120)
    assert whole.exitcode == 0

    assert _statuses(interrupted) == _statuses(reference)
    assert all("processing" not in statuses for statuses in _statuses(interrupted).values())
    with interrupted.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM claims")).scalar_one() == 0
    got, expected = _exports(interrupted), _exports(reference)
    assert all(len(rows) > 1 for rows in expected.values())
    assert got == expected
    labs = _lab_results(reference)
    methods = {(status, method) for _, status, _, method, *_ in labs}
    # The model ran, coded some names under the checks and left one for review.
    assert {("categorized", "embedding"), ("uncategorized", "none")} <= methods
    assert _lab_results(interrupted) == labs
