"""A burst through the local cloud: executions are bounded by a concurrency limit (as Lambda
concurrency is bounded by database connection slots), the rest of the queue waits its turn,
and the result equals direct mode."""

from __future__ import annotations

import logging

from tasks.db import engine as db_engine
from tasks.localcloud.cloud import LocalCloud
from tasks.localcloud.moto_ext import silence_parser_logs
from tasks.process import process_pending
from tests.support.reference import ZONES
from tests.workflow.test_end_to_end import _seed, snapshot, statuses, vitals_message


def test_a_burst_runs_within_the_limit_and_equals_direct_mode(engine, make_schema_engine) -> None:  # type: ignore[no-untyped-def]
    _seed(engine)
    silence_parser_logs()
    logging.getLogger("tasks").setLevel(logging.ERROR)
    with LocalCloud(heartbeat_seconds=0.5, max_running=3) as cloud:
        for _ in range(3):  # every message three times: duplicates find nothing left to do
            for user in ZONES:
                cloud.send_message(vitals_message(user))
                cloud.send_message({"job_type": "process_pending_nutrition", "user_id": user})
        results = cloud.drain()
        assert len(results) == 6 * len(ZONES) and all(r.succeeded for r in results)
        assert 1 < cloud.peak_running <= 3
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
