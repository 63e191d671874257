"""Operator views of the workflow: traces from execution history, the Mermaid graph of the ASL,
the cost model, and the local cloud's persisted state (queue spool, histories, dead letters)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.errors import ExecutionNotFound

# ---------------------------------------------------------------------------- traces


@dataclass(frozen=True)
class TraceStep:
    state: str
    started: float  # seconds since the execution started
    duration: float | None
    outcome: str  # "ok", an error name, or "running"


def _timestamp(event: Mapping[str, Any]) -> float:
    value = event["timestamp"]
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return float(value.timestamp())


def trace_steps(events: Sequence[Mapping[str, Any]]) -> list[TraceStep]:
    """State-by-state timeline, like the console's graph view, from execution history events."""
    if not events:
        return []
    origin = _timestamp(events[0])
    open_states: dict[str, tuple[float, str | None]] = {}
    steps: list[TraceStep] = []
    last_error: str | None = None
    for event in events:
        kind = event["type"]
        if "stateEnteredEventDetails" in event:
            open_states[event["stateEnteredEventDetails"]["name"]] = (_timestamp(event), None)
            last_error = None
        elif kind.endswith("Failed") or kind.endswith("TimedOut"):
            details: Mapping[str, Any] = next(
                (v for k, v in event.items() if k.endswith("EventDetails")), {}
            )
            last_error = details.get("error") or kind
        elif "stateExitedEventDetails" in event:
            name = event["stateExitedEventDetails"]["name"]
            started, _ = open_states.pop(name, (_timestamp(event), None))
            outcome = "ok" if last_error is None else f"caught {last_error}"
            steps.append(TraceStep(name, started - origin, _timestamp(event) - started, outcome))
            last_error = None
    for name, (started, _) in open_states.items():
        outcome = last_error or "running"
        steps.append(TraceStep(name, started - origin, None, outcome))
    return sorted(steps, key=lambda s: s.started)


def execution_subject(events: Sequence[Mapping[str, Any]]) -> str | None:
    """`vitals, user 5`: the domain and user an execution was for, from its input (the pipe's
    one-record array or a trigger given directly); None when the input names neither."""
    for event in events:
        details = event.get("executionStartedEventDetails")
        if not isinstance(details, Mapping):
            continue
        try:
            given = json.loads(details.get("input") or "null")
            if isinstance(given, list) and given and isinstance(given[0], Mapping):
                given = json.loads(given[0].get("body") or "null")
        except (json.JSONDecodeError, TypeError):
            return None
        if not isinstance(given, Mapping):
            return None
        job, user = given.get("job_type"), given.get("user_id")
        domain = job.removeprefix("process_pending_") if isinstance(job, str) else None
        if domain in ("labs", "vitals", "nutrition") and type(user) is int:
            return f"{domain}, user {user}"
        return None
    return None


def format_trace(
    name: str,
    status: str,
    events: Sequence[Mapping[str, Any]],
    child: Mapping[str, Any] | None = None,
    subject: str | None = None,
) -> list[str]:
    """The timeline of an execution and, after it, of the labs execution it started."""
    subject = subject or execution_subject(events)
    title = f"execution {name}" + (f" ({subject})" if subject else "")
    lines = _trace_lines(title, status, events)
    if child:
        lines += [
            "  " + line
            for line in _trace_lines(
                f"labs workflow (Standard) {child['name']}", child["status"], child["events"]
            )
        ]
    return lines


