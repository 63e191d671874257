"""The real ASL file on the local cloud, with the real steps, against the real database."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tasks.errors import HealthflowError
from tasks.ingest import ingest_lines
from tasks.localcloud.cloud import LocalCloud
from tasks.localcloud.moto_ext import silence_parser_logs
from tasks.process import process_pending
from tasks.steps.registry import run_step
from tests.support.history import assert_no_health_values, assert_no_phrases
from tests.support.reference import ZONES, generate

MESSAGES = Path(__file__).parent.parent / "data" / "messages"
AGGREGATES = (
    "vitals_agg_hourly", "vitals_agg_daily", "vitals_agg_weekly", "vitals_agg_monthly",
    "nutrition_agg_daily", "nutrition_agg_weekly", "nutrition_agg_monthly",
)  # fmt: skip
FOODS = ["Masala Dosa", "Quinoa Salad", "Paneer Tikka"]


def vitals_message(user_id: int) -> dict:
    return {"job_type": "process_pending_vitals", "user_id": user_id, "priority": "normal"}


@pytest.fixture
def cloud(engine) -> Iterator[LocalCloud]:
    silence_parser_logs()
    logging.getLogger("tasks").setLevel(logging.ERROR)
    with LocalCloud(heartbeat_seconds=0.5) as local_cloud:
        yield local_cloud


def _seed(engine: Engine, users=ZONES, seed: int = 21, per_user: int = 60) -> list[str]:
    ingest_lines(
        engine, "users", [f'{{"user_id": {u}, "timezone": "{z}"}}' for u, z in users.items()]
    )
    lines = [r.line() for r in generate(seed=seed, per_user=per_user) if r.user_id in users]
    ingest_lines(engine, "vitals", lines)
    meals = [
        json.dumps({"user_id": u, "meal_date": f"2024-03-{d:02d}", "meal_type": "lunch",
                    "food_name": FOODS[d % 3], "calories": 400 + d, "protein_g": 20.5})
        for u in users for d in range(1, 20)
    ]  # fmt: skip
    ingest_lines(engine, "nutrition", meals)
    return lines


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    tables = {}
    with engine.connect() as conn:
        for table in AGGREGATES:
            every = conn.execute(text(f"SELECT * FROM {table} LIMIT 0")).keys()
            columns = [c for c in every if c != "updated_at"]
            rows = conn.execute(text(f"SELECT {', '.join(columns)} FROM {table}")).all()
            tables[table] = sorted(tuple(r) for r in rows)
    return tables


def statuses(engine: Engine) -> dict[str, dict[str, int]]:
    out = {}
    with engine.connect() as conn:
        for table in ("vitals_raw_data", "nutrition_raw_data", "lab_report_raw"):
            out[table] = dict(
                conn.execute(text(f"SELECT status, count(*) FROM {table} GROUP BY 1")).all()
            )
    return out


def test_vitals_and_nutrition_branches_equal_direct_mode(engine, cloud, make_schema_engine) -> None:
    _seed(engine)
    for user in ZONES:
        cloud.send_message(vitals_message(user))
        cloud.send_message({"job_type": "process_pending_nutrition", "user_id": user})
    results = cloud.drain()
    failures = [d.body["error"] for d in cloud.dlq_messages()]
    assert len(results) == 2 * len(ZONES) and all(r.succeeded for r in results), failures
    for result in results:
        states = cloud.entered_states(result.execution_arn)
        assert len(states) <= 12, states
        assert states[-1] in ("VitalsDone", "NutritionDone")
    through_workflow = snapshot(engine)

    # The same data processed in direct mode, in a schema of its own.
    from tasks.db import engine as db_engine

    direct = make_schema_engine()
    db_engine.set_engine(direct)
    _seed(direct)
    assert all(run.error is None for run in process_pending())
    db_engine.set_engine(engine)
    assert snapshot(direct) == through_workflow
    assert statuses(engine)["vitals_raw_data"] == {
        "aggregated": sum(statuses(direct)["vitals_raw_data"].values())
    }


def test_nothing_pending_ends_early(engine, cloud) -> None:
    cloud.send_message(vitals_message(4242))
    [result] = cloud.drain()
    assert result.succeeded
    states = cloud.entered_states(result.execution_arn)
    assert states[-1] == "NothingToDo" and len(states) <= 5


def test_duplicate_and_concurrent_messages_never_double_count(engine, cloud) -> None:
    _seed(engine, users={101: ZONES[101]})
    for _ in range(4):  # one user, four triggers at once: duplicates running concurrently
        cloud.send_message(vitals_message(101))
    results = cloud.drain()
    assert all(r.succeeded for r in results)
    ends = sorted(cloud.entered_states(r.execution_arn)[-1] for r in results)
    assert ends.count("VitalsDone") >= 1
    from tests.support.reference import vitals_reference

    readings = [r for r in generate(seed=21, per_user=60) if r.user_id == 101]
    expected = vitals_reference(readings, "daily")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT user_id, loinc_code, bucket_start, count FROM vitals_agg_daily")
        ).all()
    assert {(r[0], r[1], r[2]): r[3] for r in rows} == {k: v.count for k, v in expected.items()}


class FailOnce:
    """The real steps, except that one step fails once with a domain error."""

    class InjectedFailure(HealthflowError):
        pass

    def __init__(self, step: str, granularity: str | None = None) -> None:
        self.step, self.granularity, self.armed = step, granularity, True

    def __call__(self, name: str, payload: dict) -> dict:
        if self.armed and name == self.step and payload.get("granularity") == self.granularity:
            self.armed = False
            raise FailOnce.InjectedFailure("injected for the test")
        return run_step(name, payload)


def test_a_failed_step_lands_in_the_dlq_and_reprocessing_completes_exactly(
    engine, make_schema_engine
) -> None:
    silence_parser_logs()
    lines = _seed(engine, users={102: ZONES[102]})
    with LocalCloud(run_step=FailOnce("aggregate", "weekly"), heartbeat_seconds=0.5) as cloud:
        cloud.send_message(vitals_message(102))
        [failed] = cloud.drain()
        assert failed.status == "FAILED"
        assert "MarkClaimFailed" in cloud.entered_states(failed.execution_arn)
        [dead] = cloud.dlq_messages()
        assert dead.body["error"]["Error"] == "InjectedFailure"
        assert dead.body["execution_arn"] == failed.execution_arn
        # The validated trigger, not the pipe's raw record: what a redrive re-sends.
        assert dead.body["message"] == {**vitals_message(102), "reprocess": None}
        assert statuses(engine)["vitals_raw_data"] == {"failed": len(lines)}

        manual = {**vitals_message(102), "reprocess": {"from": "2023-01-01", "to": "2025-12-31"}}
        redo = cloud.wait(cloud.start_execution(manual, "reprocess-102"))
        assert redo.succeeded
    assert statuses(engine)["vitals_raw_data"] == {"aggregated": len(lines)}
    from tasks.db import engine as db_engine

    direct = make_schema_engine()
    db_engine.set_engine(direct)
    _seed(direct, users={102: ZONES[102]})
    process_pending(["vitals"])
    db_engine.set_engine(engine)
    assert snapshot(direct) == snapshot(engine)


def test_malformed_messages_land_in_the_dlq_with_a_reason_and_change_nothing(engine, cloud) -> None:
    _seed(engine, users={101: ZONES[101]})
    before = statuses(engine)
    bodies = [(MESSAGES / "bad_json.txt").read_text().strip()]
    bodies += (MESSAGES / "invalid.jsonl").read_text().splitlines()
    for body in bodies:
        cloud._sqs.send_message(QueueUrl=cloud.queue_url, MessageBody=body)
    results = cloud.drain()
    assert [r.status for r in results] == ["FAILED"] * len(bodies)
    dead = cloud.dlq_messages()
    assert len(dead) == len(bodies)
    causes = sorted(d.body["error"]["Cause"] for d in dead)
    assert all(d.body["error"]["Error"] == "InvalidMessage" for d in dead)
    joined = " | ".join(causes)
    for reason in ("not valid JSON", "job_type", "user_id: Field required",
                   "user_id: Input should be greater than 0", "note: Extra inputs"):  # fmt: skip
        assert reason in joined, reason
    assert statuses(engine) == before


def test_no_health_data_in_histories_or_dead_letters(engine) -> None:
    silence_parser_logs()
    lines = _seed(engine, users={103: ZONES[103]})
    with LocalCloud(run_step=FailOnce("aggregate", "monthly"), heartbeat_seconds=0.5) as cloud:
        cloud.send_message(vitals_message(103))
        cloud.send_message({"job_type": "process_pending_nutrition", "user_id": 103})
        results = cloud.drain()
        seen = [cloud.history(r.execution_arn) for r in results]
        seen += [d.body for d in cloud.dlq_messages()]
    assert any(not r.succeeded for r in results)
    assert_no_phrases(seen, list(FOODS))
    # Values are searched as whole JSON values and tokens, never as substrings of timestamps;
    # only values with decimals, since a small integer could equal a count.
    values = {repr(json.loads(line)["value"]) for line in lines}
    decimals = sorted(v for v in values if "." in v and not v.endswith(".0"))
    assert decimals
    assert_no_health_values(seen, decimals)


def test_a_backlog_larger_than_one_claim_completes_exactly_in_slices(
    engine, make_schema_engine, monkeypatch
) -> None:
    """An Express execution lasts at most five minutes, so the workflow's claims are bounded
    (HEALTHFLOW_CLAIM_MAX_ROWS) and an execution that leaves rows re-queues its trigger."""
    from tasks.settings import get_settings

    silence_parser_logs()
    lines = _seed(engine, users={104: ZONES[104]})
    monkeypatch.setenv("HEALTHFLOW_CLAIM_MAX_ROWS", str(len(lines) // 3))
    get_settings.cache_clear()
    try:
        with LocalCloud(heartbeat_seconds=0.5) as cloud:
            cloud.send_message(vitals_message(104))
            cloud.send_message({"job_type": "process_pending_nutrition", "user_id": 104})
            results = cloud.drain()
            ends = [cloud.entered_states(r.execution_arn) for r in results]
    finally:
        monkeypatch.delenv("HEALTHFLOW_CLAIM_MAX_ROWS")
        get_settings.cache_clear()
    assert all(r.succeeded for r in results)
    vitals_runs = [states for states in ends if "ClaimPendingVitals" in states]
    # Three slices and a last one that finds nothing, or three when the split is exact.
    assert len(vitals_runs) >= 3
    assert sum("ContinueVitalsBacklog" in states for states in vitals_runs) == len(vitals_runs) - 1
    assert statuses(engine)["vitals_raw_data"] == {"aggregated": len(lines)}

    from tasks.db import engine as db_engine

    direct = make_schema_engine()
    db_engine.set_engine(direct)
    _seed(direct, users={104: ZONES[104]})
    process_pending(["vitals", "nutrition"])
    db_engine.set_engine(engine)
    assert snapshot(direct) == snapshot(engine)
