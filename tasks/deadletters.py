"""The dead-letter queue, read and redriven: `healthflow dlq list|redrive --target aws|local`.

Two kinds of message arrive in the dead-letter queue:
- **workflow** records, sent by the state machine's Catch path (`SendToDeadLetterQueue`): a JSON
  object with the error (`{"Error", "Cause"}`), the execution's input (the pipe's one-record
  array, or a manual message), the execution ARN and the time;
- **queue** messages, the raw trigger bodies that SQS itself moved after `maxReceiveCount`
  receives without a delete (the pipe could not start an execution for them).
The local cloud adds a third: a **local-queue** record for a line of the local queue file that
was not a JSON object (stored with its size and a hash, never its text).

Listing shows, for each, its kind, the error name and its reason, and the trigger's job type and
user id: ids and error names only, never a body's text. Redrive re-sends the original trigger,
validated again against the message contract, and deletes the dead letter only once the send has
succeeded; a dead letter without a valid trigger is kept for a person to read.

In AWS the queue is read to the end: each receive long-polls and hides what it returned for the
length of the command, until a receive comes back empty (SQS returns at most 10 per call).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from tasks.steps.models import TriggerMessage

Kind = Literal["workflow", "queue", "local-queue"]
_MAX_REASON = 200
_TRIGGER_FIELDS = frozenset(TriggerMessage.model_fields) | {"from", "to"}


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter as an operator sees it (data-free)."""

    kind: Kind
    error: str
    reason: str
    message: TriggerMessage | None = None
    execution: str | None = None
    failed_at: str | None = None

    def describe(self) -> str:
        who = (
            f"{self.message.job_type} user {self.message.user_id}"
            if self.message
            else "no valid trigger"
        )
        where = f"  execution {self.execution}" if self.execution else ""
        when = f"{self.failed_at}  " if self.failed_at else ""
        return f"{when}[{self.kind}] {self.error}: {self.reason}  ({who}){where}"


def body_fingerprint(text: str | bytes) -> str:
    """Size and hash of a body that is not a trigger: enough to find it, nothing of its text."""
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return f"{len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()[:16]}"


def _trigger(candidate: Any) -> TriggerMessage | None:
    """The trigger inside a record or body, validated against the message contract."""
    if isinstance(candidate, str):
        try:
            candidate = json.loads(candidate)
        except json.JSONDecodeError:
            return None
    if not isinstance(candidate, Mapping):
        return None
    fields = dict(candidate)
    if "job_type" in fields:
        fields.pop("domain", None)  # a validated message carries its domain beside the job
    try:
        return TriggerMessage.model_validate(fields)
    except ValidationError:
        return None


def _workflow_message(record: Mapping[str, Any]) -> TriggerMessage | None:
    message = record.get("message")
    if isinstance(message, list):  # the pipe's one-record array
        message = message[0].get("body") if message and isinstance(message[0], Mapping) else None
    return _trigger(message)


def _reason_of(cause: Any) -> str:
    """A Catch record's Cause: a Lambda error's JSON (its errorMessage) or the text itself.

    Causes are data-free by construction (the runners reduce foreign errors to their name)."""
    if isinstance(cause, str):
        try:
            decoded = json.loads(cause)
        except json.JSONDecodeError:
            decoded = None
        if isinstance(decoded, Mapping) and isinstance(decoded.get("errorMessage"), str):
            cause = decoded["errorMessage"]
    text = str(cause or "no reason recorded").replace("\n", " ")
    return text[:_MAX_REASON]


def _is_workflow_record(body: Any) -> bool:
    return (
        isinstance(body, Mapping)
        and "error" in body
        and ("execution_arn" in body or "message" in body)
    )


def classify(body: Any) -> DeadLetter:
    """What a dead letter is: `body` is the message text or its decoded JSON."""
    decoded = body
    if isinstance(body, str):
        try:
            decoded = json.loads(body)
        except json.JSONDecodeError:
            decoded = None
    if _is_workflow_record(decoded):
        error = decoded["error"]
        name = error.get("Error") if isinstance(error, Mapping) else error
        cause = error.get("Cause") if isinstance(error, Mapping) else None
        kind: Kind = "local-queue" if decoded.get("source") == "local-queue" else "workflow"
        return DeadLetter(
            kind=kind,
            error=str(name or "UnknownError"),
            reason=_reason_of(cause),
            message=_workflow_message(decoded),
            execution=str(decoded.get("execution_arn") or "").rsplit(":", 1)[-1] or None,
            failed_at=str(decoded.get("failed_at") or "") or None,
        )
    message = _trigger(decoded)
    if message is not None:
        return DeadLetter(
            kind="queue",
            error="MaxReceiveCountExceeded",
            reason="the queue moved it here: received too often without an execution starting",
            message=message,
        )
    text = body if isinstance(body, str) else json.dumps(body)
    return DeadLetter(
        kind="queue",
        error="InvalidMessage",
        reason=f"the queue moved it here; not a valid trigger ({body_fingerprint(text)})",
    )


