"""Dead letters for the CLI tests: one whose trigger can be resent, one that never can."""

from __future__ import annotations

from typing import Any

GOOD = {"job_type": "process_pending_labs", "user_id": 8, "priority": "normal"}
BAD = {"job_type": "process_pending_labs", "user_id": -8}


def add_good_and_bad(store: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Store a workflow dead letter for each of GOOD and BAD in a LocalStore."""
    store.add_dead_letters(
        {"message": m, "error": {"Error": "X"}, "execution_arn": "a:b", "failed_at": "t"}
        for m in (GOOD, BAD)
    )
    return GOOD, BAD
