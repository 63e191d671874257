"""The mocked test cases of tests/data/events/mock_config.json on AWS Step Functions Local.

tests/workflow/localcloud/test_mock_config.py runs the same file on moto; this module runs it on
the engine AWS ships (amazon/aws-stepfunctions-local), so a divergence between moto's interpreter
and Step Functions shows up as a failure here. It needs the compose stack of
docker/stepfunctions-local (see its README) and is skipped unless HEALTHFLOW_SFN_LOCAL_ENDPOINT
names the Step Functions Local endpoint, e.g. http://localhost:8083.

SendToDeadLetterQueue is not mocked in the file (the DLQ message is what the cases check), so
Step Functions Local sends it to the SQS of the stack. Two addresses of that SQS matter:
HEALTHFLOW_SFN_LOCAL_SQS_ENDPOINT is where this test reads it (default http://localhost:8084),
HEALTHFLOW_SFN_LOCAL_DLQ_URL is the queue URL as the Step Functions Local container sees it
(default http://sqs:5000/123456789012/healthflow-dlq, the compose service name).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import pytest

ENDPOINT = os.environ.get("HEALTHFLOW_SFN_LOCAL_ENDPOINT", "")
if not ENDPOINT:
    pytest.skip(
        "HEALTHFLOW_SFN_LOCAL_ENDPOINT is not set: start docker/stepfunctions-local "
        "(docker compose up) and set it to http://localhost:8083 to run these tests",
        allow_module_level=True,
    )

import boto3  # noqa: E402  (after the skip: nothing below is needed when skipped)

from tasks.localcloud.cloud import (  # noqa: E402
    ACCOUNT_ID,
    DEAD_LETTER_QUEUE_NAME,
    DEFAULT_DEFINITION,
    STATE_MACHINE_NAME,
    definition_substitutions,
)
from tasks.localcloud.moto_ext import fill_placeholders  # noqa: E402
from tests.workflow.localcloud.localcloud_fakes import load_event  # noqa: E402
from tests.workflow.localcloud.test_mock_config import EXPECTED  # noqa: E402

SQS_ENDPOINT = os.environ.get("HEALTHFLOW_SFN_LOCAL_SQS_ENDPOINT", "http://localhost:8084")
DLQ_URL_IN_CONTAINER = os.environ.get(
    "HEALTHFLOW_SFN_LOCAL_DLQ_URL", f"http://sqs:5000/{ACCOUNT_ID}/{DEAD_LETTER_QUEUE_NAME}"
)
REGION = "us-east-1"  # Step Functions Local's default region (AWS_DEFAULT_REGION in compose)
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
# Retry waits are real on Step Functions Local too (1 s with full jitter in the ASL).
EXECUTION_TIMEOUT_SECONDS = 60.0
# Executions of earlier runs stay in a long-lived container: names must not collide.
RUN_ID = uuid.uuid4().hex[:8]


def client(service: str, endpoint_url: str) -> Any:
    # Both emulators accept any key; fixed dummy keys keep real credentials out of the test.
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


class DeadLetters:
    """The DLQ read from the host: every message is taken once and kept by execution ARN, so
    tests can look up their own execution's letter whatever order they run in."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._by_execution: dict[str, list[dict[str, Any]]] = {}

    def _drain(self) -> None:
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return
            for message in messages:
                body = json.loads(message["Body"])
                self._by_execution.setdefault(str(body.get("execution_arn")), []).append(body)
                self._sqs.delete_message(
                    QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def of(self, execution_arn: str) -> list[dict[str, Any]]:
        self._drain()
        return self._by_execution.get(execution_arn, [])


@pytest.fixture(scope="module")
def dead_letters() -> DeadLetters:
    sqs = client("sqs", SQS_ENDPOINT)
    # Letters of earlier runs may still be queued; they name other executions (RUN_ID), so
    # they are read and ignored. No PurgeQueue: SQS allows one a minute, which breaks reruns.
    queue_url = sqs.create_queue(QueueName=DEAD_LETTER_QUEUE_NAME)["QueueUrl"]
    return DeadLetters(sqs, queue_url)


@pytest.fixture(scope="module")
def sfn() -> Any:
    return client("stepfunctions", ENDPOINT)


@pytest.fixture(scope="module")
def state_machine_arn(sfn: Any, dead_letters: DeadLetters) -> str:
    """The real ASL with its placeholders filled as CDK and the local cloud fill them. The DLQ
    fixture comes first: the DLQ cases need the queue before they run."""
    substitutions = definition_substitutions(REGION, DLQ_URL_IN_CONTAINER)
    definition = fill_placeholders(DEFAULT_DEFINITION.read_text(), substitutions)
    role_arn = f"arn:aws:iam::{ACCOUNT_ID}:role/healthflow-state-machine"
    try:
        arn = sfn.create_state_machine(
            name=STATE_MACHINE_NAME, definition=definition, roleArn=role_arn, type="STANDARD"
        )["stateMachineArn"]
    except sfn.exceptions.StateMachineAlreadyExists:
        # A container kept from an earlier run: bring its machine up to the current ASL.
        arn = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{STATE_MACHINE_NAME}"
        sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn)
    return str(arn)


def run_case(sfn: Any, state_machine_arn: str, test_case: str, name: str) -> str:
    """Start ``stateMachineArn#TestCase`` (the Step Functions Local convention), wait for it."""
    execution_arn = str(
        sfn.start_execution(
            stateMachineArn=f"{state_machine_arn}#{test_case}",
            name=f"{name}-{RUN_ID}",
            input=json.dumps(load_event("trigger_labs.json")),
        )["executionArn"]
    )
    deadline = time.monotonic() + EXECUTION_TIMEOUT_SECONDS
    while sfn.describe_execution(executionArn=execution_arn)["status"] not in TERMINAL:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{test_case} still running after {EXECUTION_TIMEOUT_SECONDS} s")
        time.sleep(0.1)
    return execution_arn


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def entered_states(sfn: Any, execution_arn: str) -> list[str]:
    return [
        event["stateEnteredEventDetails"]["name"]
        for event in history(sfn, execution_arn)
        if "stateEnteredEventDetails" in event
    ]


@pytest.mark.parametrize("test_case", sorted(EXPECTED))
def test_mock_case(
    sfn: Any, state_machine_arn: str, dead_letters: DeadLetters, test_case: str
) -> None:
    status, expected_states, dlq_error = EXPECTED[test_case]
    arn = run_case(sfn, state_machine_arn, test_case, f"mock-{test_case}")
    assert sfn.describe_execution(executionArn=arn)["status"] == status
    assert entered_states(sfn, arn) == expected_states
    letters = dead_letters.of(arn)
    assert [letter["error"]["Error"] for letter in letters] == ([dlq_error] if dlq_error else [])


def test_retried_case_shows_the_throttle_in_history(sfn: Any, state_machine_arn: str) -> None:
    arn = run_case(sfn, state_machine_arn, "TransientLambdaErrorRetried", "mock-retry-history")
    failures = [
        event["taskFailedEventDetails"]["error"]
        for event in history(sfn, arn)
        if event["type"] == "TaskFailed"
    ]
    assert failures == ["Lambda.TooManyRequestsException"]
