"""What the Lambda and the ECS runner share: the step-runner type and data-free errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.errors import HealthflowError

#: ``run_step(name, payload) -> output``; raises a named exception on failure.
StepRunner = Callable[[str, dict[str, Any]], dict[str, Any]]

# Step Functions limits: error names to 256 characters; causes we keep short on purpose.
_MAX_ERROR = 256
_MAX_CAUSE = 256


def registry_run_step() -> StepRunner:
    """The real step registry, imported late so runners load without the database stack."""
    from tasks.steps.registry import run_step

    return run_step


def error_name(exc: BaseException) -> str:
    """The Step Functions error name of an exception: its class name (Catch matches on it)."""
    return type(exc).__name__[:_MAX_ERROR]


def data_free_cause(exc: BaseException, step: str) -> str:
    """A cause safe for execution history, logs and the DLQ.

    healthflow's own errors promise messages with ids and counts only, so they are kept; any
    other exception (a driver error quoting SQL parameters, a validation error quoting input)
    could carry health data and is reduced to its name.
    """
    if isinstance(exc, HealthflowError) and str(exc):
        return str(exc)[:_MAX_CAUSE]
    return f"step {step} failed with {error_name(exc)}"[:_MAX_CAUSE]


def data_free_exception(exc: Exception, step: str) -> Exception:
    """An exception with the same class name (so the error name is unchanged) and a safe message."""
    if isinstance(exc, HealthflowError):
        return exc
    renamed = type(error_name(exc), (Exception,), {"__module__": __name__})
    return renamed(data_free_cause(exc, step))
