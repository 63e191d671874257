"""The labs branch end to end: the Express parent starts the Standard labs child, which resolves
the names the catalog knows in the Lambda step and runs the ECS task (.sync) with the real model
for the rest, in the local cloud; the result equals direct mode."""

from __future__ import annotations

import json
import logging

from sqlalchemy import Engine, text

from tasks.ingest import ingest_lines
from tasks.localcloud.cloud import LocalCloud
from tasks.localcloud.moto_ext import silence_parser_logs
from tasks.process import process_pending
from tests.support.history import assert_no_health_values, assert_no_phrases

REPORT = [
    ("Glycosylated Haemoglobin (HbA1c)", "6.8", "%"),
    ("S. Creatinine", "1.13", "mg/dL"),
    ("SGPT (ALT)", "41", "U/L"),
    ("Fasting Blood Sugar", "6.1", "mmol/L"),
    ("Total Leucocyte Count", "7400", "cells/cumm"),
    ("Urine Ketones", "Negative", None),
    ("Patient's favourite colour", "blue", None),
]
LAB_TABLES = ("labs_agg_daily", "labs_agg_monthly", "labs_agg_quarterly", "labs_agg_yearly")


def _seed(engine: Engine) -> list[str]:
    ingest_lines(engine, "users", ['{"user_id": 77, "timezone": "Asia/Kolkata"}'])
    lines = [
        json.dumps({"user_id": 77, "report_id": f"R{n}", "test_name": name, "value": value,
                    "unit": unit, "collected_at": f"2024-{3 * n + 1:02d}-15"})
        for n in range(4) for name, value, unit in REPORT
    ]  # fmt: skip
    ingest_lines(engine, "labs", lines)
    return lines


def _tables(engine: Engine) -> dict[str, list[tuple]]:
    out = {}
    with engine.connect() as conn:
        for table in LAB_TABLES:
            rows = conn.execute(
                text(
                    "SELECT user_id, loinc_code, bucket_start, count, sum, min, max, "
                    f"last_value, unit FROM {table}"
                )
            ).all()
            out[table] = sorted(tuple(r) for r in rows)
        out["categorized"] = sorted(
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT status, loinc_code, method, value, unit, unit_flag, local_date "
                    "FROM lab_report_categorized"
                )
            )
        )
    return out


def test_labs_branch_runs_the_ecs_task_and_equals_direct_mode(
    engine, make_schema_engine, lab_matcher
) -> None:
    silence_parser_logs()
    logging.getLogger("tasks").setLevel(logging.ERROR)
    lines = _seed(engine)
    # A generous bound: the model loads in the in-process container on a shared machine.
    with LocalCloud(heartbeat_seconds=0.5, execution_timeout_seconds=900) as cloud:
        cloud.send_message({"job_type": "process_pending_labs", "user_id": 77})
        [result] = cloud.drain()
        assert result.child is not None
        parent_states = cloud.entered_states(result.execution_arn)
        states = cloud.entered_states(result.child.execution_arn)
        history = [event for arn in result.execution_arns for event in cloud.history(arn)]
    assert result.succeeded, result
    assert parent_states[-2:] == ["StartLabsWorkflow", "LabsWorkflowStarted"]
    # "Patient's favourite colour" is unknown to the catalog: the model has a name to judge.
    assert "ResolveKnownNames" in states and "CategorizeLabs" in states
    assert states[-1] == "LabsDone"
    assert len(states) <= 12
    # Neither test names nor values enter the execution history.
    assert_no_phrases(history, [name for name, _, _ in REPORT])
    # Whole numbers are left out: an event id or a count may equal one.
    assert_no_health_values(history, [value for _, value, _ in REPORT if not value.isdigit()])
    through_workflow = _tables(engine)
    assert len(through_workflow["categorized"]) == len(lines)
    statuses = {row[0] for row in through_workflow["categorized"]}
    assert statuses == {"categorized", "uncategorized"}
    # HbA1c, creatinine, ALT, glucose (converted from mmol/L) and the leucocyte count are
    # numeric: one daily bucket per code per report date.
    assert len(through_workflow["labs_agg_daily"]) == 5 * 4

    from tasks.db import engine as db_engine

    direct = make_schema_engine()
    db_engine.set_engine(direct)
    _seed(direct)
    assert all(run.error is None for run in process_pending(["labs"]))
    db_engine.set_engine(engine)
    assert _tables(direct) == through_workflow
