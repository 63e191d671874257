"""Executions as the console shows them, read from the records `healthflow run` keeps
(:class:`tasks.workflow.LocalStore`) or from a live local cloud.

A record is the parent (Express) execution with, under ``child``, the labs (Standard) execution
it started; the console lists both, each under its machine. Everything here is read from the
history: ids, counts, state and error names, never health data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from tasks.steps.models import DOMAIN_OF_JOB
from tasks.workflow import trace_steps

Machine = Literal["express", "labs"]
MACHINES: tuple[Machine, ...] = ("express", "labs")
# How a state of the graph is coloured (the page's legend names them).
StateStatus = Literal["succeeded", "failed", "caught", "running", "not-reached"]


@dataclass(frozen=True)
class StateRun:
    """One state as the execution went through it."""

    name: str
    status: StateStatus
    started: float  # seconds since the execution started
    duration: float | None
    error: str | None
    input: Any = None
    output: Any = None


@dataclass(frozen=True)
class ExecutionSummary:
    """One row of the executions list."""

    machine: Machine
    name: str
    status: str
    started_at: str | None
    duration: float | None
    domain: str | None
    user_id: int | None
    error: str | None
    caught: str | None = None  # the first error a Catch handled, and where
    child: str | None = None  # the labs execution a parent started (same name, other machine)
    parent: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ExecutionView:
    """One execution: its row, the states it went through, the edges it took, its events."""

    summary: ExecutionSummary
    states: list[StateRun]
    transitions: list[tuple[str, str]]
    events: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary.as_json(),
            "states": [asdict(state) for state in self.states],
            "transitions": [list(edge) for edge in self.transitions],
            "events": self.events,
        }

    def state_status(self) -> dict[str, StateStatus]:
        return {state.name: state.status for state in self.states}


def _decoded(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _details(event: Mapping[str, Any]) -> Mapping[str, Any]:
    return next((v for k, v in event.items() if k.endswith("EventDetails")), {})


def _when(event: Mapping[str, Any]) -> datetime:
    value = event["timestamp"]
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def trigger_of(events: Sequence[Mapping[str, Any]]) -> tuple[str | None, int | None]:
    """The domain and user an execution works for, from its input: the pipe's one-record array,
    a manual message, or the labs child's ``{"trigger": ...}``."""
    started = next((e for e in events if "executionStartedEventDetails" in e), None)
    payload = _decoded(started["executionStartedEventDetails"].get("input")) if started else None
    if isinstance(payload, list) and payload and isinstance(payload[0], Mapping):
        payload = _decoded(payload[0].get("body"))
    if isinstance(payload, Mapping) and isinstance(payload.get("trigger"), Mapping):
        payload = payload["trigger"]
    if not isinstance(payload, Mapping):
        return None, None
    user = payload.get("user_id")
    domain = DOMAIN_OF_JOB.get(str(payload.get("job_type")))
    return domain, user if isinstance(user, int) and not isinstance(user, bool) else None


def _execution_error(events: Sequence[Mapping[str, Any]]) -> str | None:
    failed = next((e for e in events if e["type"] in _EXECUTION_ENDS_BADLY), None)
    return str(_details(failed).get("error") or failed["type"]) if failed else None


_EXECUTION_ENDS_BADLY = frozenset({"ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"})


def _first_caught(events: Sequence[Mapping[str, Any]], status: str) -> str | None:
    caught = next((run for run in state_runs(events, status) if run.status == "caught"), None)
    return f"{caught.error} in {caught.name}" if caught else None


def summarize(
    machine: Machine,
    name: str,
    status: str,
    events: Sequence[Mapping[str, Any]],
    *,
    child: str | None = None,
    parent: str | None = None,
) -> ExecutionSummary:
    domain, user_id = trigger_of(events)
    started = _when(events[0]) if events else None
    duration = None
    if events and status != "RUNNING":
        duration = (_when(events[-1]) - _when(events[0])).total_seconds()
    return ExecutionSummary(
        machine=machine,
        name=name,
        status=status,
        started_at=started.isoformat() if started else None,
        duration=duration,
        domain=domain,
        user_id=user_id,
        error=_execution_error(events),
        caught=_first_caught(events, status),
        child=child,
        parent=parent,
    )


