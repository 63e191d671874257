"""The ml-worker container entry point: ``python -m tasks.runners.ecs``.

Step Functions starts the task with ``ecs:runTask.waitForTaskToken`` and three environment
overrides: ``HEALTHFLOW_STEP``, ``HEALTHFLOW_STEP_INPUT`` (JSON) and ``HEALTHFLOW_TASK_TOKEN``.
The container heartbeats while the step runs, then answers with SendTaskSuccess (the step's output)
or SendTaskFailure (the exception's class name and a data-free cause). SIGTERM, which is how
Fargate Spot announces an interruption, answers SendTaskFailure ``SpotInterrupted`` so the state
machine can fall back to on-demand capacity without waiting for a heartbeat timeout.

The only place that reads the process environment is :func:`main`; everything else takes the
environment mapping and a :class:`WorkerConfig`, so the local cloud runs the same code in-process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

import boto3

from tasks import observability
from tasks.db import deadline
from tasks.runners.common import StepRunner, data_free_cause, error_name, registry_run_step

LOG = logging.getLogger(__name__)

STEP_VARIABLE = "HEALTHFLOW_STEP"
INPUT_VARIABLE = "HEALTHFLOW_STEP_INPUT"
TOKEN_VARIABLE = "HEALTHFLOW_TASK_TOKEN"
EXECUTION_VARIABLE = "HEALTHFLOW_EXECUTION"
STATE_VARIABLE = "HEALTHFLOW_STATE"
SPOT_INTERRUPTED = "SpotInterrupted"
INVALID_STEP_INPUT = "InvalidStepInput"

EXIT_OK = 0
EXIT_STEP_FAILED = 1
EXIT_NO_TOKEN = 2
EXIT_SIGTERM = 143
EXIT_DEADLINE = 124  # as timeout(1) says it

#: Seconds the container may run its step. The state's TimeoutSeconds fails the state; this makes
#: sure the task itself ends too, whatever Step Functions does about it, so no task outlives its
#: state and keeps billing or holding a claim. Keep it at or below the state's TimeoutSeconds.
DEADLINE_VARIABLE = "HEALTHFLOW_STEP_DEADLINE_SECONDS"
DEFAULT_DEADLINE_SECONDS = 1800.0


@dataclass(frozen=True)
class WorkerConfig:
    """Where the container reports, and how often it heartbeats."""

    region: str | None = None
    endpoint_url: str | None = None
    heartbeat_seconds: float = 30.0

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> WorkerConfig:
        heartbeat = env.get("HEALTHFLOW_HEARTBEAT_SECONDS")
        return cls(
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            # Step Functions Local or a moto server; unset in AWS.
            endpoint_url=env.get("HEALTHFLOW_SFN_ENDPOINT_URL") or None,
            heartbeat_seconds=float(heartbeat) if heartbeat else cls.heartbeat_seconds,
        )

    def stepfunctions_client(self) -> Any:
        return boto3.client(
            "stepfunctions", region_name=self.region, endpoint_url=self.endpoint_url
        )


@dataclass(frozen=True)
class ContainerStep:
    """The step a container was started for, decoded from its environment overrides."""

    step: str
    payload: dict[str, Any]


class StepInputError(ValueError):
    """The overrides do not describe a step (a state machine bug, not a data problem)."""


def step_from_environment(env: Mapping[str, str]) -> ContainerStep:
    step = env.get(STEP_VARIABLE, "")
    if not step:
        raise StepInputError(f"{STEP_VARIABLE} is not set")
    try:
        payload = json.loads(env.get(INPUT_VARIABLE) or "{}")
    except json.JSONDecodeError as exc:
        raise StepInputError(f"{INPUT_VARIABLE} is not JSON") from exc
    if not isinstance(payload, dict):
        raise StepInputError(f"{INPUT_VARIABLE} is not a JSON object")
    return ContainerStep(step=step, payload=payload)


class TaskReporter:
    """Sends the task's single outcome (first one wins) and its heartbeats."""

    def __init__(self, client: Any, task_token: str) -> None:
        self._client = client
        self._token = task_token
        self._lock = threading.Lock()
        self._reported = False

    @property
    def reported(self) -> bool:
        return self._reported

    def succeed(self, output: Any) -> bool:
        return self._report_once(
            lambda: self._client.send_task_success(taskToken=self._token, output=json.dumps(output))
        )

    def fail(self, error: str, cause: str) -> bool:
        return self._report_once(
            lambda: self._client.send_task_failure(taskToken=self._token, error=error, cause=cause)
        )

    def heartbeat(self) -> None:
        try:
            self._client.send_task_heartbeat(taskToken=self._token)
        except Exception as exc:  # a missed heartbeat is not fatal; the next one may land
            LOG.warning("heartbeat failed with %s", error_name(exc))

    def _report_once(self, send: Any) -> bool:
        with self._lock:
            if self._reported:
                return False
            self._reported = True
        send()
        return True


class Heartbeat:
    """A daemon thread that heartbeats every ``interval`` seconds until stopped."""

    def __init__(self, reporter: TaskReporter, interval: float) -> None:
        self._reporter = reporter
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="task-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._interval + 1)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            self._reporter.heartbeat()


