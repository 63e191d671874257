"""Strict trigger messages, and validation errors that never carry the value."""

from __future__ import annotations

import hashlib
import json

import pytest

from tasks.errors import InvalidMessage
from tasks.steps.registry import run_step

GOOD = {"job_type": "process_pending_vitals", "user_id": 7, "priority": "normal"}


def _record(body: str) -> dict:
    return {"records": [{"messageId": "m-1", "body": body}]}


def _refused(body: object) -> str:
    text = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(InvalidMessage) as raised:
        run_step("validate_message", _record(text))
    return str(raised.value)


@pytest.mark.parametrize(
    "user_id", [True, "2", 0, -1, 2.0, 2**48, 2**63, None], ids=repr
)  # fmt: skip
def test_user_id_is_a_positive_integer_the_lock_key_can_hold(user_id: object) -> None:
    assert "user_id" in _refused({**GOOD, "user_id": user_id})


def test_priority_and_reprocess_dates_are_strict() -> None:
    assert "priority" in _refused({**GOOD, "priority": "urgent"})
    assert "reprocess.from" in _refused({**GOOD, "reprocess": {"from": 0, "to": "2024-01-31"}})
    assert "reprocess.to" in _refused({**GOOD, "reprocess": {"from": "2024-01-01", "to": "31"}})
    assert "reprocess" in _refused(
        {**GOOD, "reprocess": {"from": "2024-02-01", "to": "2024-01-01"}}
    )


def test_a_body_larger_than_sqs_allows_is_refused() -> None:
    big = json.dumps({**GOOD, "pad": "x" * (256 * 1024)})
    assert "larger than 256 KiB" in _refused(big)


def test_an_invalid_body_is_named_by_size_and_hash_never_by_its_text() -> None:
    body = json.dumps({**GOOD, "user_id": "HIV positive 173.37", "HIV positive": 173.37})
    reason = _refused(body)
    assert "HIV" not in reason and "173.37" not in reason and "positive" not in reason
    digest = hashlib.sha256(body.encode()).hexdigest()
    assert f"body of {len(body.encode())} bytes, sha256 {digest}" in reason
    assert "user_id: Input should be a valid integer" in reason
    assert "1 unexpected field(s)" in reason
    assert "not valid JSON" in _refused("HIV positive 173.37")
    assert "173.37" not in _refused("HIV positive 173.37")


def test_the_validated_output_keeps_only_the_trigger_fields() -> None:
    out = run_step("validate_message", _record(json.dumps(GOOD)))
    assert out["trigger"] == {**GOOD, "reprocess": None}
    assert out["domain"] == "vitals" and out["user_id"] == 7
    manual = run_step(
        "validate_message",
        {"records": {**GOOD, "reprocess": {"from": "2024-01-01", "to": "2024-01-31"}}},
    )
    assert manual["trigger"]["reprocess"] == {"from": "2024-01-01", "to": "2024-01-31"}
