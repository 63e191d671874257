"""The one Lambda function ("steps"): ``{"step": name, "input": {...}}`` -> the step's output.

Thin on purpose: parse the event, call the step, return its output model as a dict. A failing
step raises; the Lambda runtime reports the exception's class name as ``errorType``, which Step
Functions uses as the error name that Retry and Catch match.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks import observability
from tasks.db import deadline
from tasks.errors import DatabaseUnavailable, InvalidMessage
from tasks.runners.common import StepRunner, data_free_exception, error_name, registry_run_step

LOG = logging.getLogger(__name__)

VALIDATE_MESSAGE = "validate_message"


def parse_event(event: Any) -> tuple[str, dict[str, Any]]:
    """(step name, step input) of an invocation event; the shape is the contract, checked."""
    if not isinstance(event, dict):
        raise InvalidMessage("the invocation event is not an object")
    step, payload = event.get("step"), event.get("input", {})
    if not isinstance(step, str) or not step:
        raise InvalidMessage("the invocation event has no step name")
    if not isinstance(payload, dict):
        raise InvalidMessage(f"the input of step {step} is not an object")
    return step, _manual_message_unwrapped(step, payload)


def _manual_message_unwrapped(step: str, payload: dict[str, Any]) -> dict[str, Any]:
    # ValidateMessage passes the execution input as "records" because JSONPath cannot branch on
    # its shape without an extra (billed) state: the pipe sends a list of SQS records, a manual
    # StartExecution sends the message object itself. Hand the step the contract's two shapes.
    records = payload.get("records")
    if step == VALIDATE_MESSAGE and isinstance(records, dict):
        return records
    return payload


MIGRATIONS_RESOURCE_ID = "healthflow-database-migrations"


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff until a deadline. The migrations run on deploy, often after the
    database sat idle: Aurora Serverless v2 takes 15 s or more to resume from 0 ACU, so the
    first connections fail (DatabaseUnavailable) until it is up. A minute covers the resume with
    room to spare and stays far inside the custom resource's Lambda timeout."""

    first_delay: float = 2.0
    factor: float = 2.0
    max_delay: float = 16.0
    deadline_seconds: float = 60.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.first_delay * self.factor**attempt))


MIGRATION_BACKOFF = Backoff()


def retry_while_unavailable(
    call: Callable[[], dict[str, Any]],
    backoff: Backoff = MIGRATION_BACKOFF,
    *,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """`call()`, retried with backoff while it raises DatabaseUnavailable, until the deadline;
    then the last DatabaseUnavailable propagates. Every other error is final at once."""
    sleep, clock = sleep or time.sleep, clock or time.monotonic
    started = clock()
    attempt = 0
    while True:
        try:
            return call()
        except DatabaseUnavailable:
            remaining = backoff.deadline_seconds - (clock() - started)
            if remaining <= 0:
                raise
            delay = min(backoff.delay(attempt), remaining)
            LOG.warning("database unavailable (attempt %d); retrying in %.0f s", attempt + 1, delay)
            sleep(delay)
            attempt += 1


def _custom_resource(
    event: dict[str, Any], runner: StepRunner, backoff: Backoff = MIGRATION_BACKOFF
) -> dict[str, Any]:
    """The deploy's CloudFormation custom resource (CDK provider framework): run the step its
    properties name on Create and Update; Delete leaves the schema alone."""
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId", MIGRATIONS_RESOURCE_ID)}
    properties = event.get("ResourceProperties", {})
    step = properties.get("step")
    if step != "migrate":
        raise InvalidMessage("the custom resource names no known step")
    payload = dict(properties.get("input") or {})
    output = retry_while_unavailable(lambda: runner(step, payload), backoff)
    return {"PhysicalResourceId": MIGRATIONS_RESOURCE_ID, "Data": output}


def execution_context(event: Any, payload: dict[str, Any]) -> tuple[str | None, str | None]:
    """(execution name, state name) of an invocation: the state machine passes both
    (``$$.Execution.Name``, ``$$.State.Name``); a claim id is the execution name otherwise."""
    execution = event.get("execution") if isinstance(event, dict) else None
    state = event.get("state") if isinstance(event, dict) else None
    if not isinstance(execution, str):
        claim_id = payload.get("claim_id")
        execution = claim_id if isinstance(claim_id, str) else None
    return execution, state if isinstance(state, str) else None


_json_logging = False


def _configure_for_lambda() -> None:
    """In Lambda (not in the local cloud or tests): JSON logs, once per container."""
    global _json_logging
    from tasks.settings import get_settings

    if not _json_logging and get_settings().lambda_function_name:
        from tasks.redaction import install_data_free_hooks

        observability.configure_json_logging()
        install_data_free_hooks(root_log_handlers=False)  # stderr goes to the logs too
        _json_logging = True


def handler(event: Any, context: Any = None, *, run_step: StepRunner | None = None) -> Any:
    """Lambda entry point (``tasks.runners.lambda_handler.handler``)."""
    _configure_for_lambda()
    if isinstance(event, dict) and "RequestType" in event:
        with observability.step_context(None, "DatabaseMigrations", "migrate"):
            return _custom_resource(event, run_step or registry_run_step())
    step, payload = parse_event(event)
    execution, state = execution_context(event, payload)
    runner = run_step or registry_run_step()
    with (
        observability.step_context(execution, state, step),
        deadline.for_state(state, lambda_context=context),
    ):
        try:
            output = runner(step, payload)
        except Exception as exc:
            LOG.warning("step %s failed with %s", step, error_name(exc))
            raise data_free_exception(exc, step) from None
        counts = observability.business_counts(output)
        LOG.info("step %s succeeded", step, extra=counts)
        if _json_logging and _metrics_on():
            observability.emit_metrics(output, step)
    return output


def _metrics_on() -> bool:
    from tasks.settings import get_settings

    return get_settings().metrics
