"""Every moto internal the local cloud relies on, in one place.

moto 5.2.5 ships LocalStack's ASL interpreter, but three of its integrations do not do what the
workflow needs, and its mock-config support is unplugged:

* ``lambda:invoke`` calls moto's Lambda backend, which only echoes its input. We replace the
  interpreter's invoke helper with a dispatcher to an in-process callable. A raised exception is
  reported the way real Lambda reports an unhandled error (``FunctionError`` plus an
  ``errorType`` payload), so the Step Functions error name is the exception's class name.
* ``ecs:runTask`` has its request normalisation stubbed out (PascalCase ASL parameters reach
  botocore and fail). We restore it from moto's own ``_to_boto_request``/``_from_boto_response``
  and replace the task evaluation with an in-process "container" that gets the overridden
  environment and answers with SendTaskSuccess/SendTaskFailure like the real ml-worker.
* The Step Functions Local MockConfigFile loader returns ``None``. We load the file ourselves into
  the shapes moto's own ``_mock_test_case_from_raw`` expects and attach the test case selected
  with ``stateMachineArn#TestCaseName`` (the Step Functions Local convention) to the execution.

A moto upgrade that moves any of these breaks this module and its tests only
(``tests/workflow/localcloud/test_moto_ext.py`` checks every patched attribute).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, cast

import botocore.session
from moto import mock_aws
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs import (  # noqa: E501
    StateTaskServiceEcs,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (  # noqa: E501
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.backend.execution import Execution
from moto.stepfunctions.parser.mocking import mock_config as moto_mock_config
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.parser.utils import camel_to_snake_case
from pydantic import BaseModel, ConfigDict, RootModel, model_validator

from tasks import statemachines

LOG = logging.getLogger(__name__)

#: The config that makes moto run state machines instead of only recording them.
EXECUTION_CONFIG: dict[str, Any] = {"stepfunctions": {"execute_state_machine": True}}

#: (function ARN or name, decoded payload) -> JSON-serialisable result. Raise to fail the task.
LambdaDispatcher = Callable[[str, dict[str, Any]], Any]
#: Runs one container with its overridden environment (ml-worker entrypoint semantics) and
#: returns its exit code (None counts as 0).
ContainerRunner = Callable[[Mapping[str, str]], int | None]
#: What a capacity check returns to simulate a Spot reclaim: the task starts, then stops with
#: this stop code before its container finishes.
SPOT_INTERRUPTION = "SpotInterruption"
#: Decides whether a launch fails for lack of capacity: returns an error name or None.
CapacityCheck = Callable[["EcsTaskLaunch"], str | None]

# Loggers of the interpreter that log every caught error (and its state data) at ERROR level.
_NOISY_LOGGERS = ("moto.stepfunctions.parser",)
# How long an in-process container waits for the Task state to listen for heartbeats.
_LISTEN_WAIT_SECONDS = 10.0


def execution_enabled_mock() -> Any:
    """A ``mock_aws`` that executes state machines (use as a context manager or decorator)."""
    return mock_aws(config=cast(Any, EXECUTION_CONFIG))


def silence_parser_logs(level: int = logging.CRITICAL) -> None:
    """The parser logs each Catch-handled error with the state's data; keep that out of logs."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)


# --------------------------------------------------------------------------- placeholders


def placeholders_in(definition: str) -> set[str]:
    """Names of the ``${...}`` placeholders that an ASL text still contains."""
    return statemachines.placeholders_in(definition)


def fill_placeholders(definition: str, substitutions: Mapping[str, str]) -> str:
    """Substitute ``${Name}`` like CDK ``definition_substitutions`` does; fail on leftovers."""
    return statemachines.fill_placeholders(definition, substitutions)


# --------------------------------------------------------------------------- lambda


