"""The Step Functions Local MockConfigFile (tests/data/events/mock_config.json) run by moto.

The same file serves Step Functions Local in Docker (``SFN_MOCK_CONFIG``); here moto_ext feeds it
to moto's interpreter and an execution selects a case with ``stateMachineArn#TestCase``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tasks.localcloud.cloud import LABS_STATE_MACHINE_NAME, STATE_MACHINE_NAME, LocalCloud
from tasks.localcloud.moto_ext import load_mock_config

from .localcloud_fakes import EVENTS, load_event

MOCK_CONFIG = EVENTS / "mock_config.json"

LABS = [
    "ClaimPendingLabs",
    "HasPendingLabs",
    "ResolveKnownNames",
    "NeedsModel",
    "CategorizeLabs",
]
LABS_AGGREGATES = [
    "AggregateLabsDaily",
    "AggregateLabsMonthly",
    "AggregateLabsQuarterly",
    "AggregateLabsYearly",
    "MarkLabsAggregated",
    "MoreLabsPending",
    "LabsDone",
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
    "MoreVitalsPending",
    "VitalsDone",
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
    "MoreNutritionPending",
    "NutritionDone",
]
TO_DLQ = ["SendToDeadLetterQueue", "ProcessingFailed"]
# machine -> test case -> (status, entered states, DLQ error or None)
EXPECTED: dict[str, dict[str, tuple[str, list[str], str | None]]] = {
    STATE_MACHINE_NAME: {
        "HappyVitals": ("SUCCEEDED", VITALS, None),
        "HappyNutrition": ("SUCCEEDED", NUTRITION, None),
        "NothingPending": ("SUCCEEDED", [*VITALS[:4], "NothingToDo"], None),
        "TransientLambdaErrorRetried": ("SUCCEEDED", VITALS, None),
        "StartsTheLabsWorkflow": (
            "SUCCEEDED",
            ["ValidateMessage", "RouteByJobType", "StartLabsWorkflow", "LabsWorkflowStarted"],
            None,
        ),
        "InvalidMessageToDeadLetterQueue": (
            "FAILED",
            ["ValidateMessage", "SendInvalidMessageToDeadLetterQueue", "ProcessingFailed"],
            "InvalidMessage",
        ),
    },
    LABS_STATE_MACHINE_NAME: {
        "HappyLabs": ("SUCCEEDED", LABS + LABS_AGGREGATES, None),
        "AllNamesKnown": ("SUCCEEDED", LABS[:4] + LABS_AGGREGATES, None),
        "NothingPendingLabs": ("SUCCEEDED", [*LABS[:2], "NothingToDo"], None),
        "SpotCapacityFallsBackToOnDemand": (
            "SUCCEEDED",
            [*LABS, "CategorizeLabsOnDemand", *LABS_AGGREGATES],
            None,
        ),
        # A Spot reclaim and a failed container (States.TaskFailed) are not mocked here: moto
        # matches a mocked "States.*" error as a custom name, which no States.TaskFailed catcher
        # takes. test_cloud.py runs both through the in-process ECS runner instead.
        "DomainErrorToDeadLetterQueue": (
            "FAILED",
            [*LABS[:3], "MarkClaimFailed", "BisectFurther", "ReportFailure", *TO_DLQ],
            "CategorizationFailed",
        ),
    },
}
CASES = [(machine, case) for machine, cases in EXPECTED.items() for case in sorted(cases)]


def no_real_steps(step: str, payload: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError(f"step {step} is not mocked")


@pytest.fixture(scope="module")
def mocked_cloud() -> Iterator[LocalCloud]:
    with LocalCloud(run_step=no_real_steps, mock_config=MOCK_CONFIG) as cloud:
        yield cloud


def test_every_case_of_the_file_is_covered() -> None:
    config = load_mock_config(MOCK_CONFIG)
    assert set(config.StateMachines) == set(EXPECTED)
    for machine, cases in EXPECTED.items():
        assert set(config.StateMachines[machine].TestCases) == set(cases)


@pytest.mark.parametrize(("machine", "test_case"), CASES)
def test_mock_case(mocked_cloud: LocalCloud, machine: str, test_case: str) -> None:
    status, expected_states, dlq_error = EXPECTED[machine][test_case]
    labs = machine == LABS_STATE_MACHINE_NAME
    arn = mocked_cloud.start_execution(
        load_event("labs_child_input.json" if labs else "trigger_labs.json"),
        f"mock-{test_case}",
        test_case=test_case,
        state_machine_arn=mocked_cloud.labs_state_machine_arn if labs else None,
    )
    result = mocked_cloud.wait(arn)
    assert result.status == status
    assert mocked_cloud.entered_states(arn) == expected_states
    dead = [d for d in mocked_cloud.dlq_messages() if d.body["execution_arn"] == arn]
    assert [d.body["error"]["Error"] for d in dead] == ([dlq_error] if dlq_error else [])
    if dead and labs:
        # A labs dead letter holds the trigger in the manual-message shape (redrivable).
        assert dead[0].body["message"] == load_event("labs_child_input.json")["trigger"]


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
