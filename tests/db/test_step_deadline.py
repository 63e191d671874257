"""A step that runs into its state's deadline leaves nothing behind on the server.

The holder below claims a user's rows and then gets stuck; its state's deadline cancels the
stuck statement on the server, which rolls the claim back and releases every lock. The next
execution, which found the rows locked, does not report "nothing to do": it waits for them and
claims them. Everything is observed in pg_stat_activity and pg_locks, never with a clock.
"""

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from psycopg2.errors import LockNotAvailable, QueryCanceled
from sqlalchemy import Connection, Engine, text

from tasks import lifecycle
from tasks.db import deadline
from tasks.errors import DatabaseTimeout
from tasks.statemachines import state_timeouts
from tasks.steps.definitions import transaction
from tasks.steps.registry import run_step

ROWS = 2_000
STUCK = 7_000_001  # an advisory lock key the test holds, so the holder's next statement waits


def _until(check: Callable[[], bool]) -> None:
    """Poll the server until `check` holds (every condition here is reached in milliseconds;
    the bound only keeps a broken build from hanging)."""
    for _ in range(3_000):
        if check():
            return
        time.sleep(0.01)
    pytest.fail("the server never reached the expected state")


def _one(monitor: Connection, sql: str, **params: Any) -> Any:
    return monitor.execute(text(sql), params).scalar_one()


def test_the_deadline_comes_from_the_asl_and_bounds_the_transaction(engine: Engine) -> None:
    assert state_timeouts()["ClaimPendingVitals"] == 60
    settings = "SELECT setting::int FROM pg_settings WHERE name = :name"
    with deadline.for_state("ClaimPendingVitals"), transaction() as conn:
        statement_ms, lock_ms = (
            conn.execute(text(settings), {"name": name}).scalar_one()
            for name in ("statement_timeout", "lock_timeout")
        )
    # 60 s less the margin (5 s), in milliseconds, less what the step already spent.
    assert 0 < statement_ms <= 55_000 and 0 < lock_ms <= 55_000
    with transaction() as conn:  # outside a step, and after it: the server's defaults
        assert conn.execute(text(settings), {"name": "statement_timeout"}).scalar_one() == 0


def test_a_claim_held_past_its_deadline_is_cancelled_and_the_next_execution_claims_its_rows(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO vitals_raw_data (user_id, metric, value, unit, start_time) "
                "SELECT 1, 'heart_rate', 70, 'bpm', timestamptz '2024-01-01' + i * interval '1 s' "
                "FROM generate_series(1, :rows) i"
            ),
            {"rows": ROWS},
        )
    # Autocommit: pg_stat_activity is read once per transaction.
    monitor = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    blocker = engine.connect()
    blocker.execute(text("SELECT pg_advisory_lock(:key)"), {"key": STUCK})
    claimed, next_waits = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def holder() -> None:
        try:
            with deadline.for_state("ClaimPendingVitals", seconds=3), transaction() as conn:
                outcome["pid"] = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                lifecycle.claim_pending(conn, domain="vitals", user_id=1, claim_id="stuck")
                claimed.set()
                next_waits.wait()
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": STUCK})
        except Exception as error:  # the outcome is what the test checks
            outcome["holder"] = error
        finally:
            claimed.set()

    def next_execution() -> None:
        with deadline.for_state("ClaimPendingVitals"):
            outcome["next"] = run_step(
                "claim", {"domain": "vitals", "user_id": 1, "claim_id": "next", "bounded": True}
            )

    threads = [threading.Thread(target=holder), threading.Thread(target=next_execution)]
    try:
        threads[0].start()
        claimed.wait()
        holder_pid = outcome["pid"]
        threads[1].start()
        # The next execution found the rows locked and waits for the holder's transaction.
        _until(
            lambda: (
                _one(
                    monitor,
                    "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))",
                    pid=holder_pid,
                )
                == 1
            )
        )
        next_waits.set()
        # The holder is stuck on the server until its deadline cancels the statement.
        threads[0].join()
        threads[1].join()
    finally:
        next_waits.set()
        blocker.close()
    # The server cancelled the stuck statement (57014, or 55P03 for the lock wait).
    assert isinstance(outcome.get("holder"), DatabaseTimeout)
    assert isinstance(outcome["holder"].__cause__, QueryCanceled | LockNotAvailable)
    activity = monitor.execute(
        text("SELECT state, wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
        {"pid": holder_pid},
    ).one()
    assert activity.state == "idle"  # nothing of the holder runs on the server any more
    held = _one(
        monitor,
        "SELECT count(*) FROM pg_locks WHERE pid = :pid AND locktype <> 'virtualxid'",
        pid=holder_pid,
    )
    assert held == 0
    monitor.close()
    assert outcome["next"]["claimed"] == ROWS
    assert outcome["next"]["skipped_locked"] == ROWS
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(text("SELECT claim_id, count(*) FROM vitals_raw_data GROUP BY 1")).all()
        )
    assert statuses == {"next": ROWS}