@dataclass
class _Registry:
    """What the patched interpreter calls; swapped per LocalCloud, read by worker threads."""

    lambda_dispatcher: LambdaDispatcher | None = None
    container_runner: ContainerRunner | None = None
    capacity_check: CapacityCheck | None = None
    mock_config: Any = None  # _RawMockConfig once loaded
    containers: list[threading.Thread] = field(default_factory=list)
    # .sync tasks by ARN: what DescribeTasks would say once the task stopped.
    stopped_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)


_REGISTRY = _Registry()
_PENDING_TEST_CASE = threading.local()


class FunctionError(Exception):
    """An unhandled error as a Lambda runtime reports it (``errorType``), for dispatchers that
    run the function elsewhere (a subprocess) and so have no exception of that class."""

    def __init__(self, error_type: str, message: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type


def lambda_invocation_response(function_name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Invoke the dispatcher and shape the answer like the Lambda Invoke API does.

    botocore ``ClientError`` propagates unchanged: the interpreter maps it to ``Lambda.<Code>``
    (e.g. ``Lambda.TooManyRequestsException``), which is how throttling is simulated.
    """
    dispatcher = _REGISTRY.lambda_dispatcher
    if dispatcher is None:
        raise RuntimeError("no Lambda dispatcher installed (see moto_ext.install_lambda)")
    try:
        result = dispatcher(function_name, payload)
    except Exception as exc:
        if type(exc).__name__ == "ClientError":
            raise
        error_type = exc.error_type if isinstance(exc, FunctionError) else type(exc).__name__
        error_payload = {"errorType": error_type, "errorMessage": str(exc)}
        return {
            "StatusCode": 200,
            "FunctionError": "Unhandled",
            "ExecutedVersion": "$LATEST",
            "Payload": error_payload,
        }
    return {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": result}


def _dispatching_invoke(parameters: dict, region: str, state_credentials: Any) -> dict:
    raw_payload = parameters.get("Payload") or b"{}"
    payload = json.loads(raw_payload)
    return lambda_invocation_response(parameters["FunctionName"], payload)


# --------------------------------------------------------------------------- ecs


@dataclass(frozen=True)
class EcsTaskLaunch:
    """The parts of an ``ecs:runTask`` request that the local container cares about."""

    cluster: str
    task_definition: str
    capacity_provider: str | None
    container_name: str | None
    environment: dict[str, str]

    @classmethod
    def from_boto_parameters(cls, parameters: Mapping[str, Any]) -> EcsTaskLaunch:
        strategy = parameters.get("capacityProviderStrategy") or [{}]
        overrides = (parameters.get("overrides") or {}).get("containerOverrides") or [{}]
        container = overrides[0]
        environment = {item["name"]: item["value"] for item in container.get("environment", [])}
        return cls(
            cluster=parameters.get("cluster", "default"),
            task_definition=parameters["taskDefinition"],
            capacity_provider=strategy[0].get("capacityProvider"),
            container_name=container.get("name"),
            environment=environment,
        )


@cache
def _operation_model(service_name: str, snake_action: str) -> Any:
    service_model = botocore.session.get_session().get_service_model(service_name)
    for operation_name in service_model.operation_names:
        if camel_to_snake_case(operation_name) == snake_action:
            return service_model.operation_model(operation_name)
    raise KeyError(f"{service_name} has no operation {snake_action}")


def _boto_normalise_parameters(
    self: Any,
    parameters: dict,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    service = self._get_boto_service_name(boto_service_name=boto_service_name)
    action = self._get_boto_service_action(service_action_name=service_action_name)
    input_shape = _operation_model(service, action).input_shape
    if input_shape is not None:
        self._to_boto_request(parameters, input_shape)


def _boto_normalise_response(
    self: Any,
    response: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    service = self._get_boto_service_name(boto_service_name=boto_service_name)
    action = self._get_boto_service_action(service_action_name=service_action_name)
    output_shape = _operation_model(service, action).output_shape
    if output_shape is not None:
        self._from_boto_response(response, output_shape)


def _sfn_normalise_parameters(
    self: StateTaskServiceSfn,
    parameters: dict,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    # states:startExecution: the Input object becomes the JSON string the API takes (moto's
    # own step), then PascalCase parameters become botocore's names (moto stubs that step).
    if service_action_name is None and not isinstance(parameters.get("Input"), str):
        parameters["Input"] = json.dumps(parameters.get("Input") or {}, separators=(",", ":"))
    _boto_normalise_parameters(self, parameters, boto_service_name, service_action_name)


_ORIGINAL_ECS_SUPPORTED = StateTaskServiceEcs._get_supported_parameters


def _ecs_supported_parameters(self: StateTaskServiceEcs) -> set[str] | None:
    # moto drops CapacityProviderStrategy although the real integration accepts it.
    supported = _ORIGINAL_ECS_SUPPORTED(self)
    return None if supported is None else supported | {"CapacityProviderStrategy"}


def _capacity_failure(self: StateTaskServiceEcs, env: Any, error: str) -> FailureEventException:
    details = TaskFailedEventDetails(
        error=error,
        cause="capacity is unavailable for this launch (local simulation)",
        resource=self._get_sfn_resource(),
        resourceType=self._get_sfn_resource_type(),
    )
    return FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=CustomErrorName(error),
            event_type=HistoryEventType.TaskFailed,
            event_details=cast(EventDetails, {"taskFailedEventDetails": details}),
        )
    )


def _wait_until_listening(callback_endpoint: Any, expects_heartbeat: bool) -> None:
    # moto bug: a SendTaskSuccess that arrives before the state sets up its heartbeat endpoint is
    # stored but ignored, and the state then fails with States.HeartbeatTimeout. A real container
    # needs seconds to start, so waiting until the state listens is faithful, not a workaround.
    if not expects_heartbeat:
        return
    deadline = time.monotonic() + _LISTEN_WAIT_SECONDS
    while callback_endpoint._heartbeat_endpoint is None and time.monotonic() < deadline:
        time.sleep(0.005)


def _start_container(launch: EcsTaskLaunch, callback_endpoint: Any, heartbeat: bool) -> None:
    runner = _REGISTRY.container_runner
    if runner is None:
        raise RuntimeError("no container runner installed (see moto_ext.install_ecs)")

    def _run() -> None:
        _wait_until_listening(callback_endpoint, heartbeat)
        try:
            runner(launch.environment)
        except Exception as exc:  # a crashed container: the state times out, as in AWS
            LOG.warning("local container exited with %s", type(exc).__name__)

    thread = threading.Thread(target=_run, name="local-ecs-task", daemon=True)
    _REGISTRY.containers.append(thread)
    thread.start()


def _fake_run_task_response(launch: EcsTaskLaunch, region: str) -> dict[str, Any]:
    account = launch.cluster.split(":")[4] if launch.cluster.startswith("arn:") else "000000000000"
    cluster_name = launch.cluster.rsplit("/", 1)[-1]
    task_arn = f"arn:aws:ecs:{region}:{account}:task/{cluster_name}/{uuid.uuid4().hex}"
    task = {
        "taskArn": task_arn,
        "clusterArn": launch.cluster,
        "taskDefinitionArn": launch.task_definition,
        "lastStatus": "PROVISIONING",
        "desiredStatus": "RUNNING",
        "launchType": "FARGATE",
    }
    if launch.capacity_provider:
        task["capacityProviderName"] = launch.capacity_provider
    return {"tasks": [task], "failures": []}


_ORIGINAL_ECS_EVAL = StateTaskServiceEcs._eval_service_task


def _ecs_eval_service_task(
    self: StateTaskServiceEcs,
    env: Any,
    resource_runtime_part: Any,
    normalised_parameters: dict,
    state_credentials: Any,
) -> None:
    if self.resource.condition == ResourceCondition.Sync:
        _ecs_start_sync_task(self, env, resource_runtime_part, normalised_parameters)
        return
    if self.resource.condition != ResourceCondition.WaitForTaskToken:
        _ORIGINAL_ECS_EVAL(
            self, env, resource_runtime_part, normalised_parameters, state_credentials
        )
        return
    launch = EcsTaskLaunch.from_boto_parameters(normalised_parameters)
    check = _REGISTRY.capacity_check
    error = check(launch) if check is not None else None
    if error:
        raise _capacity_failure(self, env, error)
    token = env.states.context_object.context_object_data["Task"]["Token"]
    callback_endpoint = env.callback_pool_manager.get(token)
    _start_container(launch, callback_endpoint, heartbeat=self.heartbeat is not None)
    env.stack.append(_fake_run_task_response(launch, resource_runtime_part.region))


def _stopped_task(
    launch: EcsTaskLaunch, task: Mapping[str, Any], exit_code: int | None, stop_code: str
) -> dict[str, Any]:
    """A stopped task as the ``.sync`` integration returns it (DescribeTasks, PascalCase)."""
    container: dict[str, Any] = {"Name": launch.container_name, "LastStatus": "STOPPED"}
    if exit_code is not None:
        container["ExitCode"] = exit_code
    described = {
        "TaskArn": task["taskArn"],
        "ClusterArn": task["clusterArn"],
        "TaskDefinitionArn": task["taskDefinitionArn"],
        "LastStatus": "STOPPED",
        "DesiredStatus": "STOPPED",
        "StopCode": stop_code,
        "StoppedReason": (
            "Your Spot Task was interrupted."
            if stop_code == SPOT_INTERRUPTION
            else "Essential container in task exited"
        ),
        "Containers": [container],
    }
    if launch.capacity_provider:
        described["CapacityProviderName"] = launch.capacity_provider
    return described


def _ecs_start_sync_task(
    self: StateTaskServiceEcs, env: Any, resource_runtime_part: Any, parameters: dict
) -> None:
    """RunTask for ``.sync``: run the container in a thread and record how it stopped."""
    launch = EcsTaskLaunch.from_boto_parameters(parameters)
    check = _REGISTRY.capacity_check
    error = check(launch) if check is not None else None
    if error and error != SPOT_INTERRUPTION:
        raise _capacity_failure(self, env, error)
    task = _fake_run_task_response(launch, resource_runtime_part.region)["tasks"][0]
    arn = task["taskArn"]
    if error == SPOT_INTERRUPTION:
        # Reclaimed before the container finished: it never writes anything.
        _REGISTRY.stopped_tasks[arn] = _stopped_task(launch, task, None, SPOT_INTERRUPTION)
    else:
        runner = _REGISTRY.container_runner
        if runner is None:
            raise RuntimeError("no container runner installed (see moto_ext.install_ecs)")

        def _run() -> None:
            try:
                code = runner(launch.environment) or 0
            except Exception as exc:  # a crashed container exits non-zero, as in AWS
                LOG.warning("local container exited with %s", type(exc).__name__)
                code = 1
            _REGISTRY.stopped_tasks[arn] = _stopped_task(
                launch, task, code, "EssentialContainerExited"
            )

        thread = threading.Thread(target=_run, name="local-ecs-task", daemon=True)
        _REGISTRY.containers.append(thread)
        thread.start()
    # What moto's own evaluation leaves for the sync resolver: the normalised RunTask answer.
    env.stack.append({"Tasks": [{"TaskArn": arn, "ClusterArn": task["clusterArn"]}]})


def _ecs_build_sync_resolver(
    self: StateTaskServiceEcs,
    env: Any,
    resource_runtime_part: Any,
    normalised_parameters: dict,
    state_credentials: Any,
) -> Callable[[], Any]:
    submission = env.stack.pop()
    task_arn = submission["Tasks"][0]["TaskArn"]

    def _resolve() -> Any:
        described = _REGISTRY.stopped_tasks.get(task_arn)
        if described is None:
            return None
        exit_codes = [c.get("ExitCode") for c in described["Containers"]]
        if described["StopCode"] == SPOT_INTERRUPTION or any(code != 0 for code in exit_codes):
            # As in AWS: a task that stopped badly fails the state with States.TaskFailed and
            # the task description (ids, codes, no data) as the cause.
            raise FailureEventException(
                failure_event=FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=cast(
                        EventDetails,
                        {
                            "taskFailedEventDetails": TaskFailedEventDetails(
                                error=StatesErrorNameType.StatesTaskFailed.to_name(),
                                cause=json.dumps(described),
                                resource=self._get_sfn_resource(),
                                resourceType=self._get_sfn_resource_type(),
                            )
                        },
                    ),
                )
            )
        return described

    return _resolve


# --------------------------------------------------------------------------- mock config


class _RawReturn(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _RawThrow(BaseModel):
    model_config = ConfigDict(frozen=True)
    Error: str
    Cause: str = ""


class _RawResponse(BaseModel):
    model_config = ConfigDict(frozen=True)
    Return: _RawReturn | None = None
    Throw: _RawThrow | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> _RawResponse:
        if (self.Return is None) == (self.Throw is None):
            raise ValueError("a mocked response needs exactly one of Return or Throw")
        return self


class _RawTestCase(RootModel[dict[str, str]]):
    pass


class _RawStateMachine(BaseModel):
    TestCases: dict[str, _RawTestCase]


class _RawMockConfig(BaseModel):
    """The Step Functions Local MockConfigFile format (attributes as moto's loader reads them)."""

    StateMachines: dict[str, _RawStateMachine]
    MockedResponses: dict[str, dict[str, _RawResponse]]


def load_mock_config(source: Path | str | Mapping[str, Any]) -> _RawMockConfig:
    """Parse a MockConfigFile (path or already-decoded mapping)."""
    data = source if isinstance(source, Mapping) else json.loads(Path(source).read_text())
    return _RawMockConfig.model_validate(data)


def mock_test_case(state_machine_name: str, test_case_name: str) -> Any:
    """The moto ``MockTestCase`` for a test case of the installed mock config."""
    if _REGISTRY.mock_config is None:
        raise RuntimeError("no mock config installed (see moto_ext.install_mock_config)")
    return moto_mock_config._mock_test_case_from_raw(
        state_machine_name=state_machine_name,
        test_case_name=test_case_name,
        raw_mock_config=_REGISTRY.mock_config,
    )


_ORIGINAL_START_EXECUTION = StepFunctionsParserBackend.start_execution
_ORIGINAL_GET_WORKER = Execution._get_start_execution_worker


def _start_execution_with_test_case(
    self: StepFunctionsParserBackend,
    state_machine_arn: str,
    name: Any = None,
    execution_input: Any = None,
    trace_header: Any = None,
) -> Any:
    base_arn, _, test_case_name = state_machine_arn.partition("#")
    if not test_case_name:
        return _ORIGINAL_START_EXECUTION(
            self, state_machine_arn, name, execution_input, trace_header
        )
    state_machine_name = base_arn.rsplit(":", 1)[-1]
    # The worker is built synchronously inside start_execution on this thread; hand it the case.
    _PENDING_TEST_CASE.value = mock_test_case(state_machine_name, test_case_name)
    try:
        return _ORIGINAL_START_EXECUTION(self, base_arn, name, execution_input, trace_header)
    finally:
        _PENDING_TEST_CASE.value = None


def _worker_with_test_case(self: Execution) -> Any:
    worker = _ORIGINAL_GET_WORKER(self)
    test_case = getattr(_PENDING_TEST_CASE, "value", None)
    if test_case is not None:
        worker._mock_test_case = test_case  # type: ignore[misc]  # Final only by annotation
    return worker


# --------------------------------------------------------------------------- parsing

_PARSE_LOCK = threading.Lock()
_moto_parse = AmazonStateLanguageParser.parse


@lru_cache(maxsize=32)
def _syntax_tree(definition: str) -> Any:
    """The ANTLR tree of a definition, parsed once (a failed parse raises and is not kept)."""
    return _moto_parse(definition)[1]


def _serialized_parse(definition: str) -> tuple[Any, Any]:
    """moto parses the definition again for every execution, and two things in that are not
    safe to share:
    - its preprocessor keeps the query-language scope stack in a class attribute, so two
      executions starting at once corrupt each other's stack (an IndexError in an execution
      thread, and an execution left RUNNING for good: seen once in a burst of a thousand);
    - ANTLR's Python runtime fills a DFA cache that every parser of the grammar shares.
    So parses run one at a time. The ANTLR parse is 85-90% of the work (165 ms for the Express
    definition against 19 ms of preprocessing, measured here), and one at a time it bounded a
    burst: a quarter of a 45-message burst's samples sat in it. The tree is read-only, so it
    is parsed once per definition; each execution still gets evaluation components of its own
    from a fresh preprocessor."""
    with _PARSE_LOCK:
        tree = _syntax_tree(definition)
        return Preprocessor().visit(tree), tree


# --------------------------------------------------------------------------- install


_PATCHES: tuple[tuple[Any, str, Any], ...] = (
    (lambda_eval_utils, "_invoke_lambda_function", _dispatching_invoke),
    (StateTaskServiceEcs, "_normalise_parameters", _boto_normalise_parameters),
    (StateTaskServiceEcs, "_normalise_response", _boto_normalise_response),
    (StateTaskServiceSfn, "_normalise_parameters", _sfn_normalise_parameters),
    (StateTaskServiceSfn, "_normalise_response", _boto_normalise_response),
    (StateTaskServiceEcs, "_get_supported_parameters", _ecs_supported_parameters),
    (StateTaskServiceEcs, "_eval_service_task", _ecs_eval_service_task),
    (StateTaskServiceEcs, "_build_sync_resolver", _ecs_build_sync_resolver),
    (StepFunctionsParserBackend, "start_execution", _start_execution_with_test_case),
    (Execution, "_get_start_execution_worker", _worker_with_test_case),
    (AmazonStateLanguageParser, "parse", staticmethod(_serialized_parse)),
)


_ABSENT = object()


def patch_targets() -> tuple[tuple[Any, str], ...]:
    """(owner, attribute) pairs this module replaces; tests assert they still exist."""
    return tuple((owner, name) for owner, name, _ in _PATCHES)


@contextlib.contextmanager
def patched_interpreter(
    *,
    lambda_dispatcher: LambdaDispatcher,
    container_runner: ContainerRunner | None = None,
    capacity_check: CapacityCheck | None = None,
    mock_config: Path | str | Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """Install the dispatchers into moto's interpreter; restore moto on exit.

    Not re-entrant: the interpreter is process-global, so one local cloud at a time.
    """
    if _REGISTRY.lambda_dispatcher is not None:
        raise RuntimeError("moto interpreter already patched by another local cloud")
    # Some targets are inherited (absent from the owner's own __dict__): restore by deleting.
    originals = [(owner, name, vars(owner).get(name, _ABSENT)) for owner, name, _ in _PATCHES]
    for owner, name, replacement in _PATCHES:
        setattr(owner, name, replacement)
    _REGISTRY.lambda_dispatcher = lambda_dispatcher
    _REGISTRY.container_runner = container_runner
    _REGISTRY.capacity_check = capacity_check
    _REGISTRY.mock_config = load_mock_config(mock_config) if mock_config is not None else None
    try:
        yield
    finally:
        for owner, name, original in originals:
            if original is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        _REGISTRY.lambda_dispatcher = None
        _REGISTRY.container_runner = None
        _REGISTRY.capacity_check = None
        _REGISTRY.mock_config = None
        _REGISTRY.containers.clear()
        _REGISTRY.stopped_tasks.clear()
