"""Steps registered by name; `run_step` is what every runner calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tasks.errors import HealthflowError, UnknownStep

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)


class InvalidStepInput(HealthflowError):
    """A step's input does not match its model (a state machine wiring error)."""


@dataclass(frozen=True)
class Step:
    name: str
    input_model: type[BaseModel]
    func: Callable[[Any], BaseModel]


STEPS: dict[str, Step] = {}


def step(name: str, input_model: type[In]) -> Callable[[Callable[[In], Out]], Callable[[In], Out]]:
    def register(func: Callable[[In], Out]) -> Callable[[In], Out]:
        if name in STEPS:
            raise ValueError(f"step {name!r} registered twice")
        STEPS[name] = Step(name, input_model, func)
        return func

    return register


def _load_steps() -> None:
    # Importing the modules registers their steps.
    from tasks.steps import definitions  # noqa: F401


def run_step(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Parse `payload` with the step's input model, run it, return its output as JSON data."""
    _load_steps()
    try:
        registered = STEPS[name]
    except KeyError:
        raise UnknownStep(f"no step named {name!r}") from None
    try:
        parsed = registered.input_model.model_validate(payload)
    except ValidationError as error:
        fields = sorted({".".join(map(str, e["loc"])) for e in error.errors()})
        raise InvalidStepInput(f"{name}: invalid input fields {fields}") from None
    return registered.func(parsed).model_dump(mode="json", by_alias=True)
