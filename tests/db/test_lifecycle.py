import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tasks import lifecycle
from tasks.errors import DatabaseRejectedRow
from tasks.ingest import ingest_lines
from tests.support.poison import insert_poison_row


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
    assert failed.failed == 5
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
        with pytest.raises(DatabaseRejectedRow, match="SQLSTATE 23"), engine.begin() as conn:
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


# ---------------------------------------------------------------------------- recovery


def _claim(engine, claim_id: str, owner: lifecycle.ClaimOwner | None = None, user_id: int = 1):
    with Session(engine) as s, s.begin():
        return lifecycle.claim_pending(
            s.connection(), domain="vitals", user_id=user_id, claim_id=claim_id, owner=owner
        )


def _claim_ids(engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT claim_id, count(*) FROM vitals_raw_data GROUP BY 1 ORDER BY 1")
        )
        return dict(rows.all())


def _dead_process() -> lifecycle.ClaimOwner:
    """The owner of a process that ran on this machine and was killed."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = psutil.Process(child.pid).create_time()
    child.kill()
    child.wait()
    return lifecycle.ClaimOwner(lifecycle.this_host(), child.pid, started)


def test_a_claim_whose_process_died_is_taken_over_by_the_next_claim_at_once(engine) -> None:
    ingest_lines(engine, "vitals", _vitals(1, 5))
    assert _claim(engine, "crashed", _dead_process()).claimed == 5
    with engine.connect() as conn:
        assert lifecycle.users_with_pending(conn, "vitals") == [1]
    taken = _claim(engine, "next")
    assert (taken.claimed, taken.taken_over) == (5, 5)
    assert taken.date_from == date(2024, 3, 10)
    assert _claim_ids(engine) == {"next": 5}
    with engine.connect() as conn:
        owners = conn.execute(text("SELECT claim_id, pid FROM claims")).all()
    assert [tuple(o) for o in owners] == [("next", os.getpid())]


def test_a_live_claim_is_left_alone_and_a_reused_pid_is_not_mistaken_for_it(engine) -> None:
    ingest_lines(engine, "vitals", _vitals(1, 4))
    assert _claim(engine, "live").claimed == 4  # this very process: alive
    assert _claim(engine, "second").claimed == 0
    # The same pid with another start time is another process: the claim's process is gone.
    me = lifecycle.current_owner()
    assert me.process_started is not None
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE claims SET process_started = :t"), {"t": me.process_started - 1000}
        )
    assert _claim(engine, "third").taken_over == 4


def test_a_claim_made_elsewhere_is_taken_over_when_its_lease_ends(engine) -> None:
    ingest_lines(engine, "vitals", _vitals(1, 3) + _vitals(2, 2))
    # A Lambda's claim: no process to check, only a lease.
    assert _claim(engine, "lambda", lifecycle.ClaimOwner()).claimed == 3
    # Another machine's process: its pid means nothing here, so its lease decides too.
    elsewhere = lifecycle.ClaimOwner("other-host/boot", 1, 1.0)
    assert _claim(engine, "laptop", elsewhere, user_id=2).claimed == 2
    assert _claim(engine, "early").claimed == 0
    assert _claim(engine, "early", user_id=2).claimed == 0
    with engine.begin() as conn:
        conn.execute(text("UPDATE claims SET lease_expires_at = now() - interval '1 second'"))
    assert _claim(engine, "after-lease").taken_over == 3
    assert _claim(engine, "after-lease-2", user_id=2).taken_over == 2


def test_the_lease_outlasts_every_state_machine_timeout() -> None:
    import json

    from tasks.settings import REPO_ROOT, get_settings

    lambda_longest_run = 15 * 60
    for path in (REPO_ROOT / "statemachines").glob("*.asl.json"):
        timeout = json.loads(path.read_text())["TimeoutSeconds"]
        assert get_settings().claim_lease_seconds > timeout + lambda_longest_run, path.name


def _fail(engine, claim_id: str, user_id: int = 1) -> lifecycle.FailedClaim:
    with Session(engine) as s, s.begin():
        return lifecycle.mark_failed(
            s.connection(), domain="vitals", claim_id=claim_id, error="StepFailed"
        )


def test_failed_rows_are_retried_then_bisected_then_set_aside(engine, caplog) -> None:
    ingest_lines(engine, "vitals", _vitals(1, 3))
    assert _claim(engine, "c1").claimed == 3
    assert _fail(engine, "c1") == lifecycle.FailedClaim(failed=3, set_aside=0)
    # A redriven message (or any later one) retries the failed rows together.
    with engine.connect() as conn:
        assert lifecycle.users_with_pending(conn, "vitals") == [1]
    retry = _claim(engine, "c2")
    assert (retry.claimed, retry.retried, retry.isolated) == (3, 3, False)
    # Failed twice together: no row is set aside for a batch's failure; the batch is bisected.
    assert _fail(engine, "c2") == lifecycle.FailedClaim(failed=3, set_aside=0)
    half = _claim(engine, "c3")
    assert (half.claimed, half.isolated) == (2, True)
    with Session(engine) as s, s.begin():
        lifecycle.mark_aggregated(s.connection(), domain="vitals", claim_id="c3")
    # The other half goes back to the batch; it fails alone, then is retried alone.
    rest = _claim(engine, "c4")
    assert (rest.claimed, rest.isolated) == (1, False)
    assert _fail(engine, "c4") == lifecycle.FailedClaim(failed=1, set_aside=0)
    alone = _claim(engine, "c5")
    assert (alone.claimed, alone.isolated) == (1, True)
    with caplog.at_level("WARNING", logger="tasks.lifecycle"):
        set_aside = lifecycle.FailedClaim(failed=1, set_aside=1, bisect_further=True)
        assert _fail(engine, "c5") == set_aside
    assert "rows_set_aside domain=vitals user_id=1 claim_id=c5 rows=1" in caplog.text
    from tasks.observability import business_counts
    from tasks.steps.models import MarkFailedOutput

    output = MarkFailedOutput(failed=1, set_aside=1).model_dump()
    assert business_counts(output) == {"RowsSetAside": 1}
    # The row that failed alone max_attempts times stays failed with its reason; nothing is left.
    assert _claim(engine, "c6").claimed == 0
    with engine.connect() as conn:
        assert lifecycle.users_with_pending(conn, "vitals") == []
        rows = conn.execute(
            text("SELECT status, attempts, error FROM vitals_raw_data ORDER BY id")
        ).all()
    assert [tuple(r) for r in rows] == [
        ("aggregated", 2, None),
        ("aggregated", 2, None),
        ("failed", 3, "StepFailed"),
    ]


def test_only_a_failed_bisection_step_asks_for_the_trigger_again(engine) -> None:
    """The workflow re-sends a trigger after a failed bisection step (the next claim halves the
    fault further, or retries the sibling half it released), never after a failed batch: a
    fault every claim meets must not loop."""
    ingest_lines(engine, "vitals", _vitals(1, 5))
    _claim(engine, "c1")
    assert _fail(engine, "c1").bisect_further is False  # a batch's first failure
    _claim(engine, "c2")
    assert _fail(engine, "c2").bisect_further is False  # its second: the rows become suspects
    half = _claim(engine, "c3")
    assert (half.claimed, half.isolated) == (3, True)
    assert _fail(engine, "c3") == lifecycle.FailedClaim(failed=3, set_aside=0, bisect_further=True)
    sibling = _claim(engine, "c4")  # the other half, back with the batch
    assert (sibling.claimed, sibling.isolated) == (2, False)
    assert _fail(engine, "c4").bisect_further is False
    alone = _claim(engine, "c5")  # half of the last failed group: one row
    assert (alone.claimed, alone.isolated) == (1, True)
    # Set aside, and its sibling released: the next claim has that row to retry.
    assert _fail(engine, "c5") == lifecycle.FailedClaim(failed=1, set_aside=1, bisect_further=True)


def test_a_row_that_breaks_a_step_is_set_aside_and_the_users_other_rows_go_on(engine) -> None:
    from tasks.process import process_pending

    ingest_lines(engine, "vitals", _vitals(1, 6))
    insert_poison_row(engine, 1)
    runs = process_pending(["vitals"])
    # Two failures together, then halves: 4 rows succeed, the other 3 fail again, 2 of them
    # succeed, and the bad row fails by itself twice.
    assert [r.claimed for r in runs] == [7, 7, 4, 3, 2, 1, 1]
    assert [r.error is None for r in runs] == [False, False, True, False, True, False, False]
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT status, attempts, error, count(*) FROM vitals_raw_data GROUP BY 1, 2, 3")
        ).all()
        hourly = conn.execute(text("SELECT sum(count) FROM vitals_agg_hourly")).scalar_one()
    assert sorted(tuple(r) for r in rows) == [
        ("aggregated", 2, None, 6),
        ("failed", 3, "DatabaseRejectedRow", 1),
    ]
    assert hourly == 6
    assert process_pending(["vitals"]) == []  # set aside: no longer retried


@pytest.mark.parametrize("max_attempts", [2, 3])
def test_one_bad_row_among_many_costs_a_logarithm_of_claims(
    engine, monkeypatch, max_attempts: int
) -> None:
    from tasks.process import process_pending
    from tasks.settings import get_settings

    monkeypatch.setenv("HEALTHFLOW_MAX_ATTEMPTS", str(max_attempts))
    get_settings.cache_clear()
    try:
        ingest_lines(engine, "vitals", _vitals(1, 700))
        insert_poison_row(engine, 1)
        ingest_lines(engine, "vitals", _vitals(1, 756, "2024-03-12"))
        runs = process_pending(["vitals"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    # 1,457 rows: about 2 log2(1457) = 22 claims, not one per row; only the bad row set aside.
    assert len(runs) <= 2 + 2 * 11 + 2
    assert _statuses(engine) == {"aggregated": 1456, "failed": 1}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT sum(count) FROM vitals_agg_hourly")).scalar_one() == 1456


def test_a_fault_that_is_fixed_costs_no_row_and_few_claims(engine) -> None:
    from tasks.process import process_claim, process_pending

    ingest_lines(engine, "vitals", _vitals(1, 1200))
    with engine.begin() as conn:  # a fault of the database, not of any row
        conn.execute(text("CREATE TABLE fault_switch (on_ boolean)"))
        conn.execute(text("INSERT INTO fault_switch VALUES (true)"))
        conn.execute(
            text(
                "CREATE FUNCTION fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF EXISTS (SELECT 1 FROM fault_switch) THEN RAISE EXCEPTION 'fault'; END IF; "
                "RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER fault BEFORE INSERT ON vitals_categorized "
                "FOR EACH STATEMENT EXECUTE FUNCTION fault()"
            )
        )
    try:
        # The batch fails three times in a row (the first run, a redrive, a sweep): none of
        # that counts as the rows' fault.
        for _ in range(3):
            assert process_claim("vitals", 1).error is not None
        with engine.connect() as conn:
            attempts = conn.execute(text("SELECT max(attempts) FROM vitals_raw_data")).scalar()
        assert attempts < 3
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM fault_switch"))
        runs = process_pending(["vitals"])
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER fault ON vitals_categorized"))
            conn.execute(text("DROP FUNCTION fault()"))
            conn.execute(text("DROP TABLE fault_switch"))
    assert all(run.error is None for run in runs)
    # The third failure was a bisection step: its sibling half went back to the batch. Then
    # the failed half is halved once and its other half retried whole.
    assert [run.claimed for run in runs] == [600, 300, 300]
    assert _statuses(engine) == {"aggregated": 1200}


def test_a_workflow_claim_of_one_suspect_asks_for_the_next_execution(engine) -> None:
    from tasks.steps.registry import run_step

    ingest_lines(engine, "vitals", _vitals(1, 2))
    for claim_id in ("c1", "c2"):  # two failures together: both rows become suspects
        _claim(engine, claim_id)
        _fail(engine, claim_id)

    def claim(claim_id: str) -> dict:
        return run_step(
            "claim",
            {"domain": "vitals", "user_id": 1, "claim_id": claim_id, "bounded": True},
        )

    first = claim("w1")
    assert (first["claimed"], first["isolated"], first["more_pending"]) == (1, True, True)
    with Session(engine) as s, s.begin():
        lifecycle.mark_aggregated(s.connection(), domain="vitals", claim_id="w1")
    last = claim("w2")  # the other half, back with the batch
    assert (last["claimed"], last["isolated"], last["more_pending"]) == (1, False, False)
