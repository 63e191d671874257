"""The mocked test cases of tests/data/events/mock_config.json on AWS Step Functions Local.

tests/workflow/localcloud/test_mock_config.py runs the same file on moto; this module runs it on
the engine AWS ships (amazon/aws-stepfunctions-local), so a divergence between moto's interpreter
and Step Functions shows up as a failure here. Both machines are created as the stack creates
them: the parent `healthflow` as EXPRESS, the labs child `healthflow-labs` as STANDARD, its ECS
tasks (CategorizeLabs, CategorizeLabsOnDemand) answered by the mock file.

The cases that need Step Functions Local run only with the compose stack of
docker/stepfunctions-local (see its README), when HEALTHFLOW_SFN_LOCAL_ENDPOINT names it, e.g.
http://localhost:8083. The checks that the cases are well formed (every mocked state exists in
the ASL and is a Task, every mocked response has the shape of its state's integration, every
case the module runs is in the mock file and the other way round) need no Docker and always run,
so the module cannot fall behind the ASL unseen again.

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
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from tasks.localcloud.cloud import (
    ACCOUNT_ID,
    DEAD_LETTER_QUEUE_NAME,
    LABS_STATE_MACHINE_NAME,
    STATE_MACHINE_NAME,
    definition_substitutions,
)
from tasks.localcloud.moto_ext import fill_placeholders, load_mock_config
from tasks.statemachines import EXPRESS_ASL, LABS_ASL, task_resources
from tests.workflow.localcloud.localcloud_fakes import EVENTS, load_event
from tests.workflow.localcloud.test_mock_config import EXPECTED, MOCK_CONFIG

ENDPOINT = os.environ.get("HEALTHFLOW_SFN_LOCAL_ENDPOINT", "")
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


@dataclass(frozen=True)
class Machine:
    asl: Path
    type: str
    input_event: str  # the execution input every case of the machine starts with


#: The machines this module creates, as the stack creates them; the child first (the parent's
#: definition names its ARN).
MACHINES = {
    LABS_STATE_MACHINE_NAME: Machine(LABS_ASL, "STANDARD", "labs_child_input.json"),
    STATE_MACHINE_NAME: Machine(EXPRESS_ASL, "EXPRESS", "trigger_labs.json"),
}
CASES = [(machine, case) for machine, cases in EXPECTED.items() for case in sorted(cases)]

# ------------------------------------------------------------------- well formed (no Docker)

#: What each integration returns, as (botocore service, operation, shape of a Return). A `.sync`
#: ECS task returns the stopped task's description; request-response integrations return the
#: API's output.
_INTEGRATION_OUTPUT = {
    "lambda:invoke": ("lambda", "Invoke", None),
    "ecs:runTask.sync": ("ecs", "DescribeTasks", "Task"),
    "ecs:runTask": ("ecs", "RunTask", None),
    "states:startExecution": ("stepfunctions", "StartExecution", None),
    "sqs:sendMessage": ("sqs", "SendMessage", None),
}


def _asl(machine: str) -> dict[str, Any]:
    return json.loads(MACHINES[machine].asl.read_text())


@cache
def _output_members(action: str) -> frozenset[str]:
    service, operation, shape_name = _INTEGRATION_OUTPUT[action]
    model = botocore.session.get_session().get_service_model(service)
    shape = (
        model.shape_for(shape_name) if shape_name else model.operation_model(operation).output_shape
    )
    # Step Functions hands integration results over in PascalCase whatever the API's casing.
    return frozenset(name[0].upper() + name[1:] for name in shape.members)


def well_formedness_problems() -> list[str]:
    """Everything that makes the module's cases disagree with the ASL or the mock file."""
    config = load_mock_config(MOCK_CONFIG)
    raw = json.loads(MOCK_CONFIG.read_text())
    problems = []
    if set(EXPECTED) != set(MACHINES) or set(config.StateMachines) != set(MACHINES):
        problems.append(f"machines: module {sorted(MACHINES)}, file {sorted(config.StateMachines)}")
    for machine, spec in MACHINES.items():
        if not (EVENTS / spec.input_event).is_file():
            problems.append(f"{machine}: input event {spec.input_event} is missing")
        definition = _asl(machine)
        states = definition["States"]
        tasks = {task.state: task.service_action for task in task_resources(definition)}
        in_config = config.StateMachines.get(machine)
        in_file = set(in_config.TestCases) if in_config else set()
        in_module = set(EXPECTED.get(machine, {}))
        for case in sorted(in_file ^ in_module):
            where = "the module" if case in in_file else "the mock file"
            problems.append(f"{machine}#{case} is not in {where}")
        for case in sorted(in_file):
            mocked = config.StateMachines[machine].TestCases[case].root
            for state, response in mocked.items():
                if state not in states:
                    problems.append(f"{machine}#{case}: no state {state} in {spec.asl.name}")
                elif state not in tasks:
                    problems.append(f"{machine}#{case}: {state} is not a Task")
                elif response not in raw["MockedResponses"]:
                    problems.append(f"{machine}#{case}: no mocked response {response}")
                else:
                    problems += _response_problems(
                        f"{machine}#{case}.{state}", tasks[state], raw["MockedResponses"][response]
                    )
        for case, (_, entered, _) in EXPECTED.get(machine, {}).items():
            problems += [
                f"{machine}#{case}: expects unknown state {s}" for s in entered if s not in states
            ]
    return problems


