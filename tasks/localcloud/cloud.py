"""The AWS side of healthflow on a laptop: SQS, the two state machines and a pipe, in-process.

``LocalCloud`` starts moto with state machine execution on, creates the trigger queue and the
dead-letter queue, creates the Standard labs machine (``statemachines/labs.asl.json``) and the
Express parent (``statemachines/healthflow.asl.json``) with their placeholders filled from the
same list CDK uses (``tasks.statemachines.PLACEHOLDERS``), and routes the machines' Lambda and
ECS tasks to the same Python entry points that run in AWS. The parent's ``states:startExecution``
of the labs child is moto's own. moto runs an EXPRESS machine like a Standard one (it records the
type, and keeps a history that AWS keeps only in CloudWatch Logs), so no shim is needed.
EventBridge Pipes move nothing in moto, so :meth:`LocalCloud.drain` plays the pipe: one execution
per message, input shaped like the real pipe's SQS batch, message deleted once the execution has
started (FIRE_AND_FORGET).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import boto3

from tasks import statemachines
from tasks.localcloud import moto_ext
from tasks.runners.common import StepRunner
from tasks.settings import get_settings

if TYPE_CHECKING:
    from tasks.localcloud.artifacts import LambdaAsset, WorkerEnvironment

DEFAULT_DEFINITION = statemachines.EXPRESS_ASL
DEFAULT_LABS_DEFINITION = statemachines.LABS_ASL

ACCOUNT_ID = "123456789012"  # moto's default account
STATE_MACHINE_NAME = "healthflow"
LABS_STATE_MACHINE_NAME = "healthflow-labs"
TRIGGER_QUEUE_NAME = "healthflow-trigger"
DEAD_LETTER_QUEUE_NAME = "healthflow-dlq"
STEPS_FUNCTION_NAME = "healthflow-steps"
CONTAINER_NAME = "ml-worker"
# Like the CDK queue: a message that cannot even start an execution ends in the DLQ.
MAX_RECEIVE_COUNT = 3
_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ExecutionResult:
    """How one execution ended. ``output`` is decoded JSON (ids and counts only)."""

    execution_arn: str
    name: str
    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    # The Standard labs execution this (Express) execution started, once it ended.
    child: ExecutionResult | None = None

    @property
    def succeeded(self) -> bool:
        """The execution and the labs execution it started both succeeded."""
        return self.status == "SUCCEEDED" and (self.child is None or self.child.succeeded)

    @property
    def execution_arns(self) -> list[str]:
        """This execution's ARN, then its child's."""
        return [self.execution_arn] + (self.child.execution_arns if self.child else [])


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter queue, body decoded."""

    message_id: str
    receipt_handle: str
    body: Any


def execution_name_for(message_id: str) -> str:
    """A valid, unique execution name for a message (names allow 80 of [A-Za-z0-9_-])."""
    return f"msg-{_INVALID_NAME_CHARS.sub('-', message_id)}"[:80]


def pipe_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS message as an EventBridge Pipe hands it to its target (Lambda-style casing)."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _pipe_message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def _pipe_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    attribute: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": list(value.get("BinaryListValues", [])),
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = value["BinaryValue"]
    return attribute


def definition_substitutions(
    region: str, dead_letter_queue_url: str, trigger_queue_url: str = ""
) -> dict[str, str]:
    """Fake but well-formed values for every ASL placeholder, as CDK would fill them."""
    prefix = f"{region}:{ACCOUNT_ID}"
    values = {
        "StepsFunctionArn": f"arn:aws:lambda:{prefix}:function:{STEPS_FUNCTION_NAME}",
        "LabsStateMachineArn": f"arn:aws:states:{prefix}:stateMachine:{LABS_STATE_MACHINE_NAME}",
        "ClusterArn": f"arn:aws:ecs:{prefix}:cluster/healthflow",
        "MlWorkerTaskDefinitionArn": f"arn:aws:ecs:{prefix}:task-definition/healthflow-ml-worker:1",
        "MlWorkerContainerName": CONTAINER_NAME,
        "MlWorkerSubnet1": "subnet-0a1b2c3d4e5f60001",
        "MlWorkerSubnet2": "subnet-0a1b2c3d4e5f60002",
        "MlWorkerSecurityGroupId": "sg-0a1b2c3d4e5f60003",
        "MlWorkerAssignPublicIp": "ENABLED",
        "DeadLetterQueueUrl": dead_letter_queue_url,
        "TriggerQueueUrl": trigger_queue_url,
    }
    # The one list of placeholders decides; a new one without a local value fails here.
    assert set(values) == set(statemachines.PLACEHOLDERS), "placeholder list drifted"
    return values