def state_runs(events: Sequence[Mapping[str, Any]], execution_status: str) -> list[StateRun]:
    """Each state the history entered, coloured as the console colours it: an error the state
    exited from was caught; one it never exited from failed it; a Fail state failed."""
    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    fail_states: set[str] = set()
    for event in events:
        if "stateEnteredEventDetails" in event:
            details = event["stateEnteredEventDetails"]
            inputs[details["name"]] = _decoded(details.get("input"))
            if event["type"] == "FailStateEntered":
                fail_states.add(details["name"])
        elif "stateExitedEventDetails" in event:
            details = event["stateExitedEventDetails"]
            outputs[details["name"]] = _decoded(details.get("output"))
    runs = []
    for step in trace_steps(events):
        error: str | None = None
        status: StateStatus
        if step.outcome == "ok":
            status = "succeeded"
        elif step.outcome.startswith("caught "):
            status, error = "caught", step.outcome.removeprefix("caught ")
        elif step.outcome == "running" and step.state not in fail_states:
            status = "running" if execution_status == "RUNNING" else "failed"
        else:
            status = "failed"
            error = step.outcome if step.outcome != "running" else None
        runs.append(
            StateRun(
                name=step.state,
                status=status,
                started=round(step.started, 6),
                duration=None if step.duration is None else round(step.duration, 6),
                error=error,
                input=inputs.get(step.state),
                output=outputs.get(step.state),
            )
        )
    return runs


def transitions(events: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The edges the execution took: each state entered after the one before it."""
    taken: list[tuple[str, str]] = []
    previous: str | None = None
    for event in events:
        if "stateEnteredEventDetails" in event:
            name = event["stateEnteredEventDetails"]["name"]
            if previous is not None and (previous, name) not in taken:
                taken.append((previous, name))
            previous = name
    return taken


def timeline(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The event history as rows: offset, type, state or error name."""
    if not events:
        return []
    origin = _when(events[0])
    rows = []
    for number, event in enumerate(events, start=1):
        details = _details(event)
        rows.append(
            {
                "id": number,
                "offset": round((_when(event) - origin).total_seconds(), 6),
                "type": event["type"],
                "state": details.get("name"),
                "error": details.get("error"),
            }
        )
    return rows


def view(summary: ExecutionSummary, events: Sequence[Mapping[str, Any]]) -> ExecutionView:
    return ExecutionView(
        summary=summary,
        states=state_runs(events, summary.status),
        transitions=transitions(events),
        events=timeline(events),
    )


def from_record(record: Mapping[str, Any]) -> dict[Machine, tuple[ExecutionSummary, list[Any]]]:
    """The executions in one stored record: the parent and, when it started one, its labs child.

    A record whose only execution is a labs one (the labs machine started directly) has no
    parent; the store keeps it under ``name`` like any other."""
    name = str(record["name"])
    events = list(record.get("events", []))
    child = record.get("child")
    found: dict[Machine, tuple[ExecutionSummary, list[Any]]] = {}
    found["express"] = (
        summarize("express", name, str(record["status"]), events,
                  child=str(child["name"]) if child else None),
        events,
    )  # fmt: skip
    if child:
        child_events = list(child.get("events", []))
        found["labs"] = (
            summarize("labs", str(child["name"]), str(child["status"]), child_events,
                      parent=name),
            child_events,
        )  # fmt: skip
    return found


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    domain: str | None = None
    user_id: int | None = None

    def keep(self, summary: ExecutionSummary) -> bool:
        return (
            (self.status is None or summary.status == self.status)
            and (self.domain is None or summary.domain == self.domain)
            and (self.user_id is None or summary.user_id == self.user_id)
        )


def newest_first(summaries: Iterable[ExecutionSummary]) -> list[ExecutionSummary]:
    return sorted(summaries, key=lambda s: (s.started_at or "", s.machine), reverse=True)
