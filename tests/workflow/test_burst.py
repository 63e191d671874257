"""A burst through the local cloud: executions are bounded by a concurrency limit (as Lambda
concurrency is bounded by database connection slots), the rest of the queue waits its turn,
and the result equals direct mode."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from tasks.db import engine as db_engine
from tasks.localcloud.cloud import LocalCloud
from tasks.localcloud.moto_ext import silence_parser_logs
from tasks.process import process_pending
from tasks.steps.registry import run_step
from tests.support.reference import ZONES
from tests.workflow.test_end_to_end import _seed, snapshot, statuses, vitals_message


def _first_claims_meet(parties: int) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """The real steps, except that the first `parties` claims wait until all of them run: the
    executions then overlap by construction, not by the luck of timing."""
    meeting = threading.Barrier(parties)
    claims = itertools.count()

    def run(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        if step == "claim" and next(claims) < parties:
            meeting.wait(timeout=60)  # the bound only stops a limit below `parties` from hanging
        return run_step(step, payload)

    return run


def test_a_burst_runs_within_the_limit_and_equals_direct_mode(engine, make_schema_engine) -> None:  # type: ignore[no-untyped-def]
    _seed(engine)
    silence_parser_logs()
    logging.getLogger("tasks").setLevel(logging.ERROR)
    with LocalCloud(heartbeat_seconds=0.5, max_running=3, run_step=_first_claims_meet(3)) as cloud:
        for _ in range(3):  # every message three times: duplicates find nothing left to do
            for user in ZONES:
                cloud.send_message(vitals_message(user))
                cloud.send_message({"job_type": "process_pending_nutrition", "user_id": user})
        results = cloud.drain()
        assert len(results) == 6 * len(ZONES) and all(r.succeeded for r in results)
        # The first three claims waited for each other, so three ran at once: never more.
        assert cloud.peak_running == 3
        through_workflow = snapshot(engine)
    direct = make_schema_engine()
    db_engine.set_engine(direct)
    try:
        _seed(direct)
        assert all(run.error is None for run in process_pending())
    finally:
        db_engine.set_engine(engine)
    assert snapshot(direct) == through_workflow
    assert set(statuses(engine)["vitals_raw_data"]) == {"aggregated"}
    assert set(statuses(engine)["nutrition_raw_data"]) == {"aggregated"}
