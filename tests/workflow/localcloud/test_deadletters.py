"""`healthflow dlq list|redrive` with more than 10 dead letters of both kinds, through the
local cloud: workflow Catch records and raw bodies the queue moved after maxReceiveCount."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tasks import deadletters
from tasks.errors import HealthflowError
from tasks.localcloud.cloud import MAX_RECEIVE_COUNT, LocalCloud
from tasks.workflow import LocalStore

from .localcloud_fakes import FakeSteps

FAILED_USERS = range(1, 13)  # 12 executions that fail after their claim
STUCK_USERS = range(101, 112)  # 11 valid triggers the pipe never managed to start
SECRET = "HbA1c 9.1"  # stands for health data that a bad body might carry


class ClaimBroken(HealthflowError):
    """A step failure with a data-free message."""


def _fill_dead_letter_queue(cloud: LocalCloud, fake_steps: FakeSteps) -> None:
    fake_steps.fail_next("claim", *(ClaimBroken(f"claim of user {u} failed") for u in FAILED_USERS))
    for user in FAILED_USERS:
        cloud.send_message({"job_type": "process_pending_vitals", "user_id": user})
    results = cloud.drain()
    assert [r.status for r in results] == ["FAILED"] * len(FAILED_USERS)

    sqs = cloud._sqs
    bodies = [json.dumps({"job_type": "process_pending_labs", "user_id": u}) for u in STUCK_USERS]
    bodies += ["{not json " + SECRET, json.dumps({"job_type": "nope", "note": SECRET})]
    for body in bodies:
        sqs.send_message(QueueUrl=cloud.queue_url, MessageBody=body)
    # Received and never deleted: SQS moves each to the DLQ after maxReceiveCount receives.
    for _ in range(MAX_RECEIVE_COUNT + 1):
        while sqs.receive_message(
            QueueUrl=cloud.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages"):
            pass


@pytest.fixture
def filled(cloud: LocalCloud, fake_steps: FakeSteps) -> LocalCloud:
    _fill_dead_letter_queue(cloud, fake_steps)
    return cloud


def _trigger_bodies(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    queue = deadletters.SqsDeadLetters(sqs, queue_url, wait_seconds=1)
    received = queue.receive_all()
    return [json.loads(r.letter.message.to_json_body()) for r in received if r.letter.message]


def test_aws_list_and_redrive_page_through_both_kinds(filled: LocalCloud) -> None:
    queue = deadletters.SqsDeadLetters(filled._sqs, filled.dead_letter_queue_url, wait_seconds=1)
    letters = deadletters.sqs_list(queue)
    assert len(letters) == len(FAILED_USERS) + len(STUCK_USERS) + 2  # 25, never only 10
    workflow = [x for x in letters if x.kind == "workflow"]
    queued = [x for x in letters if x.kind == "queue"]
    assert sorted(x.message.user_id for x in workflow if x.message) == list(FAILED_USERS)
    assert {(x.error, x.reason.split(" of user")[0]) for x in workflow} == {
        ("ClaimBroken", "claim")
    }
    assert sorted(x.message.user_id for x in queued if x.message) == list(STUCK_USERS)
    assert {x.error for x in queued} == {"MaxReceiveCountExceeded", "InvalidMessage"}
    lines = "\n".join(x.describe() for x in letters)
    assert SECRET not in lines and "HbA1c" not in lines and "sha256" in lines
    # Listing leaves every message in place, visible at once.
    assert len(deadletters.sqs_list(queue)) == 25

    # A send that fails deletes nothing.
    received = queue.receive_all()
    deleted: list[Any] = []

    def refuse(body: str) -> None:
        raise ConnectionError("queue unreachable")

    result = deadletters.redrive(((r.letter, r) for r in received), refuse, deleted.append)
    assert result.redriven == 0 and deleted == [] and len(result.kept) == 25
    assert "send failed with ConnectionError" in result.summary()
    queue.release(received)

    # Redrive re-sends each valid trigger, then deletes its dead letter; the rest stay.
    sqs = filled._sqs
    result = deadletters.sqs_redrive(queue, sqs, filled.queue_url)
    assert result.redriven == len(FAILED_USERS) + len(STUCK_USERS)
    assert [letter.error for letter, _ in result.kept] == ["InvalidMessage", "InvalidMessage"]
    assert SECRET not in result.summary()
    resent = _trigger_bodies(sqs, filled.queue_url)
    assert sorted(b["user_id"] for b in resent) == [*FAILED_USERS, *STUCK_USERS]
    assert all(set(b) <= {"job_type", "user_id", "priority", "reprocess"} for b in resent)
    left = deadletters.sqs_list(queue)
    assert [x.error for x in left] == ["InvalidMessage", "InvalidMessage"]


def test_local_cli_lists_and_redrives_both_kinds(
    filled: LocalCloud, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from tasks.cli import main
    from tasks.cli_workflow import _store
    from tasks.settings import get_settings

    monkeypatch.setenv("HEALTHFLOW_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        store = _store()
        store.add_dead_letters(d.body for d in filled.dlq_messages())  # as `run` keeps them
        store.enqueue("{truncated by a crash " + SECRET)  # a corrupt local queue line
        assert store.queued() == []  # ...moved to the dead letters, with a reason
        assert main(["dlq", "list", "--target", "local"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("26 dead letters (12 workflow, 13 queue, 1 local-queue)")
        assert "ClaimBroken: claim of user 3 failed" in out
        assert "local queue line 1 is not a JSON object" in out
        assert SECRET not in out and "HbA1c" not in out

        assert main(["dlq", "redrive", "--target", "local"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("redriven 23, kept 3")
        assert sorted(b["user_id"] for b in store.queued()) == [*FAILED_USERS, *STUCK_USERS]
        assert len(store.list_dead_letters()) == 3
    finally:
        get_settings.cache_clear()


def test_the_local_queue_is_write_ahead(tmp_path: Any) -> None:
    store = LocalStore(tmp_path)
    store.enqueue(json.dumps({"job_type": "process_pending_vitals", "user_id": 1}))
    store.enqueue("\x00garbage")
    store.enqueue(json.dumps({"job_type": "process_pending_vitals", "user_id": 2}))
    first = store.queued()
    assert [b["user_id"] for b in first] == [1, 2]
    assert store.queued() == first  # nothing leaves the spool before it is acknowledged
    store.enqueue(json.dumps({"job_type": "process_pending_vitals", "user_id": 3}))
    store.ack_queued(first)
    assert [b["user_id"] for b in store.queued()] == [3]  # appended meanwhile: kept
    [corrupt] = [deadletters.classify(b) for b in store.list_dead_letters()]
    assert corrupt.kind == "local-queue" and corrupt.error == "InvalidMessage"
    assert "garbage" not in corrupt.describe()


def test_two_runs_that_read_the_same_triggers_never_drop_a_later_one(tmp_path: Any) -> None:
    def trigger(user_id: int) -> str:
        return json.dumps({"job_type": "process_pending_vitals", "user_id": user_id})

    store = LocalStore(tmp_path)
    store.enqueue(trigger(1))
    run_a, run_b = store.queued(), store.queued()  # two `healthflow run`s start together
    store.ack_queued(run_a)  # run A's executions ended
    store.enqueue(trigger(2))  # a `send` while run B still drains
    store.ack_queued(run_b)  # run B delivered trigger 1 too, never trigger 2
    assert [b["user_id"] for b in store.queued()] == [2]
