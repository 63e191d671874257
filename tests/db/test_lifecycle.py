from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tasks import lifecycle
from tasks.ingest import ingest_lines


def _vitals(user_id: int, n: int, day: str = "2024-03-10") -> list[str]:
    return [
        f'{{"user_id": {user_id}, "metric": "heart_rate", "value": {60 + i % 40}, "unit": "bpm", '
        f'"start_time": "{day}T{i // 60 % 24:02d}:{i % 60:02d}:00+00:00"}}'
        for i in range(n)
    ]


def _statuses(engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM vitals_raw_data GROUP BY 1"))
        return {r.status: r.count for r in rows}


def test_claim_mark_and_local_date_range(engine) -> None:
    ingest_lines(engine, "users", ['{"user_id": 1, "timezone": "America/New_York"}'])
    # 03:30 UTC on the 11th is still the 10th in New York.
    ingest_lines(engine, "vitals", _vitals(1, 2, "2024-03-11") + _vitals(2, 3))
    with Session(engine) as s, s.begin():
        claim = lifecycle.claim_pending(
            s.connection(), domain="vitals", user_id=1, claim_id="exec-1"
        )
    assert (claim.claimed, claim.date_from, claim.date_to) == (
        2,
        date(2024, 3, 10),
        date(2024, 3, 10),
    )
    with Session(engine) as s, s.begin():
        again = lifecycle.claim_pending(s.connection(), domain="vitals", user_id=1, claim_id="x")
        summary = lifecycle.summarize_claim(s.connection(), domain="vitals", claim_id="exec-1")
    assert again.claimed == 0 and again.date_from is None
    assert summary == claim
    with Session(engine) as s, s.begin():
        assert lifecycle.mark_aggregated(s.connection(), domain="vitals", claim_id="exec-1") == 2
    assert _statuses(engine) == {"aggregated": 2, "pending": 3}


def test_failed_claim_counts_attempts_and_reset_brings_rows_back(engine) -> None:
    ingest_lines(engine, "vitals", _vitals(1, 3, "2024-03-10") + _vitals(1, 2, "2024-04-01"))
    with Session(engine) as s, s.begin():
        lifecycle.claim_pending(s.connection(), domain="vitals", user_id=1, claim_id="c1")
        failed = lifecycle.mark_failed(
            s.connection(), domain="vitals", claim_id="c1", error="CategorizationFailed"
        )
    assert failed == 5
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT DISTINCT status, error, attempts FROM vitals_raw_data")
        ).one()
    assert tuple(row) == ("failed", "CategorizationFailed", 1)
    with Session(engine) as s, s.begin():
        reset = lifecycle.reset_for_reprocessing(
            s.connection(),
            domain="vitals",
            user_id=1,
            date_from=date(2024, 3, 1),
            date_to=date(2024, 3, 31),
        )
    assert reset == 3
    assert _statuses(engine) == {"pending": 3, "failed": 2}


def test_impossible_states_are_refused(engine) -> None:
    ingest_lines(engine, "vitals", _vitals(1, 1))
    for update in (
        "UPDATE vitals_raw_data SET status = 'processing'",  # no claim
        "UPDATE vitals_raw_data SET status = 'failed'",  # no reason
        "UPDATE vitals_raw_data SET status = 'done'",  # no such status
        "UPDATE vitals_raw_data SET value = NULL",  # pending without a value
    ):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(update))


def test_concurrent_claims_never_overlap(engine) -> None:
    ingest_lines(engine, "vitals", _vitals(9, 3000))

    def claim(worker: int) -> int:
        total = 0
        while True:
            with Session(engine) as s, s.begin():
                got = lifecycle.claim_pending(
                    s.connection(), domain="vitals", user_id=9, claim_id=f"w{worker}", limit=97
                ).claimed
            if not got:
                return total
            total += got

    with ThreadPoolExecutor(max_workers=6) as pool:
        totals = list(pool.map(claim, range(6)))

    assert sum(totals) == 3000
    with engine.connect() as conn:
        per_claim = dict(
            conn.execute(text("SELECT claim_id, count(*) FROM vitals_raw_data GROUP BY 1")).all()
        )
        assert (
            conn.execute(
                text("SELECT count(*) FROM vitals_raw_data WHERE status <> 'processing'")
            ).scalar_one()
            == 0
        )
    assert per_claim == {f"w{i}": t for i, t in enumerate(totals) if t}
    assert sum(1 for t in totals if t) >= 2, "claims did not run concurrently"
