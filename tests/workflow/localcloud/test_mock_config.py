"""The Step Functions Local MockConfigFile (tests/data/events/mock_config.json) run by moto.

The same file serves Step Functions Local in Docker (``SFN_MOCK_CONFIG``); here moto_ext feeds it
to moto's interpreter and an execution selects a case with ``stateMachineArn#TestCase``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tasks.localcloud.cloud import STATE_MACHINE_NAME, LocalCloud
from tasks.localcloud.moto_ext import load_mock_config

from .localcloud_fakes import EVENTS, load_event

MOCK_CONFIG = EVENTS / "mock_config.json"

LABS = [
    "ValidateMessage",
    "RouteByJobType",
    "ClaimPendingLabs",
    "HasPendingLabs",
    "CategorizeLabs",
]
LABS_AGGREGATES = [
    "AggregateLabsDaily",
    "AggregateLabsMonthly",
    "AggregateLabsQuarterly",
    "AggregateLabsYearly",
    "MarkLabsAggregated",
]
VITALS = [
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
NUTRITION = [
    "ValidateMessage",
    "RouteByJobType",
    "ClaimPendingNutrition",
    "HasPendingNutrition",
    "AggregateNutritionDaily",
    "AggregateNutritionWeekly",
    "AggregateNutritionMonthly",
    "MarkNutritionAggregated",
]
TO_DLQ = ["SendToDeadLetterQueue", "ProcessingFailed"]

# test case -> (status, entered states, DLQ error or None)
EXPECTED: dict[str, tuple[str, list[str], str | None]] = {
    "HappyLabs": ("SUCCEEDED", LABS + LABS_AGGREGATES, None),
    "HappyVitals": ("SUCCEEDED", VITALS, None),
    "HappyNutrition": ("SUCCEEDED", NUTRITION, None),
    "NothingPending": ("SUCCEEDED", [*LABS[:4], "NothingToDo"], None),
    "TransientLambdaErrorRetried": ("SUCCEEDED", VITALS, None),
    "SpotCapacityFallsBackToOnDemand": (
        "SUCCEEDED",
        [*LABS, "CategorizeLabsOnDemand", *LABS_AGGREGATES],
        None,
    ),
    "DomainErrorToDeadLetterQueue": (
        "FAILED",
        [*LABS, "MarkClaimFailed", *TO_DLQ],
        "CategorizationFailed",
    ),
    "InvalidMessageToDeadLetterQueue": ("FAILED", ["ValidateMessage", *TO_DLQ], "InvalidMessage"),
}


def no_real_steps(step: str, payload: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError(f"step {step} is not mocked")


@pytest.fixture(scope="module")
def mocked_cloud() -> Iterator[LocalCloud]:
    with LocalCloud(run_step=no_real_steps, mock_config=MOCK_CONFIG) as cloud:
        yield cloud


def test_every_case_of_the_file_is_covered() -> None:
    config = load_mock_config(MOCK_CONFIG)
    assert set(config.StateMachines[STATE_MACHINE_NAME].TestCases) == set(EXPECTED)


@pytest.mark.parametrize("test_case", sorted(EXPECTED))
def test_mock_case(mocked_cloud: LocalCloud, test_case: str) -> None:
    status, expected_states, dlq_error = EXPECTED[test_case]
    arn = mocked_cloud.start_execution(
        load_event("trigger_labs.json"), f"mock-{test_case}", test_case=test_case
    )
    result = mocked_cloud.wait(arn)
    assert result.status == status
    assert mocked_cloud.entered_states(arn) == expected_states
    dead = [d for d in mocked_cloud.dlq_messages() if d.body["execution_arn"] == arn]
    assert [d.body["error"]["Error"] for d in dead] == ([dlq_error] if dlq_error else [])


def test_retried_case_shows_the_throttle_in_history(mocked_cloud: LocalCloud) -> None:
    arn = mocked_cloud.start_execution(
        load_event("trigger_labs.json"),
        "mock-retry-history",
        test_case="TransientLambdaErrorRetried",
    )
    mocked_cloud.wait(arn)
    failures = [
        e["taskFailedEventDetails"]["error"]
        for e in mocked_cloud.history(arn)
        if e["type"] == "TaskFailed"
    ]
    assert failures == ["Lambda.TooManyRequestsException"]


def test_unknown_test_case_is_rejected(mocked_cloud: LocalCloud) -> None:
    with pytest.raises(Exception, match="NoSuchCase"):
        mocked_cloud.start_execution({}, "mock-unknown", test_case="NoSuchCase")


def test_mock_config_is_valid_json_for_step_functions_local() -> None:
    raw = json.loads(MOCK_CONFIG.read_text())
    for responses in raw["MockedResponses"].values():
        for response in responses.values():
            assert set(response) in ({"Return"}, {"Throw"})
