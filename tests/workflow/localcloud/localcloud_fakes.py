"""A fake step registry, so the workflow machinery is tested without a database.

A uniquely named module (not conftest) so that other test folders' conftests cannot shadow it."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from tasks.errors import InvalidMessage

EVENTS = Path(__file__).resolve().parents[2] / "data" / "events"
DOMAINS = {
    "process_pending_labs": "labs",
    "process_pending_vitals": "vitals",
    "process_pending_nutrition": "nutrition",
}
MESSAGE_FIELDS = {"job_type", "user_id", "priority", "reprocess"}


def load_event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


class FakeSteps:
    """Answers each step with contract-shaped output; ``fail_next`` scripts named failures."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.pending_users: set[int] | None = None  # None: every user has pending rows
        self.names_needing_model = 1  # what resolve_known_labs leaves for the ml-worker
        self._failures: dict[str, list[BaseException]] = defaultdict(list)

    def fail_next(self, step: str, *errors: BaseException) -> None:
        self._failures[step].extend(errors)

    def inputs_of(self, step: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.calls if name == step]

    def __call__(self, step: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((step, payload))
        if self._failures[step]:
            raise self._failures[step].pop(0)
        return getattr(self, step)(payload)

    def validate_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        # The pipe's record array, or (manual StartExecution) the message object itself.
        records = payload.get("records")
        message = json.loads(records[0]["body"]) if records else payload
        if set(message) - MESSAGE_FIELDS or message.get("job_type") not in DOMAINS:
            raise InvalidMessage("message does not follow the contract")
        return {
            "job_type": message["job_type"],
            "domain": DOMAINS[message["job_type"]],
            "user_id": message["user_id"],
            "priority": message.get("priority", "normal"),
            "reprocess": message.get("reprocess"),
        }

    def claim(self, payload: dict[str, Any]) -> dict[str, Any]:
        pending = self.pending_users is None or payload["user_id"] in self.pending_users
        return {
            "claim_id": payload["claim_id"],
            "user_id": payload["user_id"],
            "domain": payload["domain"],
            "claimed": 3 if pending else 0,
            "has_pending": pending,
            "date_from": "2024-03-01" if pending else None,
            "date_to": "2024-03-02" if pending else None,
            "more_pending": False,
            "isolated": False,
        }

    def resolve_known_labs(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "resolved": 2,
            "needs_model": self.names_needing_model,
            "rejected": 0,
            "duplicates": 0,
        }

    def categorize_labs(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"categorized": 2, "uncategorized": 1, "rejected": 0, "duplicates": 0}

    def copy_vitals_to_categorized(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"copied": 3, "rejected": 0, "duplicates": 0}

    def aggregate(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"granularity": payload["granularity"], "buckets": 1}

    def mark_aggregated(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"marked": 3}

    def mark_claim_failed(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"failed": 3, "set_aside": 0, "bisect_further": False}
