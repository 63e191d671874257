"""The real state machine (statemachines/healthflow.asl.json) in the local cloud, fake steps."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tasks.errors import DatabaseUnavailable
from tasks.localcloud.cloud import (
    DEFAULT_DEFINITION,
    LocalCloud,
    execution_name_for,
)
from tasks.localcloud.moto_ext import placeholders_in

from .localcloud_fakes import FakeSteps, load_event

CONTRACT_PLACEHOLDERS = {
    "StepsFunctionArn",
    "ClusterArn",
    "MlWorkerTaskDefinitionArn",
    "MlWorkerContainerName",
    "PrivateSubnet1",
    "PrivateSubnet2",
    "MlWorkerSecurityGroupId",
    "DeadLetterQueueUrl",
}
TRANSIENT_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "DatabaseUnavailable",
    "ECS.AmazonECSException",
    "SQS.SdkClientException",
    "SQS.AmazonSQSException",
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
    "ClaimPendingLabs",
    "HasPendingLabs",
    "CategorizeLabs",
    "AggregateLabsDaily",
    "AggregateLabsMonthly",
    "AggregateLabsQuarterly",
    "AggregateLabsYearly",
    "MarkLabsAggregated",
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
]
DLQ_KEYS = {"message", "error", "execution_arn", "failed_at"}


def message(job_type: str, user_id: int = 1) -> dict[str, Any]:
    return {"job_type": job_type, "user_id": user_id, "priority": "normal"}


# --------------------------------------------------------------------------- the definition


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return json.loads(DEFAULT_DEFINITION.read_text())


def tasks_of(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in definition["States"].items() if s["Type"] == "Task"}


def test_definition_is_jsonpath_with_contract_placeholders(definition: dict[str, Any]) -> None:
    text = DEFAULT_DEFINITION.read_text()
    assert definition.get("QueryLanguage", "JSONPath") == "JSONPath"
    assert all("QueryLanguage" not in state for state in definition["States"].values())
    assert placeholders_in(text) == CONTRACT_PLACEHOLDERS
    assert "${SubnetIds}" not in text


def test_every_task_has_a_timeout_and_retries_transient_errors_only(
    definition: dict[str, Any],
) -> None:
    for name, state in tasks_of(definition).items():
        assert state.get("TimeoutSeconds"), name
        for retrier in state.get("Retry", []):
            assert set(retrier["ErrorEquals"]) <= TRANSIENT_ERRORS, name
            assert retrier["JitterStrategy"] == "FULL", name
            assert retrier["BackoffRate"] >= 1 and retrier["MaxAttempts"] >= 1, name
            assert retrier["IntervalSeconds"] <= 2, name


def test_ecs_states_run_on_spot_then_on_demand(definition: dict[str, Any]) -> None:
    spot, on_demand = (
        definition["States"][n] for n in ("CategorizeLabs", "CategorizeLabsOnDemand")
    )
    for state, provider in ((spot, "FARGATE_SPOT"), (on_demand, "FARGATE")):
        parameters = state["Parameters"]
        assert "LaunchType" not in parameters
        assert parameters["CapacityProviderStrategy"][0]["CapacityProvider"] == provider
        assert state["HeartbeatSeconds"] < state["TimeoutSeconds"]
        environment = parameters["Overrides"]["ContainerOverrides"][0]["Environment"]
        assert [e["Name"] for e in environment] == [
            "HEALTHFLOW_STEP",
            "HEALTHFLOW_STEP_INPUT",
            "HEALTHFLOW_TASK_TOKEN",
        ]
    spot_catch = spot["Catch"][0]
    assert {"SpotCapacityUnavailable", "SpotInterrupted"} <= set(spot_catch["ErrorEquals"])
    assert spot_catch["Next"] == "CategorizeLabsOnDemand"


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
    assert result.status == "SUCCEEDED", result
    assert result.name == execution_name_for(message_id)
    entered = cloud.entered_states(result.execution_arn)
    assert entered == expected_states
    assert len(entered) <= 12
    # Every step works on this execution's claim, named after the execution.
    for claim_input in fake_steps.inputs_of("claim"):
        assert claim_input["claim_id"] == result.name
    assert set(result.output) <= {
        "message",
        "claim",
        "categorized",
        "aggregated",
        "marked",
    }


def test_nothing_pending_succeeds_in_five_transitions(
    cloud: LocalCloud, fake_steps: FakeSteps
) -> None:
    fake_steps.pending_users = set()
    cloud.send_message(message("process_pending_labs"))
    (result,) = cloud.drain()
    assert result.status == "SUCCEEDED"
    entered = cloud.entered_states(result.execution_arn)
    assert entered[-1] == "NothingToDo"
    assert len(entered) <= 5
    assert not fake_steps.inputs_of("categorize_labs")


def test_ecs_step_gets_exactly_its_contract_input(cloud: LocalCloud, fake_steps: FakeSteps) -> None:
    cloud.send_message(message("process_pending_labs", user_id=8))
    (result,) = cloud.drain()
    assert fake_steps.inputs_of("categorize_labs") == [{"claim_id": result.name, "user_id": 8}]
    assert result.output["categorized"] == {
        "categorized": 2,
        "uncategorized": 1,
        "rejected": 0,
        "duplicates": 0,
    }


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
        "SendToDeadLetterQueue",
        "ProcessingFailed",
    ]
    assert not fake_steps.inputs_of("claim")
    (dead,) = cloud.dlq_messages()
    assert set(dead.body) == DLQ_KEYS
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
    assert cloud.entered_states(result.execution_arn)[-3:] == [
        "MarkClaimFailed",
        "SendToDeadLetterQueue",
        "ProcessingFailed",
    ]
    assert fake_steps.inputs_of("mark_claim_failed") == [
        {"claim_id": result.name, "domain": "nutrition", "error": "AggregationFailed"}
    ]
    (dead,) = cloud.dlq_messages()
    assert dead.body["error"]["Error"] == "AggregationFailed"
    assert set(dead.body) == DLQ_KEYS


def test_database_unavailable_is_retried(cloud: LocalCloud, fake_steps: FakeSteps) -> None:
    fake_steps.fail_next("claim", DatabaseUnavailable("connection refused"))
    cloud.send_message(message("process_pending_nutrition"))
    (result,) = cloud.drain()
    assert result.status == "SUCCEEDED"
    assert len(fake_steps.inputs_of("claim")) == 2
    assert cloud.dlq_messages() == []


def test_spot_capacity_failure_falls_back_to_on_demand(fake_steps: FakeSteps) -> None:
    launches: list[str | None] = []

    def spot_is_full(launch: Any) -> str | None:
        launches.append(launch.capacity_provider)
        return "SpotCapacityUnavailable" if launch.capacity_provider == "FARGATE_SPOT" else None

    with LocalCloud(run_step=fake_steps, spot_capacity=spot_is_full) as cloud:
        cloud.send_message(message("process_pending_labs"))
        (result,) = cloud.drain()
        entered = cloud.entered_states(result.execution_arn)
    assert result.status == "SUCCEEDED"
    assert launches == ["FARGATE_SPOT", "FARGATE"]
    assert entered[4:6] == ["CategorizeLabs", "CategorizeLabsOnDemand"]
    assert len(entered) == 11


def test_spot_interruption_reported_by_the_container_falls_back(
    cloud: LocalCloud, fake_steps: FakeSteps
) -> None:
    class SpotInterrupted(Exception):
        pass

    fake_steps.fail_next("categorize_labs", SpotInterrupted())
    cloud.send_message(message("process_pending_labs"))
    (result,) = cloud.drain()
    assert result.status == "SUCCEEDED"
    assert "CategorizeLabsOnDemand" in cloud.entered_states(result.execution_arn)
    assert len(fake_steps.inputs_of("categorize_labs")) == 2


def test_history_holds_no_message_body_beyond_ids(cloud: LocalCloud) -> None:
    cloud.send_message(message("process_pending_labs"))
    (result,) = cloud.drain()
    state_outputs = [
        json.loads(event["stateExitedEventDetails"]["output"])
        for event in cloud.history(result.execution_arn)
        if "stateExitedEventDetails" in event
    ]
    # After validation the pipe record (receipt handle, raw body) is gone from state data.
    assert all("records" not in json.dumps(output) for output in state_outputs)
    assert all("receiptHandle" not in json.dumps(output) for output in state_outputs)
