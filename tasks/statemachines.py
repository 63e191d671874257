"""The two state machines as files, and the ONE list of the placeholders they may use.

``statemachines/healthflow.asl.json`` is the Express parent (one execution per trigger message);
``statemachines/labs.asl.json`` is the Standard labs child it starts. Resource ARNs and network
ids are ``${Name}`` placeholders, always inside JSON strings. CDK fills them with
``definition_substitutions`` and the local cloud with :func:`fill_placeholders`, both from
:data:`PLACEHOLDERS`, so the ASL, the stack and the local cloud cannot disagree on a name.
:func:`task_resources` lists what each Task state calls; the CDK app derives the state machine
roles' grants from it and fails the synth on a resource it has no grant for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATEMACHINES_DIR = Path(__file__).resolve().parents[1] / "statemachines"
EXPRESS_ASL = STATEMACHINES_DIR / "healthflow.asl.json"
LABS_ASL = STATEMACHINES_DIR / "labs.asl.json"
SWEEP_ASL = STATEMACHINES_DIR / "sweep.asl.json"

#: Every placeholder an ASL file may use, with what fills it.
PLACEHOLDERS: Mapping[str, str] = {
    "StepsFunctionArn": "ARN of the steps Lambda (every lambda:invoke Task)",
    "LabsStateMachineArn": "ARN of the Standard labs state machine (parent's startExecution)",
    "ClusterArn": "ARN of the ECS cluster the ml-worker runs in",
    "MlWorkerTaskDefinitionArn": "ARN of the ml-worker task definition",
    "MlWorkerContainerName": "name of the ml-worker container (for the overrides)",
    "MlWorkerSubnet1": "first subnet of the ml-worker tasks",
    "MlWorkerSubnet2": "second subnet of the ml-worker tasks",
    "MlWorkerSecurityGroupId": "security group of the ml-worker tasks (no ingress)",
    "MlWorkerAssignPublicIp": "ENABLED in public subnets (default), DISABLED behind NAT/endpoints",
    "DeadLetterQueueUrl": "URL of the dead-letter queue (SendToDeadLetterQueue)",
    "TriggerQueueUrl": "URL of the trigger queue (Continue*Backlog re-queues a large backlog)",
}

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def placeholders_in(definition: str) -> set[str]:
    """Names of the ``${Name}`` placeholders an ASL text contains."""
    return set(_PLACEHOLDER.findall(definition))


def check_placeholders(definition: str, source: str = "ASL") -> None:
    """Fail on a placeholder that is not in :data:`PLACEHOLDERS` (it would never be filled)."""
    unknown = placeholders_in(definition) - set(PLACEHOLDERS)
    if unknown:
        raise ValueError(f"{source} uses unknown placeholders: {sorted(unknown)}")


def fill_placeholders(definition: str, substitutions: Mapping[str, str]) -> str:
    """Substitute ``${Name}`` as CDK ``definition_substitutions`` does; fail on leftovers."""
    missing = placeholders_in(definition) - set(substitutions)
    if missing:
        raise KeyError(f"no substitution for placeholders: {sorted(missing)}")
    # Values are JSON-escaped because placeholders only ever appear inside JSON strings.
    return _PLACEHOLDER.sub(lambda m: json.dumps(substitutions[m.group(1)])[1:-1], definition)


@dataclass(frozen=True)
class TaskResource:
    """One Task state's integration: ``arn:aws:states:::ecs:runTask.sync`` and its target."""

    state: str
    resource: str
    # The placeholder naming what the Task acts on (FunctionName, StateMachineArn, ...).
    target: str | None

    @property
    def service_action(self) -> str:
        """``lambda:invoke``, ``ecs:runTask.sync``, ``states:startExecution``, ..."""
        return self.resource.removeprefix("arn:aws:states:::")


_TARGET_PARAMETER = {
    "lambda:invoke": "FunctionName",
    "ecs:runTask.sync": "TaskDefinition",
    "ecs:runTask": "TaskDefinition",
    "states:startExecution": "StateMachineArn",
    "sqs:sendMessage": "QueueUrl",
}


def iter_states(states: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every state with its name, Map/Parallel branches included."""
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from iter_states(branch["States"])
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from iter_states(processor["States"])


def task_resources(definition: Mapping[str, Any]) -> list[TaskResource]:
    """Every Task state of a definition (Map/Parallel branches included)."""
    found: list[TaskResource] = []
    for name, state in iter_states(definition["States"]):
        if state.get("Type") == "Task":
            resource = str(state["Resource"])
            action = resource.removeprefix("arn:aws:states:::")
            parameter = _TARGET_PARAMETER.get(action)
            value = (state.get("Parameters") or {}).get(parameter) if parameter else None
            target = None
            if isinstance(value, str):
                names = placeholders_in(value)
                target = next(iter(names)) if len(names) == 1 else None
            found.append(TaskResource(name, resource, target))
    return found


def load_definition(path: Path) -> str:
    """The ASL text, checked for unknown placeholders."""
    text = path.read_text(encoding="utf-8")
    check_placeholders(text, str(path.name))
    return text


def state_timeouts() -> dict[str, int]:
    """TimeoutSeconds of every Task state of the state machines, by state name (the names
    are shared where two machines have the same state, with the same timeout). Empty where
    the ASL files are not shipped."""
    timeouts: dict[str, int] = {}
    for path in (EXPRESS_ASL, LABS_ASL, SWEEP_ASL):
        if not path.exists():
            continue
        definition = json.loads(path.read_text(encoding="utf-8"))
        for name, state in iter_states(definition["States"]):
            seconds = state.get("TimeoutSeconds")
            if state.get("Type") == "Task" and isinstance(seconds, int):
                timeouts[name] = min(seconds, timeouts.get(name, seconds))
    return timeouts


__all__ = [
    "EXPRESS_ASL",
    "LABS_ASL",
    "PLACEHOLDERS",
    "SWEEP_ASL",
    "TaskResource",
    "check_placeholders",
    "fill_placeholders",
    "iter_states",
    "load_definition",
    "placeholders_in",
    "state_timeouts",
    "task_resources",
]