def lambda_dispatcher_for(run_step: StepRunner | None) -> moto_ext.LambdaDispatcher:
    """Every Lambda task goes to the one "steps" handler, as in AWS."""
    from tasks.runners.lambda_handler import handler

    def dispatch(function_arn: str, payload: dict[str, Any]) -> Any:
        return handler(payload, None, run_step=run_step)

    return dispatch


def container_runner_for(
    run_step: StepRunner | None, region: str, heartbeat_seconds: float
) -> moto_ext.ContainerRunner:
    """The ml-worker entry point, reporting to the in-process moto."""
    from tasks.runners.ecs import WorkerConfig, run_from_environment

    config = WorkerConfig(region=region, heartbeat_seconds=heartbeat_seconds)

    def run(environment: Mapping[str, str]) -> int:
        return run_from_environment(environment, run_step=run_step, config=config)

    return run


def shipped_database_environment() -> dict[str, str]:
    """Where a step in another process finds the database this process uses (the stack gives
    the function and the task definition the database's address the same way)."""
    from tasks.db.engine import database_url

    url = database_url(get_settings())
    rendered = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    return {"HEALTHFLOW_DATABASE_URL": rendered}


class LocalCloud:
    """moto in-process with healthflow's queues and state machine; a context manager.

    ``run_step`` replaces the step registry in both runners (tests use a fake); by default the
    Lambda tasks call ``tasks.runners.lambda_handler.handler`` and the ECS task calls
    ``tasks.runners.ecs.run_from_environment``, which use ``tasks.steps.registry.run_step``.
    ``lambda_dispatcher`` and ``container_runner`` replace the runners themselves.
    ``spot_capacity`` may return an error name (e.g. ``SpotCapacityUnavailable``) to make a launch
    fail. ``mock_config`` is a Step Functions Local MockConfigFile; start an execution of
    ``f"{state_machine_arn}#{test_case}"`` to run a test case of it.
    """

    def __init__(
        self,
        *,
        run_step: StepRunner | None = None,
        lambda_dispatcher: moto_ext.LambdaDispatcher | None = None,
        container_runner: moto_ext.ContainerRunner | None = None,
        spot_capacity: moto_ext.CapacityCheck | None = None,
        mock_config: Path | str | Mapping[str, Any] | None = None,
        definition_path: Path = DEFAULT_DEFINITION,
        labs_definition_path: Path = DEFAULT_LABS_DEFINITION,
        region: str = "us-east-1",
        heartbeat_seconds: float = 5.0,
        poll_seconds: float = 0.02,
        execution_timeout_seconds: float = 120.0,
        max_running: int | None = None,
        lambda_asset: LambdaAsset | None = None,
        ml_worker: WorkerEnvironment | None = None,
        shipped_environment: Mapping[str, str] | None = None,
    ) -> None:
        self.region = region
        self._definition_path = definition_path
        self._labs_definition_path = labs_definition_path
        self._poll_seconds = poll_seconds
        self._execution_timeout = execution_timeout_seconds
        self._max_running = max_running
        self.peak_running = 0  # the most executions one drain had running at once
        settings = get_settings()
        if lambda_asset is None and lambda_dispatcher is None and settings.local_steps == "shipped":
            from tasks.localcloud.artifacts import build_lambda_asset

            lambda_asset = build_lambda_asset()[0]
        if ml_worker is None and container_runner is None and settings.local_ml_worker == "shipped":
            from tasks.localcloud.artifacts import build_ml_worker_environment

            ml_worker = build_ml_worker_environment()[0]
        self._lambda_asset = lambda_asset
        self._ml_worker = ml_worker
        self._shipped_environment = shipped_environment
        self.sandboxes: Any = None  # the LambdaSandboxPool while running a lambda_asset
        self.containers: Any = None  # the ContainerRunner of an ml_worker environment
        self._lambda_dispatcher = lambda_dispatcher or lambda_dispatcher_for(run_step)
        self._container_runner = container_runner or container_runner_for(
            run_step, region, heartbeat_seconds
        )
        self._spot_capacity = spot_capacity
        self._mock_config = mock_config
        self._stack: contextlib.ExitStack | None = None
        self.queue_url = ""
        self.queue_arn = ""
        self.dead_letter_queue_url = ""
        self.state_machine_arn = ""
        self.labs_state_machine_arn = ""

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalCloud:
        moto_ext.silence_parser_logs()
        with contextlib.ExitStack() as stack:
            self._start_shipped(stack)
            stack.enter_context(moto_ext.execution_enabled_mock())
            stack.enter_context(
                moto_ext.patched_interpreter(
                    lambda_dispatcher=self._lambda_dispatcher,
                    container_runner=self._container_runner,
                    capacity_check=self._spot_capacity,
                    mock_config=self._mock_config,
                )
            )
            self._sqs = boto3.client("sqs", region_name=self.region)
            self._sfn = boto3.client("stepfunctions", region_name=self.region)
            self._create_queues()
            self._create_state_machine()
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def _start_shipped(self, stack: contextlib.ExitStack) -> None:
        if self._lambda_asset is None and self._ml_worker is None:
            return
        from tasks.localcloud import sandbox

        environment = dict(
            shipped_database_environment()
            if self._shipped_environment is None
            else self._shipped_environment
        )
        if self._lambda_asset is not None:
            self.sandboxes = stack.enter_context(
                sandbox.LambdaSandboxPool(
                    self._lambda_asset,
                    sandbox.lambda_environment(environment, self.region, STEPS_FUNCTION_NAME),
                )
            )
            self._lambda_dispatcher = self.sandboxes.dispatcher()
        if self._ml_worker is not None:
            self.containers = sandbox.ContainerRunner(self._ml_worker, environment, self.region)
            self._container_runner = self.containers

    def _create_queues(self) -> None:
        dlq_url = self._sqs.create_queue(QueueName=DEAD_LETTER_QUEUE_NAME)["QueueUrl"]
        self.dead_letter_queue_url = dlq_url
        dlq_arn = self._queue_arn(dlq_url)
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
        self.queue_url = self._sqs.create_queue(
            QueueName=TRIGGER_QUEUE_NAME, Attributes={"RedrivePolicy": json.dumps(redrive)}
        )["QueueUrl"]
        self.queue_arn = self._queue_arn(self.queue_url)

    def _queue_arn(self, queue_url: str) -> str:
        attributes = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])

    def _create_state_machine(self) -> None:
        substitutions = definition_substitutions(
            self.region, self.dead_letter_queue_url, self.queue_url
        )
        # The child first: the parent's definition names its ARN.
        self.labs_state_machine_arn = self._create_machine(
            LABS_STATE_MACHINE_NAME, self._labs_definition_path, "STANDARD", substitutions
        )
        if self.labs_state_machine_arn != substitutions["LabsStateMachineArn"]:
            raise RuntimeError("moto named the labs state machine unexpectedly")
        self.state_machine_arn = self._create_machine(
            STATE_MACHINE_NAME, self._definition_path, "EXPRESS", substitutions
        )

    def _create_machine(
        self, name: str, path: Path, kind: str, substitutions: Mapping[str, str]
    ) -> str:
        definition = moto_ext.fill_placeholders(statemachines.load_definition(path), substitutions)
        return str(
            self._sfn.create_state_machine(
                name=name,
                definition=definition,
                roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/{name}",
                type=kind,
            )["stateMachineArn"]
        )

    # ------------------------------------------------------------------ producer side

    def send_message(self, body: Mapping[str, Any]) -> str:
        """Send a trigger message like a backend does; returns the SQS message id."""
        response = self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body))
        return str(response["MessageId"])

    # ------------------------------------------------------------------ the pipe

    def drain(
        self,
        max_messages: int | None = None,
        on_finished: Callable[[ExecutionResult], None] | None = None,
    ) -> list[ExecutionResult]:
        """Start one execution per queued message and wait for all of them to finish.

        At most `max_running` executions run at once (by default what the database pool
        holds: every running execution may hold a connection), as a deployment bounds Lambda
        concurrency by the database's connection slots; the rest of the queue waits its turn.
        There is no deadline for the whole drain: it waits as long as executions keep
        finishing, and gives up only when none has finished for `execution_timeout_seconds`.
        A result includes the labs child its Express execution started (`result.child`), and the
        drain goes on while executions queue more (a large backlog re-queues its trigger)."""
        limit = self._max_running or _pool_capacity()
        started = 0
        running: list[str] = []
        results: dict[str, ExecutionResult] = {}
        order: list[str] = []
        queue_empty = False
        last_progress = time.monotonic()
        while True:
            while not queue_empty and len(running) < limit:
                if max_messages is not None and started >= max_messages:
                    queue_empty = True
                    break
                want = min(10, limit - len(running))
                if max_messages is not None:
                    want = min(want, max_messages - started)
                messages = self._receive(self.queue_url, want, visibility_timeout=30)
                if not messages:
                    queue_empty = True
                    break
                for message in messages:
                    arn = self._start_for_message(message)
                    started += 1
                    running.append(arn)
                    order.append(arn)
            self.peak_running = max(self.peak_running, len(running))
            if not running and max_messages is None and self._queue_has_messages():
                queue_empty = False  # a finished execution queued its continuation
                continue
            if not running:
                break
            for arn in list(running):
                described = self._sfn.describe_execution(executionArn=arn)
                if described["status"] in _TERMINAL:
                    results[arn] = self._with_child(_result_of(described))
                    running.remove(arn)
                    if on_finished is not None:
                        on_finished(results[arn])
                    last_progress = time.monotonic()
            if running and time.monotonic() - last_progress > self._execution_timeout:
                raise TimeoutError(
                    f"no execution finished in {self._execution_timeout:.0f} s; "
                    f"{len(running)} still running"
                )
            if running:
                time.sleep(self._poll_seconds)
        return [results[arn] for arn in dict.fromkeys(order)]

    def _queue_has_messages(self) -> bool:
        attributes = self._queue_attributes()
        return int(attributes.get("ApproximateNumberOfMessages", "0")) > 0

    def _queue_attributes(self) -> dict[str, str]:
        return dict(
            self._sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
        )

    def _start_for_message(self, message: Mapping[str, Any]) -> str:
        record = pipe_record(message, self.queue_arn, self.region)
        name = execution_name_for(str(message["MessageId"]))
        try:
            execution_arn = self.start_execution([record], name)
        except self._sfn.exceptions.ExecutionAlreadyExists:
            # Redelivered after a start whose delete was lost: the execution already runs.
            execution_arn = self._execution_arn(name)
        # FIRE_AND_FORGET: the pipe's work is done once the execution exists.
        self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return execution_arn

    def _execution_arn(self, name: str) -> str:
        return self._execution_arn_of(self.state_machine_arn, name)

    @staticmethod
    def _execution_prefix(state_machine_arn: str) -> str:
        machine = state_machine_arn.split(":stateMachine:", 1)
        return f"{machine[0]}:execution:{machine[1]}:"

    def _execution_arn_of(self, state_machine_arn: str, name: str) -> str:
        return self._execution_prefix(state_machine_arn) + name

    def _receive(
        self, queue_url: str, max_messages: int, visibility_timeout: int
    ) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=max_messages,
            VisibilityTimeout=visibility_timeout,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        return list(response.get("Messages", []))

    # ------------------------------------------------------------------ executions

    def start_execution(
        self,
        execution_input: Any,
        name: str,
        test_case: str | None = None,
        state_machine_arn: str | None = None,
    ) -> str:
        """StartExecution of the parent (manual reprocess, or the pipe) or of another machine;
        ``test_case`` selects a mock case."""
        machine_arn = (state_machine_arn or self.state_machine_arn) + (
            f"#{test_case}" if test_case else ""
        )
        response = self._sfn.start_execution(
            stateMachineArn=machine_arn, name=name, input=json.dumps(execution_input)
        )
        return str(response["executionArn"])

    def wait(self, execution_arn: str, timeout_seconds: float | None = None) -> ExecutionResult:
        """Poll until the execution, and the labs execution it started, end.

        moto runs executions in daemon threads. The Express parent ends as soon as it has
        started the Standard labs child, so the child is waited for too (``result.child``).
        """
        deadline = time.monotonic() + (timeout_seconds or self._execution_timeout)
        return self._with_child(self._wait_one(execution_arn, deadline))

    def _with_child(self, result: ExecutionResult) -> ExecutionResult:
        """The result with the labs execution it started, once that one ended too."""
        child_arn = self.child_execution_arn(result)
        if child_arn is None:
            return result
        deadline = time.monotonic() + self._execution_timeout
        # A mocked StartLabsWorkflow (mock config) starts nothing.
        with contextlib.suppress(self._sfn.exceptions.ExecutionDoesNotExist):
            return replace(result, child=self._wait_one(child_arn, deadline))
        return result

    def _wait_one(self, execution_arn: str, deadline: float) -> ExecutionResult:
        while True:
            described = self._sfn.describe_execution(executionArn=execution_arn)
            if described["status"] in _TERMINAL:
                return _result_of(described)
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {described['name']} still running")
            time.sleep(self._poll_seconds)

    def child_execution_arn(self, result: ExecutionResult) -> str | None:
        """The labs execution a parent started: same name, in the labs machine (by design)."""
        if not result.execution_arn.startswith(self._execution_prefix(self.state_machine_arn)):
            return None
        if "StartLabsWorkflow" not in self.entered_states(result.execution_arn):
            return None
        return self._execution_arn_of(self.labs_state_machine_arn, result.name)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        """The execution's events, oldest first."""
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = self._sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def entered_states(self, execution_arn: str) -> list[str]:
        """Names of the states the execution entered, in order (one billed transition each)."""
        return [
            event["stateEnteredEventDetails"]["name"]
            for event in self.history(execution_arn)
            if "stateEnteredEventDetails" in event
        ]

    # ------------------------------------------------------------------ dead letters

    def dlq_messages(self) -> list[DeadLetter]:
        """Every message in the DLQ, left in place. Each receive hides what it returned, so the
        next one returns the following messages (SQS gives at most 10 per receive); at the end
        all of them are made visible again."""
        seen: dict[str, DeadLetter] = {}
        while True:
            messages = self._receive(self.dead_letter_queue_url, 10, visibility_timeout=300)
            if not messages:
                break
            for message in messages:
                seen[message["MessageId"]] = DeadLetter(
                    message_id=message["MessageId"],
                    receipt_handle=message["ReceiptHandle"],
                    body=_decoded(message["Body"]),
                )
        letters = list(seen.values())
        for start in range(0, len(letters), 10):
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.dead_letter_queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": d.receipt_handle, "VisibilityTimeout": 0}
                    for i, d in enumerate(letters[start : start + 10])
                ],
            )
        return letters

    def delete_dead_letter(self, dead_letter: DeadLetter) -> None:
        self._sqs.delete_message(
            QueueUrl=self.dead_letter_queue_url, ReceiptHandle=dead_letter.receipt_handle
        )


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _result_of(described: Mapping[str, Any]) -> ExecutionResult:
    output = described.get("output")
    return ExecutionResult(
        execution_arn=described["executionArn"],
        name=described["name"],
        status=described["status"],
        output=_decoded(output) if output else None,
        error=described.get("error"),
        cause=described.get("cause"),
    )


__all__ = [
    "DeadLetter",
    "ExecutionResult",
    "LocalCloud",
    "definition_substitutions",
    "execution_name_for",
    "pipe_record",
]


def _pool_capacity() -> int:
    """How many connections the process's database pool can hand out at once (less one for
    the pipe's own bookkeeping), or a small default when no engine is installed yet."""
    from tasks.db import engine as db_engine

    engine = db_engine.current_engine()
    pool = getattr(engine, "pool", None) if engine is not None else None
    size = getattr(pool, "size", None)
    if pool is None or not callable(size):
        return 4
    capacity = int(size()) + max(int(getattr(pool, "_max_overflow", 0)), 0)
    return max(capacity - 1, 1)