def local_queue_record(line_number: int, text: str, failed_at: str) -> dict[str, Any]:
    """The dead letter of a local queue line that is not a JSON object (its text is not kept)."""
    return {
        "source": "local-queue",
        "error": {
            "Error": "InvalidMessage",
            "Cause": f"local queue line {line_number} is not a JSON object "
            f"({body_fingerprint(text)})",
        },
        "message": None,
        "failed_at": failed_at,
    }


# ---------------------------------------------------------------------------- redrive


@dataclass
class RedriveResult:
    redriven: int = 0
    kept: list[tuple[DeadLetter, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"redriven {self.redriven}, kept {len(self.kept)} in the dead-letter queue"
            + "".join(f"\n  kept: {letter.describe()}  -- {why}" for letter, why in self.kept)
        )


def redrive(
    letters: Iterable[tuple[DeadLetter, Any]],
    send: Callable[[str], None],
    delete: Callable[[Any], None],
) -> RedriveResult:
    """Re-send each dead letter's trigger; delete a dead letter only after its send succeeded.

    `letters` pairs each dead letter with a handle that `delete` understands."""
    result = RedriveResult()
    for letter, handle in letters:
        if letter.message is None:
            result.kept.append((letter, "no valid trigger to resend"))
            continue
        try:
            send(letter.message.to_json_body())
        except Exception as exc:  # kept, to be redriven again
            result.kept.append((letter, f"send failed with {type(exc).__name__}"))
            continue
        delete(handle)
        result.redriven += 1
    return result


def redrive_local(store: Any) -> RedriveResult:
    """`redrive` over the local cloud's dead letters (a `tasks.workflow.LocalStore`): the
    triggers go back to its queue, the redriven letters leave the store."""
    letters = [classify(body) for body in store.list_dead_letters()]
    removed: list[int] = []
    result = redrive(zip(letters, range(len(letters)), strict=True), store.enqueue, removed.append)
    store.remove_dead_letters(removed)
    return result


# ---------------------------------------------------------------------------- SQS


@dataclass(frozen=True)
class Received:
    message_id: str
    receipt_handle: str
    letter: DeadLetter


class SqsDeadLetters:
    """The deployed dead-letter queue, read to the end.

    `visibility_seconds` hides what was received for the length of the command (so paging never
    returns a message twice); `list` makes everything visible again at the end."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        *,
        wait_seconds: int = 2,
        visibility_seconds: int = 300,
    ) -> None:
        self._sqs = sqs
        self.queue_url = queue_url
        self._wait = wait_seconds
        self._visibility = visibility_seconds

    def receive_all(self) -> list[Received]:
        seen: dict[str, Received] = {}
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=self._wait,
                VisibilityTimeout=self._visibility,
            ).get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                return list(seen.values())
            for message in fresh:
                seen[message["MessageId"]] = Received(
                    message["MessageId"], message["ReceiptHandle"], classify(message["Body"])
                )

    def release(self, received: Iterable[Received]) -> None:
        """Make received messages visible again at once."""
        batch = list(received)
        for start in range(0, len(batch), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": r.receipt_handle, "VisibilityTimeout": 0}
                for i, r in enumerate(batch[start : start + 10])
            ]
            self._sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)

    def delete(self, received: Received) -> None:
        self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=received.receipt_handle)


def sqs_list(dead_letters: SqsDeadLetters) -> list[DeadLetter]:
    received = dead_letters.receive_all()
    dead_letters.release(received)
    return [r.letter for r in received]


def sqs_redrive(dead_letters: SqsDeadLetters, sqs: Any, queue_url: str) -> RedriveResult:
    received = dead_letters.receive_all()

    def send(body: str) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    result = redrive(((r.letter, r) for r in received), send, dead_letters.delete)
    kept_ids = {id(letter) for letter, _ in result.kept}
    dead_letters.release(r for r in received if id(r.letter) in kept_ids)
    return result