@contextlib.contextmanager
def sigterm_reports_interruption(reporter: TaskReporter, step: str) -> Iterator[None]:
    """While the step runs, SIGTERM (Spot reclaim) reports ``SpotInterrupted`` and exits."""
    # Signal handlers can only be set from the main thread; the local cloud runs this code in a
    # worker thread, where a Spot interruption cannot happen anyway.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _on_sigterm(signum: int, frame: FrameType | None) -> None:
        LOG.warning("SIGTERM during step %s: reporting %s", step, SPOT_INTERRUPTED)
        reporter.fail(SPOT_INTERRUPTED, f"step {step} interrupted by SIGTERM (Spot reclaim)")
        raise SystemExit(EXIT_SIGTERM)

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_step_and_report(
    container_step: ContainerStep,
    reporter: TaskReporter,
    run_step: StepRunner,
    heartbeat_seconds: float,
) -> int:
    """Run the step under heartbeats and report its outcome; returns the process exit code."""
    step = container_step.step
    with sigterm_reports_interruption(reporter, step), Heartbeat(reporter, heartbeat_seconds):
        try:
            output = run_step(step, container_step.payload)
        except Exception as exc:
            LOG.warning("step %s failed with %s", step, error_name(exc))
            reporter.fail(error_name(exc), data_free_cause(exc, step))
            return EXIT_STEP_FAILED
    reporter.succeed(output)
    LOG.info("step %s succeeded", step)
    return EXIT_OK


def run_for_exit_code(env: Mapping[str, str], run_step: StepRunner, metrics: bool = False) -> int:
    """``ecs:runTask.sync``: run the step and say how it went by the exit code only.

    Step Functions waits for the task to stop and fails the state (``States.TaskFailed``) on a
    non-zero exit; the container calls no AWS API, so it needs no endpoint, token or role grant.
    """
    try:
        container_step = step_from_environment(env)
    except StepInputError as exc:
        LOG.error("%s: %s", INVALID_STEP_INPUT, exc)
        return EXIT_STEP_FAILED
    runner = _with_metrics(run_step) if metrics else run_step
    claim_id = container_step.payload.get("claim_id")
    execution = env.get(EXECUTION_VARIABLE) or (claim_id if isinstance(claim_id, str) else None)
    step = container_step.step
    state = env.get(STATE_VARIABLE)
    with (
        observability.step_context(execution, state, step),
        deadline.for_state(state, seconds=deadline_seconds(env)),
    ):
        try:
            runner(step, container_step.payload)
        except Exception as exc:
            LOG.warning("step %s failed with %s", step, error_name(exc))
            return EXIT_STEP_FAILED
        LOG.info("step %s succeeded", step)
    return EXIT_OK


def run_from_environment(
    env: Mapping[str, str],
    *,
    run_step: StepRunner | None = None,
    config: WorkerConfig | None = None,
    client: Any = None,
    metrics: bool = False,
) -> int:
    """Run the step described by ``env`` (the container's environment); returns the exit code.

    Log lines carry the execution (``HEALTHFLOW_EXECUTION``, else the claim id) and the state
    (``HEALTHFLOW_STATE``) that the state machine passes; `metrics` prints EMF counts.
    Without ``HEALTHFLOW_TASK_TOKEN`` (the workflow's ``.sync`` launch) the exit code is the only
    report; with one (``.waitForTaskToken``, kept for Step Functions Local) it also answers
    SendTaskSuccess/SendTaskFailure.
    """
    token = env.get(TOKEN_VARIABLE, "")
    if not token:
        return run_for_exit_code(env, run_step or registry_run_step(), metrics)
    config = config or WorkerConfig.from_environment(env)
    reporter = TaskReporter(client or config.stepfunctions_client(), token)
    try:
        container_step = step_from_environment(env)
    except StepInputError as exc:
        reporter.fail(INVALID_STEP_INPUT, str(exc))
        return EXIT_STEP_FAILED
    runner = run_step or registry_run_step()
    if metrics:
        runner = _with_metrics(runner)
    claim_id = container_step.payload.get("claim_id")
    execution = env.get(EXECUTION_VARIABLE) or (claim_id if isinstance(claim_id, str) else None)
    state = env.get(STATE_VARIABLE)
    with (
        observability.step_context(execution, state, container_step.step),
        deadline.for_state(state, seconds=deadline_seconds(env)),
    ):
        return run_step_and_report(container_step, reporter, runner, config.heartbeat_seconds)


def _with_metrics(runner: StepRunner) -> StepRunner:
    def run(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        output = runner(step, payload)
        observability.emit_metrics(output, step)
        return output

    return run


class Watchdog:
    """Calls `on_expire` once `seconds` have passed, unless the block ended first."""

    def __init__(self, seconds: float | None, on_expire: Any) -> None:
        self._timer = threading.Timer(seconds, on_expire) if seconds else None
        if self._timer is not None:
            self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        if self._timer is not None:
            self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.cancel()


def deadline_seconds(env: Mapping[str, str]) -> float | None:
    """The step's deadline from the environment; "0" switches it off."""
    value = env.get(DEADLINE_VARIABLE)
    seconds = float(value) if value else DEFAULT_DEADLINE_SECONDS
    return seconds if seconds > 0 else None


def _exit_at_deadline() -> None:
    LOG.error("step outlived its deadline; stopping the task (exit %d)", EXIT_DEADLINE)
    logging.shutdown()
    os._exit(EXIT_DEADLINE)  # the step's thread cannot be interrupted: end the process


def main() -> int:
    from tasks.redaction import install_data_free_hooks
    from tasks.settings import get_settings

    observability.configure_json_logging()
    install_data_free_hooks(root_log_handlers=False)  # what psycopg2 prints goes to the logs
    with Watchdog(deadline_seconds(os.environ), _exit_at_deadline):
        return run_from_environment(os.environ, metrics=get_settings().metrics)


if __name__ == "__main__":
    sys.exit(main())
