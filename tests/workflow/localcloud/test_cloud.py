"""The real state machines (statemachines/healthflow.asl.json, the Express parent, and
statemachines/labs.asl.json, the Standard labs child) in the local cloud, with fake steps."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tasks.errors import DatabaseUnavailable
from tasks.localcloud.cloud import (
    DEFAULT_DEFINITION,
    DEFAULT_LABS_DEFINITION,
    LocalCloud,
    execution_name_for,
)
from tasks.localcloud.moto_ext import SPOT_INTERRUPTION, placeholders_in
from tasks.statemachines import PLACEHOLDERS
from tasks.workflow import original_message

from .localcloud_fakes import FakeSteps, load_event

TRANSIENT_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "DatabaseUnavailable",
    "DatabaseTimeout",
    "DatabaseResourceExhausted",
    "DatabaseConflict",
    "ECS.AmazonECSException",
    "ECS.ThrottlingException",
    "AmazonECS.Unknown",
    "SQS.SdkClientException",
    "SQS.AmazonSQSException",
    "StepFunctions.SdkClientException",
    "StepFunctions.AWSStepFunctionsException",
    "StepFunctions.ThrottlingException",
    "StepFunctions.ExecutionLimitExceededException",
}
PIPE_RECORD_KEYS = {
    "messageId",
    "receiptHandle",
    "body",
    "attributes",
    "messageAttributes",
    "md5OfBody",
    "eventSource",
    "eventSourceARN",
    "awsRegion",
}
LABS_HAPPY = [
    "ValidateMessage",
    "RouteByJobType",
    "StartLabsWorkflow",
    "LabsWorkflowStarted",
    # the Standard child
    "ClaimPendingLabs",
    "HasPendingLabs",
    "ResolveKnownNames",
    "NeedsModel",
    "CategorizeLabs",
    "AggregateLabsDaily",
    "AggregateLabsMonthly",
    "AggregateLabsQuarterly",
    "AggregateLabsYearly",
    "MarkLabsAggregated",
    "MoreLabsPending",
    "LabsDone",
]
VITALS_HAPPY = [
    "ValidateMessage",
    "RouteByJobType",
    "ClaimPendingVitals",
    "HasPendingVitals",
    "CopyVitalsToCategorized",
    "AggregateVitalsHourly",
    "AggregateVitalsDaily",
    "AggregateVitalsWeekly",
    "AggregateVitalsMonthly",
    "MarkVitalsAggregated",
    "MoreVitalsPending",
    "VitalsDone",
]
NUTRITION_HAPPY = [
    "ValidateMessage",
    "RouteByJobType",
    "ClaimPendingNutrition",
    "HasPendingNutrition",
    "AggregateNutritionDaily",
    "AggregateNutritionWeekly",
    "AggregateNutritionMonthly",
    "MarkNutritionAggregated",
    "MoreNutritionPending",
    "NutritionDone",
]
DLQ_KEYS = {"message", "error", "execution_arn", "failed_at"}
LAST_RESORTS = {"SendToDeadLetterQueue", "SendInvalidMessageToDeadLetterQueue"}


def message(job_type: str, user_id: int = 1) -> dict[str, Any]:
    return {"job_type": job_type, "user_id": user_id, "priority": "normal"}


# --------------------------------------------------------------------------- the definition


@pytest.fixture(scope="module", params=["express", "labs"])
def definition(request: pytest.FixtureRequest) -> dict[str, Any]:
    path = DEFAULT_DEFINITION if request.param == "express" else DEFAULT_LABS_DEFINITION
    return dict(json.loads(path.read_text()))


@pytest.fixture(scope="module")
def labs_definition() -> dict[str, Any]:
    return dict(json.loads(DEFAULT_LABS_DEFINITION.read_text()))


def tasks_of(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in definition["States"].items() if s["Type"] == "Task"}


def test_definitions_are_jsonpath_with_the_one_placeholder_list() -> None:
    used: set[str] = set()
    for path in (DEFAULT_DEFINITION, DEFAULT_LABS_DEFINITION):
        definition = json.loads(path.read_text())
        assert definition.get("QueryLanguage", "JSONPath") == "JSONPath"
        assert all("QueryLanguage" not in state for state in definition["States"].values())
        used |= placeholders_in(path.read_text())
    assert used == set(PLACEHOLDERS)


def test_every_task_has_a_timeout_and_retries_transient_errors_only(
    definition: dict[str, Any],
) -> None:
    for name, state in tasks_of(definition).items():
        assert state.get("TimeoutSeconds"), name
        for retrier in state.get("Retry", []):
            assert set(retrier["ErrorEquals"]) <= TRANSIENT_ERRORS, name
            assert retrier["JitterStrategy"] == "FULL", name
            assert retrier["BackoffRate"] >= 1 and retrier["MaxAttempts"] >= 1, name
            assert retrier["IntervalSeconds"] <= 5, name
        # Every Task catches to a named failure state, except the last resorts themselves.
        assert state.get("Catch") or name in LAST_RESORTS, name


def test_express_parent_fits_its_five_minutes() -> None:
    definition = json.loads(DEFAULT_DEFINITION.read_text())
    assert definition["TimeoutSeconds"] <= 300
    for name, state in tasks_of(definition).items():
        assert state["TimeoutSeconds"] <= 120, name
        assert not state["Resource"].endswith((".sync", ".waitForTaskToken")), name


def test_ecs_states_run_sync_on_spot_then_on_demand(labs_definition: dict[str, Any]) -> None:
    states = labs_definition["States"]
    spot, on_demand = (states[n] for n in ("CategorizeLabs", "CategorizeLabsOnDemand"))
    for state, provider in ((spot, "FARGATE_SPOT"), (on_demand, "FARGATE")):
        parameters = state["Parameters"]
        assert state["Resource"] == "arn:aws:states:::ecs:runTask.sync"
        assert "LaunchType" not in parameters and "HeartbeatSeconds" not in state
        assert parameters["CapacityProviderStrategy"][0]["CapacityProvider"] == provider
        environment = parameters["Overrides"]["ContainerOverrides"][0]["Environment"]
        assert [e["Name"] for e in environment] == [
            "HEALTHFLOW_STEP", "HEALTHFLOW_STEP_INPUT", "HEALTHFLOW_EXECUTION", "HEALTHFLOW_STATE"
        ]  # fmt: skip
    to_on_demand = {
        error for catch in spot["Catch"] if catch["Next"] == "CategorizeLabsOnDemand"
        for error in catch["ErrorEquals"]
    }  # fmt: skip
    assert to_on_demand == {"ECS.AmazonECSException", "AmazonECS.Unknown"}


# --------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize(
    ("job_type", "expected_states"),
    [
        ("process_pending_labs", LABS_HAPPY),
        ("process_pending_vitals", VITALS_HAPPY),
        ("process_pending_nutrition", NUTRITION_HAPPY),
    ],
)
def test_happy_path_per_branch(
    cloud: LocalCloud, fake_steps: FakeSteps, job_type: str, expected_states: list[str]
) -> None:
    message_id = cloud.send_message(message(job_type, user_id=5))
    (result,) = cloud.drain()
    assert result.succeeded, result
    assert result.name == execution_name_for(message_id)
    entered = [state for arn in result.execution_arns for state in cloud.entered_states(arn)]
    assert entered == expected_states
    # Every step works on this execution's claim, named after the execution (the labs child
    # carries its parent's name).
    for claim_input in fake_steps.inputs_of("claim"):
        assert claim_input["claim_id"] == result.name
    final = result.child or result
    assert final.name == result.name
    assert set(final.output) <= {
        "message",
        "trigger",
        "parent_execution_arn",
        "claim",
        "resolved",
        "categorized",
        "aggregated",
        "marked",
    }


def test_nothing_pending_succeeds_in_five_transitions(
    cloud: LocalCloud, fake_steps: FakeSteps
) -> None:
    fake_steps.pending_users = set()
    cloud.send_message(message("process_pending_vitals"))
    (result,) = cloud.drain()
    assert result.succeeded
    entered = cloud.entered_states(result.execution_arn)
    assert entered[-1] == "NothingToDo"
    assert len(entered) <= 5
    cloud.send_message(message("process_pending_labs"))
    (labs,) = cloud.drain()
    assert labs.child is not None
    assert cloud.entered_states(labs.child.execution_arn) == [
        "ClaimPendingLabs",
        "HasPendingLabs",
        "NothingToDo",
    ]
    assert not fake_steps.inputs_of("categorize_labs")


def test_ecs_step_gets_exactly_its_contract_input(cloud: LocalCloud, fake_steps: FakeSteps) -> None:
    cloud.send_message(message("process_pending_labs", user_id=8))
    (result,) = cloud.drain()
    assert fake_steps.inputs_of("resolve_known_labs") == [{"claim_id": result.name, "user_id": 8}]
    assert fake_steps.inputs_of("categorize_labs") == [{"claim_id": result.name, "user_id": 8}]
    assert result.child is not None
    assert result.child.output["resolved"] == {
        "resolved": 2,
        "needs_model": 1,
        "rejected": 0,
        "duplicates": 0,
    }


def test_ml_worker_is_skipped_when_the_catalog_knows_every_name(
    cloud: LocalCloud, fake_steps: FakeSteps
) -> None:
    fake_steps.names_needing_model = 0
    cloud.send_message(message("process_pending_labs", user_id=8))
    (result,) = cloud.drain()
    assert result.succeeded and result.child is not None
    states = cloud.entered_states(result.child.execution_arn)
    assert "CategorizeLabs" not in states and states[-3:] == [
        "MarkLabsAggregated",
        "MoreLabsPending",
        "LabsDone",
    ]
    assert not fake_steps.inputs_of("categorize_labs")


def test_a_repeated_start_does_not_run_the_labs_twice(
    cloud: LocalCloud, fake_steps: FakeSteps
) -> None:
    import boto3

    # The labs execution of "dup" already exists: a first StartLabsWorkflow got through but its
    # answer was lost, or an Express duplicate of the same execution ran first.
    validated = fake_steps.validate_message(message("process_pending_labs", 3))
    sfn = boto3.client("stepfunctions", region_name=cloud.region)
    earlier = sfn.start_execution(
        stateMachineArn=cloud.labs_state_machine_arn,
        name="dup",
        input=json.dumps({"message": validated, "trigger": message("process_pending_labs", 3)}),
    )["executionArn"]
    assert cloud.wait(earlier).succeeded
    result = cloud.wait(cloud.start_execution(message("process_pending_labs", 3), "dup"))
    assert result.succeeded
    assert cloud.entered_states(result.execution_arn)[-2:] == [
        "StartLabsWorkflow",
        "LabsWorkflowStarted",
    ]
    assert len(fake_steps.inputs_of("claim")) == 1  # the labs ran once


# --------------------------------------------------------------------------- the pipe


def test_pipe_sends_one_record_shaped_like_eventbridge(
    cloud: LocalCloud, fake_steps: FakeSteps
) -> None:
    message_id = cloud.send_message(message("process_pending_nutrition"))
    cloud.drain()
    (validate_input,) = fake_steps.inputs_of("validate_message")
    (record,) = validate_input["records"]
    assert set(record) == PIPE_RECORD_KEYS
    assert set(record) == set(load_event("pipe_sqs_batch_vitals.json")[0])
    assert record["messageId"] == message_id
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == cloud.queue_arn
    assert json.loads(record["body"]) == message("process_pending_nutrition")


def test_drain_starts_one_execution_per_message_and_empties_the_queue(cloud: LocalCloud) -> None:
    for user_id in (1, 2, 3):
        cloud.send_message(message("process_pending_vitals", user_id))
    first = cloud.drain(max_messages=1)
    rest = cloud.drain()
    assert len(first) == 1 and len(rest) == 2
    names = {r.name for r in first + rest}
    assert len(names) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,80}", name) for name in names)
    assert cloud.drain() == []


def test_manual_start_execution_accepts_the_message_object(
    cloud: LocalCloud, fake_steps: FakeSteps
) -> None:
    manual = load_event("manual_reprocess_labs.json")
    arn = cloud.start_execution(manual, "reprocess-42-labs")
    result = cloud.wait(arn)
    assert result.status == "SUCCEEDED"
    assert fake_steps.inputs_of("validate_message") == [manual]
    (claim_input,) = fake_steps.inputs_of("claim")
    assert claim_input["reprocess"] == manual["reprocess"]
    assert cloud.history(arn)[0]["type"] == "ExecutionStarted"


# --------------------------------------------------------------------------- failures


def test_invalid_message_goes_to_the_dlq_without_a_claim(
    cloud: LocalCloud, fake_steps: FakeSteps
) -> None:
    cloud.send_message(load_event("trigger_invalid_extra_field.json"))
    (result,) = cloud.drain()
    assert result.status == "FAILED" and result.error == "ProcessingFailed"
    assert cloud.entered_states(result.execution_arn) == [
        "ValidateMessage",
        "SendInvalidMessageToDeadLetterQueue",
        "ProcessingFailed",
    ]
    assert not fake_steps.inputs_of("claim")
    (dead,) = cloud.dlq_messages()
    # Nothing of an invalid body is kept (it may hold anything): only the error and where.
    assert set(dead.body) == DLQ_KEYS - {"message"}
    assert dead.body["error"]["Error"] == "InvalidMessage"
    assert dead.body["execution_arn"] == result.execution_arn


def test_domain_error_after_claim_marks_the_claim_failed(
    cloud: LocalCloud, fake_steps: FakeSteps
) -> None:
    class AggregationFailed(Exception):
        pass

    fake_steps.fail_next("aggregate", AggregationFailed("bucket b1"))
    cloud.send_message(message("process_pending_nutrition"))
    (result,) = cloud.drain()
    assert result.status == "FAILED"
    assert cloud.entered_states(result.execution_arn)[-4:] == [
        "MarkClaimFailed",
        "BisectFurther",  # not a half of a bisection: the trigger is not re-sent
        "SendToDeadLetterQueue",
        "ProcessingFailed",
    ]
    assert fake_steps.inputs_of("mark_claim_failed") == [
        {"claim_id": result.name, "domain": "nutrition", "error": "AggregationFailed"}
    ]
    (dead,) = cloud.dlq_messages()
    assert dead.body["error"]["Error"] == "AggregationFailed"
    assert set(dead.body) == DLQ_KEYS
    # The validated trigger fields only, as a redrive re-sends them: never the raw body.
    assert dead.body["message"] == {
        "job_type": "process_pending_nutrition", "user_id": 1, "priority": "normal",
        "reprocess": None,
    }  # fmt: skip


def test_database_unavailable_is_retried(cloud: LocalCloud, fake_steps: FakeSteps) -> None:
    fake_steps.fail_next("claim", DatabaseUnavailable("connection refused"))
    cloud.send_message(message("process_pending_nutrition"))
    (result,) = cloud.drain()
    assert result.status == "SUCCEEDED"
    assert len(fake_steps.inputs_of("claim")) == 2
    assert cloud.dlq_messages() == []


@pytest.mark.parametrize("error", ["ECS.AmazonECSException", "AmazonECS.Unknown"])
def test_spot_capacity_failure_falls_back_to_on_demand(fake_steps: FakeSteps, error: str) -> None:
    launches: list[str | None] = []

    def spot_is_full(launch: Any) -> str | None:
        launches.append(launch.capacity_provider)
        return error if launch.capacity_provider == "FARGATE_SPOT" else None

    with LocalCloud(run_step=fake_steps, spot_capacity=spot_is_full) as cloud:
        cloud.send_message(message("process_pending_labs"))
        (result,) = cloud.drain()
        assert result.child is not None
        entered = cloud.entered_states(result.child.execution_arn)
    assert result.succeeded
    assert launches == ["FARGATE_SPOT", "FARGATE"]
    assert entered[4:6] == ["CategorizeLabs", "CategorizeLabsOnDemand"]
    assert len(fake_steps.inputs_of("categorize_labs")) == 1


def test_spot_reclaim_of_a_running_task_falls_back_to_on_demand(fake_steps: FakeSteps) -> None:
    def reclaim_spot(launch: Any) -> str | None:
        return SPOT_INTERRUPTION if launch.capacity_provider == "FARGATE_SPOT" else None

    with LocalCloud(run_step=fake_steps, spot_capacity=reclaim_spot) as cloud:
        cloud.send_message(message("process_pending_labs"))
        (result,) = cloud.drain()
        assert result.child is not None
        entered = cloud.entered_states(result.child.execution_arn)
    assert result.succeeded
    assert entered[4:7] == ["CategorizeLabs", "WasSpotReclaimed", "CategorizeLabsOnDemand"]


def test_a_failed_container_is_not_retried_on_demand(
    cloud: LocalCloud, fake_steps: FakeSteps
) -> None:
    class CategorizationFailed(Exception):
        pass

    fake_steps.fail_next("categorize_labs", CategorizationFailed())
    cloud.send_message(message("process_pending_labs", 4))
    (result,) = cloud.drain()
    assert result.status == "SUCCEEDED"  # the parent's part succeeded
    assert result.child is not None and not result.succeeded
    assert cloud.entered_states(result.child.execution_arn)[-7:] == [
        "CategorizeLabs",
        "WasSpotReclaimed",
        "MarkClaimFailed",
        "BisectFurther",
        "ReportFailure",
        "SendToDeadLetterQueue",
        "ProcessingFailed",
    ]
    assert len(fake_steps.inputs_of("categorize_labs")) == 1
    (dead,) = cloud.dlq_messages()
    assert set(dead.body) == DLQ_KEYS
    assert dead.body["error"]["Error"] == "States.TaskFailed"
    # The stopped task's description is the reason: ids and codes, nothing else.
    assert "EssentialContainerExited" in dead.body["error"]["Cause"]
    # A labs dead letter carries the trigger in the manual-message shape, so it redrives.
    assert original_message(dead.body) == {
        "job_type": "process_pending_labs",
        "user_id": 4,
        "priority": "normal",
        "reprocess": None,
    }


def test_history_holds_no_message_body_beyond_ids(cloud: LocalCloud) -> None:
    cloud.send_message(message("process_pending_labs"))
    (result,) = cloud.drain()
    state_outputs = [
        json.loads(event["stateExitedEventDetails"]["output"])
        for arn in result.execution_arns
        for event in cloud.history(arn)
        if "stateExitedEventDetails" in event
    ]
    assert len(result.execution_arns) == 2
    # After validation the pipe record (receipt handle, raw body) is gone from state data.
    assert all("records" not in json.dumps(output) for output in state_outputs)
    assert all("receiptHandle" not in json.dumps(output) for output in state_outputs)