def _trace_lines(title: str, status: str, events: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [f"{title}: {status}"]
    for step in trace_steps(events):
        took = f"{step.duration * 1000:8.0f} ms" if step.duration is not None else "        --"
        lines.append(f"  +{step.started:7.3f}s  {step.state:<28} {took}  {step.outcome}")
    failure = next(
        (
            e.get("executionFailedEventDetails")
            for e in events
            if "executionFailedEventDetails" in e
        ),
        None,
    )
    if failure:
        lines.append(f"  failed: {failure.get('error')}")
    return lines


# State input and output carry ids and counts only (the workflow's contract), so the store may
# keep them for `healthflow console`; the cap keeps a record small whatever a state returns.
_MAX_KEPT_PAYLOAD = 4000


def slim_history(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the local store keeps of a history: types, times, state and error names, and the
    input and output of states (ids and counts) up to a size cap. The execution's own input is
    what a backend sent, which an invalid message may fill with anything: it is kept as the
    trigger it carries once validated (:func:`kept_input`), wherever it appears."""
    kept = []
    raw_input: str | None = None
    first_state = True
    for event in events:
        slim: dict[str, Any] = {"type": event["type"], "timestamp": _iso(event["timestamp"])}
        for key, details in event.items():
            if not (key.endswith("EventDetails") and isinstance(details, Mapping)):
                continue
            slim[key] = {k: details[k] for k in ("name", "error") if k in details}
            for payload in ("input", "output"):
                value = details.get(payload)
                if not isinstance(value, str):
                    continue
                if key == "executionStartedEventDetails":
                    raw_input, value = value, kept_input(value)
                elif value == raw_input or (key == "stateEnteredEventDetails" and first_state):
                    value = kept_input(value)
                if len(value) <= _MAX_KEPT_PAYLOAD:
                    slim[key][payload] = value
            if key == "stateEnteredEventDetails":
                first_state = False
        kept.append(slim)
    return kept


def kept_input(text: str) -> str:
    """An execution's input as the local store keeps it: ``{"trigger": ..., "records": n}``
    with the trigger validated against the message contract (null when invalid), never the body
    itself. The labs child's input is kept whole: its parent built it from a validated message."""
    from pydantic import ValidationError

    from tasks.steps.models import TriggerMessage

    try:
        given = json.loads(text)
    except json.JSONDecodeError:
        given = None
    if isinstance(given, Mapping) and "parent_execution_arn" in given:
        return text
    reduced: dict[str, Any] = {"trigger": None}
    if isinstance(given, list):  # the pipe's records
        reduced["records"] = len(given)
        first = given[0] if given and isinstance(given[0], Mapping) else {}
        try:
            given = json.loads(str(first.get("body") or "null"))
        except json.JSONDecodeError:
            given = None
    if isinstance(given, Mapping):
        with contextlib.suppress(ValidationError):
            reduced["trigger"] = TriggerMessage.model_validate(dict(given)).model_dump(mode="json")
    return json.dumps(reduced)


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


# ---------------------------------------------------------------------------- graph


def mermaid(definition: Mapping[str, Any], labs: Mapping[str, Any] | None = None) -> str:
    """The state machine(s) as a Mermaid flowchart (Next, Choice branches, Catch edges dashed).

    With ``labs``, the Express parent and the Standard labs child are two subgraphs, and
    StartLabsWorkflow points at the child's first state.
    """
    if labs is None:
        return "\n".join(["flowchart TD", *_mermaid_states(definition, "")])
    lines = ["flowchart TD", "  subgraph express [Express: one execution per message]"]
    lines += ["  " + line for line in _mermaid_states(definition, "")]
    lines += ["  end", "  subgraph labs [Standard: labs workflow]"]
    lines += ["  " + line for line in _mermaid_states(labs, "labs_")]
    lines += ["  end", f"  StartLabsWorkflow -. startExecution .-> labs_{labs['StartAt']}"]
    return "\n".join(lines)


def _mermaid_states(definition: Mapping[str, Any], prefix: str) -> list[str]:
    start = f"{prefix}start"
    lines = [f"  {start}((start)) --> {prefix}{definition['StartAt']}"]
    for name, state in definition["States"].items():
        kind = state["Type"]
        shape = {"Choice": "{{{}}}", "Succeed": "([{}])", "Fail": "([{}])"}.get(kind, "[{}]")
        node = prefix + name
        lines.append(f"  {node}{shape.format(name)}")
        if "Next" in state:
            lines.append(f"  {node} --> {prefix}{state['Next']}")
        for choice in state.get("Choices", []):
            label = choice.get("StringEquals") or ("yes" if choice.get("BooleanEquals") else "no")
            if "BooleanEquals" not in choice and "StringEquals" not in choice:
                label = "match"
            if "NumericGreaterThan" in choice:
                label = f"> {choice['NumericGreaterThan']}"
            if "StringMatches" in choice:
                label = choice["StringMatches"].strip("*")
            lines.append(f"  {node} -->|{label}| {prefix}{choice['Next']}")
        if "Default" in state:
            lines.append(f"  {node} -->|otherwise| {prefix}{state['Default']}")
        for catch in state.get("Catch", []):
            errors = ", ".join(catch["ErrorEquals"])
            lines.append(f"  {node} -.->|{errors}| {prefix}{catch['Next']}")
    return lines


# ---------------------------------------------------------------------------- cost
# The cost model lives in tasks.cost: it prices the template `cdk synth` produces.


# ---------------------------------------------------------------------------- local state


def _canonical(body: Any) -> str:
    """One text per trigger content, whatever its keys' order."""
    return json.dumps(body, sort_keys=True)


class LocalStore:
    """What the local cloud keeps between commands: moto's state lives in one process, so the
    queue spool, execution traces and dead letters are written under the data directory.

    The spool is write-ahead: `send` appends a line, `run` reads the lines (`queued`), and only
    after their executions have ended removes them (`ack_queued`); lines appended meanwhile stay.
    A line that is not a JSON object goes to the dead letters with a reason, never its text.
    Writers take a file lock, and files are replaced atomically, so a crash loses nothing (at
    worst a trigger is delivered twice, which a claim absorbs)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.executions = root / "executions"
        self.spool = root / "queue.jsonl"
        self.dead_letters = root / "dead-letters.jsonl"

    def _ensure(self) -> None:
        self.executions.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure()
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _lines(path: Path) -> list[str]:
        if not path.exists():
            return []
        text = path.read_bytes().decode("utf-8", "replace")
        return [line for line in text.splitlines() if line.strip()]

    @staticmethod
    def _replace(path: Path, lines: Iterable[str]) -> None:
        temporary = path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            handle.writelines(line + "\n" for line in lines)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    @staticmethod
    def _append(path: Path, lines: Iterable[str]) -> None:
        with path.open("a", encoding="utf-8") as handle:
            handle.writelines(line + "\n" for line in lines)
            handle.flush()
            os.fsync(handle.fileno())

    def enqueue(self, body: str) -> None:
        with self._locked():
            self._append(self.spool, [body.strip()])

    def queued(self) -> list[dict[str, Any]]:
        """The queued triggers, oldest first, left in the spool until `ack_queued`. Lines that
        are not JSON objects move to the dead letters first."""
        from tasks.deadletters import local_queue_record

        with self._locked():
            good: list[str] = []
            bodies: list[dict[str, Any]] = []
            corrupt: list[dict[str, Any]] = []
            now = datetime.now(UTC).isoformat(timespec="seconds")
            for number, line in enumerate(self._lines(self.spool), start=1):
                try:
                    body = json.loads(line)
                except json.JSONDecodeError:
                    body = None
                if isinstance(body, dict):
                    good.append(line)
                    bodies.append(body)
                else:
                    corrupt.append(local_queue_record(number, line, now))
            if corrupt:
                # Dead letters first: a crash in between duplicates a record, never loses one.
                self._append(self.dead_letters, (json.dumps(c) for c in corrupt))
                self._replace(self.spool, good)
            return bodies

    def ack_queued(self, bodies: Sequence[Mapping[str, Any]]) -> None:
        """Remove the queued triggers that `queued()` returned: their executions have ended.

        By content, one line per body, not the first lines of the spool: two `run`s that read
        the same triggers each acknowledge what they delivered, so a trigger that one of them
        never read (appended after it looked) stays queued. (By count, the second `run`
        removed a later trigger that nobody had delivered.)"""
        # Counted by canonical text: a list of bodies searched per line is quadratic in the
        # spool, under the store's lock.
        remaining = Counter(_canonical(body) for body in bodies)
        with self._locked():
            kept: list[str] = []
            for line in self._lines(self.spool):
                try:
                    key = _canonical(json.loads(line))
                except json.JSONDecodeError:
                    key = None
                if key is not None and remaining[key] > 0:
                    remaining[key] -= 1
                else:
                    kept.append(line)
            self._replace(self.spool, kept)

    def take_queued(self) -> list[str]:
        """Read and remove every queued trigger (for callers that deliver them at once)."""
        bodies = self.queued()
        self.ack_queued(bodies)
        return [json.dumps(body) for body in bodies]

    def save_execution(
        self,
        name: str,
        status: str,
        events: Sequence[Mapping[str, Any]],
        child: tuple[str, str, Sequence[Mapping[str, Any]]] | None = None,
    ) -> None:
        """Keep a slim history; ``child`` is the labs execution's (name, status, events). The
        input is not kept, only the domain and user it names (`subject`)."""
        self._ensure()
        record: dict[str, Any] = {"name": name, "status": status, "events": slim_history(events)}
        subject = execution_subject(events)
        if subject:
            record["subject"] = subject
        if child is not None:
            child_name, child_status, child_events = child
            record["child"] = {
                "name": child_name,
                "status": child_status,
                "events": slim_history(child_events),
            }
        (self.executions / f"{name}.json").write_text(json.dumps(record), encoding="utf-8")

    def load_execution(self, name: str) -> dict[str, Any]:
        path = self.executions / f"{name.rsplit(':', 1)[-1]}.json"
        if not path.exists():
            raise ExecutionNotFound(f"no local execution named {name}")
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def add_dead_letters(self, bodies: Iterable[Any]) -> None:
        with self._locked():
            self._append(self.dead_letters, (json.dumps(body) for body in bodies))

    def list_dead_letters(self) -> list[Any]:
        """Every dead letter, decoded; a line that is not JSON is returned as its text."""
        letters: list[Any] = []
        for line in self._lines(self.dead_letters):
            try:
                letters.append(json.loads(line))
            except json.JSONDecodeError:
                letters.append(line)
        return letters

    def remove_dead_letters(self, indexes: Iterable[int]) -> None:
        """Remove the dead letters at these positions of `list_dead_letters()`."""
        drop = set(indexes)
        with self._locked():
            lines = self._lines(self.dead_letters)
            self._replace(self.dead_letters, (x for i, x in enumerate(lines) if i not in drop))

    def clear_dead_letters(self) -> None:
        with self._locked():
            self.dead_letters.unlink(missing_ok=True)


def original_message(dead_letter: Mapping[str, Any]) -> dict[str, Any] | None:
    """The trigger message inside a DLQ body: the pipe's one-record array or a manual input."""
    message = dead_letter.get("message")
    if isinstance(message, list) and message and isinstance(message[0], Mapping):
        try:
            body = json.loads(message[0].get("body", ""))
        except json.JSONDecodeError:
            return None
        return body if isinstance(body, dict) else None
    return dict(message) if isinstance(message, Mapping) else None
