"""Re-zoning a user while one of their claims runs: the claim's steps are driven by hand so the
zone changes between its hourly and its coarser levels, the worst moment (the hourly buckets it
wrote are deleted, the levels still to come would roll up from nothing)."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine, text

from tasks import lifecycle
from tasks.export import export_rows
from tasks.ingest import ingest_lines
from tasks.process import process_pending, step_plan
from tasks.steps.registry import run_step
from tests.support.reference import generate

USER = 103  # Australia/Sydney in the reference data
NEW_ZONE = "Pacific/Kiritimati"
GRANULARITIES = ("hourly", "daily", "weekly", "monthly")


def _exports(engine: Engine) -> dict[str, list[list[str]]]:
    return {g: list(export_rows(engine, "vitals", g)) for g in GRANULARITIES}


def _statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(
            conn.execute(text("SELECT status, count(*) FROM vitals_raw_data GROUP BY 1")).all()
        )


def _load(engine: Engine, zone: str) -> int:
    lines = [r.line() for r in generate(seed=5, per_user=120) if r.user_id == USER]
    ingest_lines(engine, "users", [f'{{"user_id": {USER}, "timezone": "{zone}"}}'])
    return ingest_lines(engine, "vitals", lines).inserted


def _clean_run_then_reloaded(engine: Engine) -> tuple[int, dict[str, list[list[str]]]]:
    """A clean run in the new zone (its exports), then the same rows pending in the old zone."""
    stored = _load(engine, NEW_ZONE)
    assert all(run.error is None for run in process_pending(["vitals"]))
    clean = _exports(engine)
    assert len(clean["monthly"]) > 1  # more than the header

    with engine.begin() as conn:
        conn.execute(text("TRUNCATE vitals_raw_data, user_settings RESTART IDENTITY CASCADE"))
        for g in GRANULARITIES:
            conn.execute(text(f"TRUNCATE vitals_agg_{g}"))
    assert _load(engine, "Australia/Sydney") == stored
    return stored, clean


def test_rezoning_in_the_middle_of_a_claim_ends_as_a_clean_run_in_the_new_zone(engine) -> None:
    stored, clean = _clean_run_then_reloaded(engine)
    claim_id = "rezone-mid-claim"
    claim = run_step("claim", {"domain": "vitals", "user_id": USER, "claim_id": claim_id})
    assert claim["claimed"] == stored
    plan = list(step_plan("vitals", claim_id, USER))
    labels = [label for label, _, _ in plan]
    middle = labels.index("hourly") + 1
    for _, name, payload in plan[:middle]:  # copy, hourly
        run_step(name, payload)

    report = ingest_lines(engine, "users", [f'{{"user_id": {USER}, "timezone": "{NEW_ZONE}"}}'])
    assert report.inserted == 1

    for _, name, payload in plan[middle:]:  # daily, weekly, monthly, mark
        run_step(name, payload)
    # The live claim no longer holds the rows: nothing was marked done from empty levels.
    assert _statuses(engine) == {"pending": stored}

    assert all(run.error is None for run in process_pending(["vitals"]))
    assert _statuses(engine) == {"aggregated": stored}
    assert _exports(engine) == clean


def _some_backend_waits_for_a_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database())"
                )
            ).scalar_one()
        )


def test_rezoning_while_the_claim_marks_its_rows_done_recomputes_them(engine) -> None:
    """The mark step's transaction is open (its rows updated, not committed) when the zone
    changes: the re-zone must not slip between them, deleting the buckets while the rows it
    would have put back to pending end `aggregated` (found by `healthflow process` and an
    `ingest users` mid-claim: 111,372 rows aggregated, no aggregates)."""
    stored, clean = _clean_run_then_reloaded(engine)
    claim_id = "rezone-while-marking"
    run_step("claim", {"domain": "vitals", "user_id": USER, "claim_id": claim_id})
    plan = list(step_plan("vitals", claim_id, USER))
    assert plan[-1][0] == "mark"
    for _, name, payload in plan[:-1]:
        run_step(name, payload)

    rezoned: list[int] = []
    rezone = threading.Thread(
        target=lambda: rezoned.append(
            ingest_lines(
                engine, "users", [f'{{"user_id": {USER}, "timezone": "{NEW_ZONE}"}}']
            ).inserted
        )
    )
    with engine.connect() as conn, conn.begin():
        assert lifecycle.mark_aggregated(conn, domain="vitals", claim_id=claim_id) == stored
        rezone.start()
        deadline = time.monotonic() + 60
        while not _some_backend_waits_for_a_lock(engine):
            assert time.monotonic() < deadline, "the re-zone never waited for the mark"
            assert rezone.is_alive()
    rezone.join(60)
    assert rezoned == [1]
    # The re-zone came after the mark: every row it marked is back to pending, to be recomputed.
    assert _statuses(engine) == {"pending": stored}
    assert all(run.error is None for run in process_pending(["vitals"]))
    assert _statuses(engine) == {"aggregated": stored}
    assert _exports(engine) == clean
