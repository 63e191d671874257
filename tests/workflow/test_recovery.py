"""Recovery through the real ASL on the local cloud: a redriven message reprocesses."""

from __future__ import annotations

import json
import logging

from sqlalchemy import text

from tasks.deadletters import classify
from tasks.ingest import ingest_lines
from tasks.localcloud.cloud import LocalCloud
from tasks.localcloud.moto_ext import silence_parser_logs
from tests.support.reference import ZONES, generate
from tests.workflow.test_end_to_end import FailOnce, snapshot, vitals_message


def test_a_redriven_message_retries_the_failed_rows(engine, make_schema_engine) -> None:
    silence_parser_logs()
    logging.getLogger("tasks").setLevel(logging.ERROR)
    users = [f'{{"user_id": 102, "timezone": "{ZONES[102]}"}}']
    lines = [r.line() for r in generate(seed=21, per_user=60) if r.user_id == 102]
    ingest_lines(engine, "users", users)
    ingest_lines(engine, "vitals", lines)
    with LocalCloud(run_step=FailOnce("aggregate", "weekly"), heartbeat_seconds=0.5) as cloud:
        cloud.send_message(vitals_message(102))
        [failed] = cloud.drain()
        assert failed.status == "FAILED"
        [dead] = cloud.dlq_messages()
        cloud.delete_dead_letter(dead)
        # What `healthflow dlq redrive` sends: the dead letter's trigger message, unchanged.
        redriven = classify(dead.body).message
        assert redriven is not None
        cloud.send_message(json.loads(redriven.to_json_body()))
        [retried] = cloud.drain()
        assert retried.succeeded, cloud.entered_states(retried.execution_arn)
        assert cloud.dlq_messages() == []
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT status, attempts, count(*) FROM vitals_raw_data GROUP BY 1, 2")
        ).all()
    assert [tuple(r) for r in rows] == [("aggregated", 1, len(lines))]

    from tasks.db import engine as db_engine
    from tasks.process import process_pending

    direct = make_schema_engine()
    db_engine.set_engine(direct)
    ingest_lines(direct, "users", users)
    ingest_lines(direct, "vitals", lines)
    process_pending(["vitals"])
    db_engine.set_engine(engine)
    assert snapshot(direct) == snapshot(engine)
