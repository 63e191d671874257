"""moto internals that tasks.localcloud.moto_ext relies on, and each patched path end to end.

If a moto upgrade moves an internal, the first group fails with the name of what moved.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service,
)
from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint
from moto.stepfunctions.parser.asl.parse.asl_parser import (
    AmazonStateLanguageParser,
    ASLParserException,
)
from moto.stepfunctions.parser.mocking import mock_config

from tasks.localcloud import moto_ext
from tasks.localcloud.cloud import DEFAULT_DEFINITION
from tasks.runners.ecs import WorkerConfig, run_from_environment

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/test"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:steps"

# The signatures moto_ext's replacements mirror (parameter names, self excluded).
EXPECTED_SIGNATURES = {
    "parse": ["definition"],
    "_invoke_lambda_function": ["parameters", "region", "state_credentials"],
    "_normalise_parameters": ["parameters", "boto_service_name", "service_action_name"],
    "_normalise_response": ["response", "boto_service_name", "service_action_name"],
    "_get_supported_parameters": [],
    "_eval_service_task": [
        "env",
        "resource_runtime_part",
        "normalised_parameters",
        "state_credentials",
    ],
    "_build_sync_resolver": [
        "env",
        "resource_runtime_part",
        "normalised_parameters",
        "state_credentials",
    ],
    "start_execution": ["state_machine_arn", "name", "execution_input", "trace_header"],
    "_get_start_execution_worker": [],
}


# A ClientError as botocore builds it (moto reads the status code and request id from it).
THROTTLED: Any = {
    "Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"},
    "ResponseMetadata": {"HTTPStatusCode": 429, "RequestId": "r-1"},
}


class CategorizationFailed(Exception):
    """A domain error as a step raises it (the class name is the error name)."""


# --------------------------------------------------------------------------- moto internals


@pytest.mark.parametrize(("owner", "name"), moto_ext.patch_targets())
def test_patched_attribute_exists_with_expected_signature(owner: Any, name: str) -> None:
    attribute = getattr(owner, name)
    parameters = [p for p in inspect.signature(attribute).parameters if p != "self"]
    assert parameters == EXPECTED_SIGNATURES[name]


def test_helpers_moto_ext_calls_still_exist() -> None:
    base = state_task_service.StateTaskService
    for helper in ("_to_boto_request", "_from_boto_response", "_get_boto_service_name"):
        assert callable(getattr(base, helper)), helper
    assert callable(mock_config._mock_test_case_from_raw)
    # The stub moto_ext works around: if moto restores it, the mock-config hook can go.
    assert mock_config.load_mock_test_case_for("healthflow", "any") is None
    assert "_heartbeat_endpoint" in vars(CallbackEndpoint("token"))


def test_each_parse_of_a_definition_gets_its_own_components_from_one_tree() -> None:
    definition = DEFAULT_DEFINITION.read_text()
    with moto_ext.patched_interpreter(lambda_dispatcher=lambda arn, payload: {}):
        first, tree = AmazonStateLanguageParser.parse(definition)
        second, same_tree = AmazonStateLanguageParser.parse(definition)
        with pytest.raises(ASLParserException):
            AmazonStateLanguageParser.parse('{"StartAt": ')
    assert same_tree is tree
    assert first is not second and type(first) is type(second)


def test_patches_are_restored_on_exit() -> None:
    before = {(owner, name): vars(owner).get(name) for owner, name in moto_ext.patch_targets()}
    with (
        moto_ext.patched_interpreter(lambda_dispatcher=lambda arn, payload: {}),
        pytest.raises(RuntimeError, match="already patched"),
        moto_ext.patched_interpreter(lambda_dispatcher=lambda arn, payload: {}),
    ):
        pass
    after = {(owner, name): vars(owner).get(name) for owner, name in moto_ext.patch_targets()}
    assert after == before


def test_fill_placeholders_escapes_and_rejects_leftovers() -> None:
    text = '{"a": "${One}", "b": "x-${Two}"}'
    filled = moto_ext.fill_placeholders(text, {"One": 'q"uote', "Two": "2"})
    assert json.loads(filled) == {"a": 'q"uote', "b": "x-2"}
    with pytest.raises(KeyError, match="Two"):
        moto_ext.fill_placeholders(text, {"One": "1"})


# --------------------------------------------------------------------------- small machines


@contextmanager
def running(definition: dict[str, Any], **patches: Any) -> Iterator[Any]:
    """Create ``definition`` under the patched interpreter; yields ``run(input) -> result``."""
    moto_ext.silence_parser_logs()
    patches.setdefault("lambda_dispatcher", lambda arn, payload: payload)
    with moto_ext.execution_enabled_mock(), moto_ext.patched_interpreter(**patches):
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(
            name="small", definition=json.dumps(definition), roleArn=ROLE
        )["stateMachineArn"]
        counter = iter(range(1000))

        def run(execution_input: Any) -> dict[str, Any]:
            started = sfn.start_execution(
                stateMachineArn=machine,
                name=f"run-{next(counter)}",
                input=json.dumps(execution_input),
            )
            deadline = time.monotonic() + 30
            while (described := sfn.describe_execution(executionArn=started["executionArn"]))[
                "status"
            ] == "RUNNING":
                assert time.monotonic() < deadline, "execution did not finish"
                time.sleep(0.02)
            if "output" in described:
                described["output"] = json.loads(described["output"])
            return described

        yield run


def wait_for(sfn: Any, execution_arn: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (described := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution did not finish"
        time.sleep(0.02)
    return dict(described)


def lambda_state(**extra: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": FUNCTION, "Payload": {"step": "s", "input.$": "$"}},
        "TimeoutSeconds": 10,
        "ResultSelector": {"result.$": "$.Payload"},
        "ResultPath": "$.out",
        "End": True,
        **extra,
    }


def test_lambda_dispatch_success() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def dispatcher(arn: str, payload: dict[str, Any]) -> dict[str, Any]:
        seen.append((arn, payload))
        return {"count": 2}

    definition = {"StartAt": "Call", "States": {"Call": lambda_state()}}
    with running(definition, lambda_dispatcher=dispatcher) as run:
        result = run({"user_id": 1})
    assert result["status"] == "SUCCEEDED"
    assert result["output"] == {"user_id": 1, "out": {"result": {"count": 2}}}
    assert seen == [(FUNCTION, {"step": "s", "input": {"user_id": 1}})]


def test_lambda_named_exception_is_caught_by_its_class_name() -> None:
    def dispatcher(arn: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise CategorizationFailed("claim c1 failed")

    catch = [{"ErrorEquals": ["CategorizationFailed"], "ResultPath": "$.error", "Next": "Caught"}]
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": lambda_state(Catch=catch),
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    with running(definition, lambda_dispatcher=dispatcher) as run:
        result = run({})
    assert result["status"] == "SUCCEEDED"
    assert result["output"]["error"]["Error"] == "CategorizationFailed"


def test_lambda_throttling_is_retried_then_succeeds() -> None:
    attempts: list[int] = []

    def dispatcher(arn: str, payload: dict[str, Any]) -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise ClientError(THROTTLED, "Invoke")
        return {"ok": True}

    retry = [
        {
            "ErrorEquals": ["Lambda.TooManyRequestsException"],
            "IntervalSeconds": 1,
            "MaxAttempts": 2,
            "BackoffRate": 2.0,
            "JitterStrategy": "FULL",
        }
    ]
    definition = {"StartAt": "Call", "States": {"Call": lambda_state(Retry=retry)}}
    with running(definition, lambda_dispatcher=dispatcher) as run:
        result = run({})
    assert result["status"] == "SUCCEEDED"
    assert len(attempts) == 2


def ecs_state(**extra: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::ecs:runTask.waitForTaskToken",
        "Parameters": {
            "Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/c",
            "TaskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/t:1",
            "CapacityProviderStrategy": [{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}],
            "Overrides": {
                "ContainerOverrides": [
                    {
                        "Name": "worker",
                        "Environment": [
                            {"Name": "HEALTHFLOW_STEP", "Value": "categorize_labs"},
                            {"Name": "HEALTHFLOW_STEP_INPUT", "Value.$": "States.JsonToString($)"},
                            {"Name": "HEALTHFLOW_TASK_TOKEN", "Value.$": "$$.Task.Token"},
                        ],
                    }
                ]
            },
        },
        # Wide margins: on a loaded 2-core machine a heartbeat thread can wait a second or more
        # for the CPU, and a test must not fail for that.
        "HeartbeatSeconds": 4,
        "TimeoutSeconds": 30,
        "ResultPath": "$.out",
        "End": True,
        **extra,
    }


def container_with(step_runner: Any) -> Any:
    config = WorkerConfig(region=REGION, heartbeat_seconds=0.3)
    return lambda env: run_from_environment(env, run_step=step_runner, config=config)


def test_ecs_wait_for_task_token_success_with_heartbeats() -> None:
    launches: list[moto_ext.EcsTaskLaunch] = []
    steps: list[tuple[str, dict[str, Any]]] = []

    def slow_step(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        steps.append((step, payload))
        time.sleep(5)  # longer than HeartbeatSeconds: only heartbeats keep the task alive
        return {"categorized": 1}

    def record_launch(launch: moto_ext.EcsTaskLaunch) -> None:
        launches.append(launch)

    definition = {"StartAt": "Run", "States": {"Run": ecs_state()}}
    with running(
        definition, container_runner=container_with(slow_step), capacity_check=record_launch
    ) as run:
        result = run({"claim_id": "c1", "user_id": 7})
    assert result["status"] == "SUCCEEDED", {k: result.get(k) for k in ("status", "error", "cause")}
    assert result["output"]["out"] == {"categorized": 1}
    assert steps == [("categorize_labs", {"claim_id": "c1", "user_id": 7})]
    (launch,) = launches
    assert launch.capacity_provider == "FARGATE_SPOT"
    assert launch.container_name == "worker"
    assert launch.task_definition.endswith("task-definition/t:1")


def test_ecs_send_task_failure_error_name_is_caught() -> None:
    def failing_step(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise CategorizationFailed("model unavailable")

    catch = [{"ErrorEquals": ["CategorizationFailed"], "ResultPath": "$.error", "Next": "Caught"}]
    definition = {
        "StartAt": "Run",
        "States": {"Run": ecs_state(Catch=catch), "Caught": {"Type": "Pass", "End": True}},
    }
    with running(definition, container_runner=container_with(failing_step)) as run:
        result = run({"claim_id": "c1", "user_id": 7})
    assert result["status"] == "SUCCEEDED"
    assert result["output"]["error"]["Error"] == "CategorizationFailed"


def test_ecs_capacity_failure_is_a_named_task_failure() -> None:
    catch = [{"ErrorEquals": ["SpotCapacityUnavailable"], "ResultPath": "$.error", "Next": "X"}]
    definition = {
        "StartAt": "Run",
        "States": {"Run": ecs_state(Catch=catch), "X": {"Type": "Pass", "End": True}},
    }
    with running(
        definition,
        container_runner=container_with(lambda step, payload: {}),
        capacity_check=lambda launch: "SpotCapacityUnavailable",
    ) as run:
        result = run({})
    assert result["output"]["error"]["Error"] == "SpotCapacityUnavailable"


def ecs_sync_state(**extra: Any) -> dict[str, Any]:
    state = ecs_state(**extra)
    state["Resource"] = "arn:aws:states:::ecs:runTask.sync"
    state.pop("HeartbeatSeconds")
    environment = state["Parameters"]["Overrides"]["ContainerOverrides"][0]["Environment"]
    environment.pop()  # no task token: the exit code is the report
    return state


def test_ecs_sync_waits_for_the_container_and_returns_the_stopped_task() -> None:
    steps: list[tuple[str, dict[str, Any]]] = []

    def step(name: str, payload: dict[str, Any]) -> dict[str, Any]:
        steps.append((name, payload))
        time.sleep(0.3)
        return {"categorized": 1}

    definition = {"StartAt": "Run", "States": {"Run": ecs_sync_state()}}
    with running(definition, container_runner=container_with(step)) as run:
        result = run({"claim_id": "c1", "user_id": 7})
    assert result["status"] == "SUCCEEDED", {k: result.get(k) for k in ("status", "error", "cause")}
    assert steps == [("categorize_labs", {"claim_id": "c1", "user_id": 7})]
    stopped = result["output"]["out"]
    assert stopped["LastStatus"] == "STOPPED" and stopped["StopCode"] == "EssentialContainerExited"
    assert stopped["Containers"][0]["ExitCode"] == 0
    assert stopped["CapacityProviderName"] == "FARGATE_SPOT"


@pytest.mark.parametrize(
    ("capacity", "stop_code"),
    [(None, "EssentialContainerExited"), (moto_ext.SPOT_INTERRUPTION, "SpotInterruption")],
)
def test_ecs_sync_bad_stop_is_states_task_failed_with_the_task_as_cause(
    capacity: str | None, stop_code: str
) -> None:
    def failing_step(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise CategorizationFailed("model unavailable")

    catch = [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "Caught"}]
    definition = {
        "StartAt": "Run",
        "States": {"Run": ecs_sync_state(Catch=catch), "Caught": {"Type": "Pass", "End": True}},
    }
    with running(
        definition,
        container_runner=container_with(failing_step),
        capacity_check=lambda launch: capacity,
    ) as run:
        result = run({"claim_id": "c1", "user_id": 7})
    assert result["status"] == "SUCCEEDED", {k: result.get(k) for k in ("status", "error", "cause")}
    error = result["output"]["error"]
    assert error["Error"] == "States.TaskFailed"
    task = json.loads(error["Cause"])
    assert task["StopCode"] == stop_code
    # The reason carries ids and codes only, never the step's exception text.
    assert "model unavailable" not in error["Cause"]


def test_start_execution_of_another_machine_request_response() -> None:
    child = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
    with (
        moto_ext.execution_enabled_mock(),
        moto_ext.patched_interpreter(lambda_dispatcher=lambda arn, payload: payload),
    ):
        sfn = boto3.client("stepfunctions", region_name=REGION)
        role = ROLE
        child_arn = sfn.create_state_machine(
            name="child", definition=json.dumps(child), roleArn=role
        )["stateMachineArn"]
        parent = {
            "StartAt": "Start",
            "States": {
                "Start": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::states:startExecution",
                    "Parameters": {
                        "StateMachineArn": child_arn,
                        "Name.$": "$$.Execution.Name",
                        "Input": {"user_id.$": "$.user_id"},
                    },
                    "ResultSelector": {"arn.$": "$.ExecutionArn"},
                    "End": True,
                }
            },
        }
        parent_arn = sfn.create_state_machine(
            name="parent", definition=json.dumps(parent), roleArn=role, type="EXPRESS"
        )["stateMachineArn"]
        execution = sfn.start_execution(
            stateMachineArn=parent_arn, name="p1", input=json.dumps({"user_id": 5})
        )["executionArn"]
        described = wait_for(sfn, execution)
        assert described["status"] == "SUCCEEDED", described
        started = json.loads(described["output"])["arn"]
        assert started.endswith(":child:p1")
        child_run = wait_for(sfn, started)
        assert json.loads(child_run["input"]) == {"user_id": 5}


def test_sqs_send_message() -> None:
    queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/dlq"  # moto's URL scheme
    definition = {
        "StartAt": "Send",
        "States": {
            "Send": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage",
                "Parameters": {
                    "QueueUrl": queue_url,
                    "MessageBody": {"error.$": "$.Error", "execution_arn.$": "$$.Execution.Id"},
                },
                "TimeoutSeconds": 10,
                "End": True,
            }
        },
    }
    with running(definition) as run:
        sqs = boto3.client("sqs", region_name=REGION)
        assert sqs.create_queue(QueueName="dlq")["QueueUrl"] == queue_url
        result = run({"Error": "InvalidMessage"})
        messages = sqs.receive_message(QueueUrl=queue_url)["Messages"]
    assert result["status"] == "SUCCEEDED"
    body = json.loads(messages[0]["Body"])
    assert body["error"] == "InvalidMessage"
    assert body["execution_arn"] == result["executionArn"]
