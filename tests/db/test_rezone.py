"""Re-zoning a user while one of their claims runs: the claim's steps are driven by hand so the
zone changes between its hourly and its coarser levels, the worst moment (the hourly buckets it
wrote are deleted, the levels still to come would roll up from nothing)."""

from __future__ import annotations

from sqlalchemy import Engine, text

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


def test_rezoning_in_the_middle_of_a_claim_ends_as_a_clean_run_in_the_new_zone(engine) -> None:
    stored = _load(engine, NEW_ZONE)
    assert all(run.error is None for run in process_pending(["vitals"]))
    clean = _exports(engine)
    assert len(clean["monthly"]) > 1  # more than the header

    with engine.begin() as conn:
        conn.execute(text("TRUNCATE vitals_raw_data, user_settings RESTART IDENTITY CASCADE"))
        for g in GRANULARITIES:
            conn.execute(text(f"TRUNCATE vitals_agg_{g}"))
    assert _load(engine, "Australia/Sydney") == stored

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
