"""The cost model's per-branch counts are read from the ASL (`tasks.cost.usage_from_asl`); here
every branch runs through the real ASL on the local cloud and what it entered is compared with
the path the model priced. The targets are then checked with the usage counted here, so a wrong
assumption about what a message does fails them, not only a change of the template."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from tasks import cost
from tasks.ingest import ingest_lines
from tasks.localcloud.cloud import ExecutionResult, LocalCloud
from tasks.localcloud.moto_ext import silence_parser_logs
from tasks.statemachines import EXPRESS_ASL, LABS_ASL
from tasks.steps.registry import run_step
from tests.support.reference import ZONES, generate

USER = next(iter(ZONES))
KNOWN_NAMES = [("S. Creatinine", "1.13", "mg/dL"), ("SGPT (ALT)", "41", "U/L")]
UNKNOWN_NAME = ("Patient's favourite colour", "blue", None)


def _without_the_model(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The real steps, except that the ml-worker's step leaves the names it gets uncategorized
    (this test counts states; tests/workflow/test_labs_branch.py runs the model)."""
    if name == "categorize_labs":
        return {}
    return run_step(name, payload)


def _labs(engine: Engine, user_id: int, names: list[tuple[str, str, str | None]]) -> None:
    lines = [
        json.dumps({"user_id": user_id, "report_id": f"R{user_id}", "test_name": name,
                    "value": value, "unit": unit, "collected_at": "2024-03-15"})
        for name, value, unit in names
    ]  # fmt: skip
    ingest_lines(engine, "labs", lines)


def _seed(engine: Engine) -> None:
    ingest_lines(engine, "users", [f'{{"user_id": {USER}, "timezone": "{ZONES[USER]}"}}'])
    vitals = [r.line() for r in generate(seed=5, per_user=20) if r.user_id == USER]
    ingest_lines(engine, "vitals", vitals)
    meals = [
        json.dumps({"user_id": USER, "meal_date": f"2024-03-{d:02d}", "meal_type": "lunch",
                    "food_name": "rice", "calories": 400 + d, "protein_g": 20.5})
        for d in range(1, 4)
    ]  # fmt: skip
    ingest_lines(engine, "nutrition", meals)
    _labs(engine, USER, KNOWN_NAMES)
    _labs(engine, USER + 1000, [*KNOWN_NAMES, UNKNOWN_NAME])


def _run(cloud: LocalCloud, message: dict[str, Any]) -> ExecutionResult:
    cloud.send_message({"priority": "normal", **message})
    [result] = cloud.drain()
    assert result.succeeded, cloud.entered_states(result.execution_arn)
    return result


@pytest.fixture(scope="module")
def express() -> dict[str, Any]:
    return dict(json.loads(EXPRESS_ASL.read_text()))


@pytest.fixture(scope="module")
def labs() -> dict[str, Any]:
    return dict(json.loads(LABS_ASL.read_text()))


Counted = dict[str, list[tuple[list[str], list[str]]]]


@pytest.fixture(scope="module")
def counted(make_schema_engine: Any) -> Iterator[Counted]:
    """(parent states, child states) of each branch's runs on the local cloud: vitals,
    nutrition, labs with known names only and with a name for the model, and a trigger that
    finds nothing pending."""
    from tasks.db import engine as db_engine

    silence_parser_logs()
    logging.getLogger("tasks").setLevel(logging.ERROR)
    previous = db_engine.current_engine()
    engine = make_schema_engine()
    db_engine.set_engine(engine)
    _seed(engine)
    runs: Counted = {}
    try:
        with LocalCloud(run_step=_without_the_model, heartbeat_seconds=0.5) as cloud:
            for branch, job, user in [
                ("vitals", "vitals", USER),
                ("nutrition", "nutrition", USER),
                ("labs", "labs", USER),
                ("labs", "labs", USER + 1000),
                # The same trigger again: everything is settled, nothing is pending.
                ("nothing", "vitals", USER),
            ]:
                result = _run(cloud, {"job_type": f"process_pending_{job}", "user_id": user})
                parent = cloud.entered_states(result.execution_arn)
                child = cloud.entered_states(result.child.execution_arn) if result.child else []
                runs.setdefault(branch, []).append((parent, child))
        yield runs
    finally:
        db_engine.set_engine(previous)