def _response_problems(where: str, action: str, attempts: dict[str, Any]) -> list[str]:
    if action not in _INTEGRATION_OUTPUT:
        return [f"{where}: no known output for {action}"]
    members = _output_members(action)
    problems = []
    for attempt, response in attempts.items():
        returned = response.get("Return")
        if returned is None:
            continue  # a Throw fits any integration
        unknown = set(returned) - members
        if unknown:
            problems.append(f"{where} attempt {attempt}: {sorted(unknown)} not in {action} output")
        if action == "lambda:invoke" and "Payload" not in returned:
            problems.append(f"{where} attempt {attempt}: a Lambda result needs a Payload")
        if action == "ecs:runTask.sync" and returned.get("LastStatus") != "STOPPED":
            problems.append(f"{where} attempt {attempt}: a .sync task returns once STOPPED")
    return problems


def test_the_cases_are_well_formed() -> None:
    assert well_formedness_problems() == []


def test_the_check_sees_a_case_that_fell_behind_the_asl(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the old module did: cases for one machine only, a state renamed since."""
    stale = {STATE_MACHINE_NAME: {**EXPECTED[STATE_MACHINE_NAME]}}
    stale[STATE_MACHINE_NAME]["HappyVitals"] = ("SUCCEEDED", ["ValidateMessage", "Aggregate"], None)
    monkeypatch.setitem(globals(), "EXPECTED", stale)
    problems = well_formedness_problems()
    assert any(p.startswith("machines:") for p in problems)
    assert f"{LABS_STATE_MACHINE_NAME}#HappyLabs is not in the module" in problems
    assert f"{STATE_MACHINE_NAME}#HappyVitals: expects unknown state Aggregate" in problems


def test_the_check_sees_a_response_of_the_wrong_integration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lambda_result = {"0": {"Return": {"StatusCode": 200, "Payload": {}}}}
    task_stopped = {"0": {"Return": {"TaskArn": "arn", "LastStatus": "STOPPED"}}}
    assert _response_problems("x", "lambda:invoke", lambda_result) == []
    assert _response_problems("x", "ecs:runTask.sync", task_stopped) == []
    assert _response_problems("x", "ecs:runTask.sync", lambda_result)
    assert _response_problems("x", "states:startExecution", task_stopped)


# ------------------------------------------------------------------- on Step Functions Local


def client(service: str, endpoint_url: str) -> Any:
    import boto3

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
def endpoint() -> str:
    if not ENDPOINT:
        pytest.skip(
            "HEALTHFLOW_SFN_LOCAL_ENDPOINT is not set: start docker/stepfunctions-local "
            "(docker compose up) and set it to http://localhost:8083 to run these tests"
        )
    return ENDPOINT


@pytest.fixture(scope="module")
def dead_letters(endpoint: str) -> DeadLetters:
    sqs = client("sqs", SQS_ENDPOINT)
    # Letters of earlier runs may still be queued; they name other executions (RUN_ID), so
    # they are read and ignored. No PurgeQueue: SQS allows one a minute, which breaks reruns.
    queue_url = sqs.create_queue(QueueName=DEAD_LETTER_QUEUE_NAME)["QueueUrl"]
    return DeadLetters(sqs, queue_url)


@pytest.fixture(scope="module")
def sfn(endpoint: str) -> Any:
    return client("stepfunctions", endpoint)


@pytest.fixture(scope="module")
def state_machine_arns(sfn: Any, dead_letters: DeadLetters) -> dict[str, str]:
    """Both machines from the real ASL, placeholders filled as CDK and the local cloud fill
    them. The DLQ fixture comes first: the DLQ cases need the queue before they run."""
    substitutions = definition_substitutions(REGION, DLQ_URL_IN_CONTAINER)
    arns = {}
    for name, machine in MACHINES.items():
        definition = fill_placeholders(machine.asl.read_text(), substitutions)
        role_arn = f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
        arn = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{name}"
        try:
            arn = sfn.create_state_machine(
                name=name, definition=definition, roleArn=role_arn, type=machine.type
            )["stateMachineArn"]
        except sfn.exceptions.StateMachineAlreadyExists:
            # A container kept from an earlier run: bring its machine up to the current ASL.
            sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn)
        assert sfn.describe_state_machine(stateMachineArn=arn)["type"] == machine.type
        arns[name] = str(arn)
    # The parent starts the child by the ARN the placeholders name.
    assert arns[LABS_STATE_MACHINE_NAME] == substitutions["LabsStateMachineArn"]
    return arns


def run_case(sfn: Any, machine: str, arn: str, test_case: str, name: str) -> str:
    """Start ``stateMachineArn#TestCase`` (the Step Functions Local convention), wait for it."""
    execution_arn = str(
        sfn.start_execution(
            stateMachineArn=f"{arn}#{test_case}",
            name=f"{name}-{RUN_ID}",
            input=json.dumps(load_event(MACHINES[machine].input_event)),
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


@pytest.mark.parametrize(("machine", "test_case"), CASES)
def test_mock_case(
    sfn: Any,
    state_machine_arns: dict[str, str],
    dead_letters: DeadLetters,
    machine: str,
    test_case: str,
) -> None:
    status, expected_states, dlq_error = EXPECTED[machine][test_case]
    arn = run_case(sfn, machine, state_machine_arns[machine], test_case, f"mock-{test_case}")
    assert sfn.describe_execution(executionArn=arn)["status"] == status
    assert entered_states(sfn, arn) == expected_states
    letters = dead_letters.of(arn)
    assert [letter["error"]["Error"] for letter in letters] == ([dlq_error] if dlq_error else [])


def test_retried_case_shows_the_throttle_in_history(
    sfn: Any, state_machine_arns: dict[str, str]
) -> None:
    arn = run_case(
        sfn,
        STATE_MACHINE_NAME,
        state_machine_arns[STATE_MACHINE_NAME],
        "TransientLambdaErrorRetried",
        "mock-retry-history",
    )
    failures = [
        event["taskFailedEventDetails"]["error"]
        for event in history(sfn, arn)
        if event["type"] == "TaskFailed"
    ]
    assert failures == ["Lambda.TooManyRequestsException"]