def test_every_branch_enters_the_states_the_cost_model_prices(
    counted: Counted, express: dict[str, Any], labs: dict[str, Any]
) -> None:
    assert counted["vitals"] == [(cost.happy_path(express, "VitalsDone"), [])]
    assert counted["nutrition"] == [(cost.happy_path(express, "NutritionDone"), [])]
    assert counted["nothing"] == [(cost.happy_path(express, "NothingToDo"), [])]
    labs_parent = cost.happy_path(express, "LabsWorkflowStarted")
    assert counted["labs"] == [
        (labs_parent, cost.happy_path(labs, "LabsDone")),
        (labs_parent, cost.happy_path(labs, "LabsDone", through=cost.MODEL_STATE)),
    ]
    # And in the model's units: what was counted here is what the bill multiplies.
    measured = _usage(counted, express, labs)
    for branch, usage in cost.USAGE.items():
        priced = measured[branch]
        assert (usage.express_states, usage.express_task_states, usage.lambda_invocations) == (
            priced.express_states,
            priced.express_task_states,
            priced.lambda_invocations,
        ), branch
        assert usage.express_lambda_invocations == priced.express_lambda_invocations, branch
        assert usage.standard_transitions == pytest.approx(priced.standard_transitions), branch


#: The monthly targets, with your database (README "What it costs"), just above what the default
#: stack costs ($0.90, $1.98, $11.69, with the ml-worker starting for 99% of lab messages).
#: Idle: six alarm metrics ($0.60: the dead-letter queue, the queue's age, and the two Express
#: machines' failed and timed-out executions; the Standard labs child pages through an
#: EventBridge rule, $0), the pipe's empty polls ($0.26) and the image in ECR ($0.04).
TARGETS = [(0, 0.95), (1_000, 2.00), (10_000, 12.00)]


@pytest.mark.parametrize(("messages_per_day", "target"), TARGETS)
def test_the_default_stack_meets_the_targets(
    counted: Counted,
    express: dict[str, Any],
    labs: dict[str, Any],
    messages_per_day: int,
    target: float,
) -> None:
    """The default stack's bill, with the usage counted on the local cloud (not the model's own
    counts): a branch that does more than the model assumed moves this bill."""
    shape = cost.stack_shape(cost.synthesized_template())
    bill = cost.monthly_cost(
        shape, messages_per_day, cost.DEFAULT_MIX, _usage(counted, express, labs)
    )
    assert bill.total <= target, (messages_per_day, round(bill.total, 2))
    # The new Aurora is priced beside it, not in it.
    assert bill.database and bill.total_with_database > bill.total


def _usage(
    counted: Counted,
    express: dict[str, Any],
    labs: dict[str, Any],
) -> dict[str, cost.BranchUsage]:
    """BranchUsage from counted runs; labs weighs its two runs by the model's share."""

    def lambdas(definition: dict[str, Any], states: list[str]) -> int:
        return sum(definition["States"][s].get("Resource") == cost.LAMBDA_INVOKE for s in states)

    usage = {}
    share = cost.ESTIMATES["labs_needing_model"]
    for branch, runs in counted.items():
        parent, child = runs[0]
        transitions = float(len(child))
        if branch == "labs":
            (_, known), (_, model) = runs
            transitions = (1 - share) * len(known) + share * len(model)
        usage[branch] = cost.BranchUsage(
            express_states=len(parent),
            express_task_states=sum(express["States"][s]["Type"] == "Task" for s in parent),
            lambda_invocations=lambdas(express, parent) + lambdas(labs, child),
            standard_transitions=transitions,
            ml_worker_share=share if branch == "labs" else 0.0,
            express_lambda_invocations=lambdas(express, parent),
        )
    return usage
