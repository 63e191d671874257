"""Direct mode: claim -> steps -> mark in this process, no workflow engine.

It runs the very step functions the state machine runs, in the same order, each in its own
transaction, so a crash between steps leaves what a rerun completes. A step failure marks the
claim failed with the error name, as the workflow's MarkClaimFailed state does.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from tasks import lifecycle
from tasks.aggregation import aggregation_of
from tasks.db.engine import get_engine
from tasks.domains import DOMAINS_IN_ORDER
from tasks.errors import DatabaseUnavailable
from tasks.steps.registry import run_step

# As the state machine retries DatabaseUnavailable on its claim and MarkClaimFailed states
# (MaxAttempts 4, full jitter), with a shorter base: here nobody pays for a waiting execution.
_RETRIES = 3
_RETRY_BASE_SECONDS = 0.5


def _run_retried(name: str, payload: dict) -> dict:
    """Run a step whose failure has nowhere else to go: a dropped connection during a claim or
    while marking a claim failed would otherwise end the whole `process` (every other user's
    work with it) and leave a failed claim's rows `processing` until a takeover."""
    for attempt in range(_RETRIES + 1):
        try:
            return run_step(name, payload)
        except DatabaseUnavailable:
            if attempt == _RETRIES:
                raise
            time.sleep(random.uniform(0, _RETRY_BASE_SECONDS * 2**attempt))
    raise AssertionError("unreachable")


@dataclass
class ClaimRun:
    domain: str
    user_id: int
    claim_id: str
    claimed: int = 0
    steps: dict[str, dict] = field(default_factory=dict)
    error: str | None = None
    isolated: bool = False
    set_aside: int = 0  # rows this failure set aside for good (they reached max_attempts)


def step_plan(domain: str, claim_id: str, user_id: int) -> Iterator[tuple[str, str, dict]]:
    """(label, step name, input) for the work after a claim, in workflow order."""
    ref = {"claim_id": claim_id, "user_id": user_id}
    if domain == "labs":
        # The model-free tier first, as in the labs workflow; the model step takes the rest.
        yield "resolve", "resolve_known_labs", ref
        yield "categorize", "categorize_labs", ref
    elif domain == "vitals":
        yield "copy", "copy_vitals_to_categorized", ref
    for granularity in aggregation_of(domain).granularities:
        yield granularity, "aggregate", {**ref, "domain": domain, "granularity": granularity}
    yield "mark", "mark_aggregated", {"claim_id": claim_id, "domain": domain}


def process_claim(
    domain: str, user_id: int, *, claim_id: str | None = None, reprocess: dict | None = None
) -> ClaimRun:
    run = ClaimRun(
        domain, user_id, claim_id or f"direct-{domain}-{user_id}-{uuid.uuid4().hex[:12]}"
    )
    claim = _run_retried(
        "claim",
        {"domain": domain, "user_id": user_id, "claim_id": run.claim_id, "reprocess": reprocess},
    )
    run.claimed = claim["claimed"]
    run.isolated = claim["isolated"]
    if not claim["has_pending"]:
        return run
    try:
        for label, name, payload in step_plan(domain, run.claim_id, user_id):
            run.steps[label] = run_step(name, payload)
    except Exception as error:  # every failure is marked, then reported by name
        run.error = type(error).__name__
        failed = _run_retried(
            "mark_claim_failed", {"claim_id": run.claim_id, "domain": domain, "error": run.error}
        )
        run.set_aside = int(failed["set_aside"])
    return run


def unsettled(runs: list[ClaimRun]) -> list[tuple[str, int]]:
    """The (domain, user) pairs whose work did not end clean: the last claim failed, or a
    failure set rows aside. A failed claim whose rows a later claim completed (a dropped
    connection, a fault since fixed, bisection's passing half) leaves nothing to do."""
    last: dict[tuple[str, int], ClaimRun] = {}
    set_aside: dict[tuple[str, int], int] = {}
    for run in runs:
        key = (run.domain, run.user_id)
        last[key] = run
        set_aside[key] = set_aside.get(key, 0) + run.set_aside
    return [key for key, run in last.items() if run.error or set_aside[key]]


def counts_as_strike(*, isolated: bool, claimed: int) -> bool:
    """Whether a failed claim counts against the user's `max_attempts` in a row: every failure
    does but a failed half of a bisection (suspects claimed together), which narrows the fault
    down and is progress. `process` and `run` count the same way."""
    return not (isolated and claimed > 1)


def process_user(
    domain: str, user_id: int, on_done: Callable[[ClaimRun], None] | None = None
) -> list[ClaimRun]:
    """Claim and process until the user's work in `domain` is settled.

    One claim usually does it. After a failure, the rows are retried (as a redrive would), and
    rows that failed twice together are bisected, so one row that breaks a step is set aside
    and the others are aggregated. A failure that every claim meets (a broken
    database, a bug) stops the loop after `max_attempts` failures in a row, for the next run.
    """
    from tasks.settings import get_settings

    runs: list[ClaimRun] = []
    failures_in_a_row = 0
    while failures_in_a_row < get_settings().max_attempts:
        run = process_claim(domain, user_id)
        if run.claimed == 0:
            break
        runs.append(run)
        if on_done:
            on_done(run)
        if not run.error:
            failures_in_a_row = 0
        elif counts_as_strike(isolated=run.isolated, claimed=run.claimed):
            failures_in_a_row += 1
        if not run.error and not run.isolated and not _has_suspects(domain, user_id):
            break
    return runs


def _has_suspects(domain: str, user_id: int) -> bool:
    """Suspects left to bisect (a batch that ran after half a group failed leaves some)."""
    with Session(get_engine()) as session:
        return lifecycle.has_suspects(session.connection(), domain, user_id)


def pending_work(domains: list[str], user_id: int | None) -> list[tuple[str, int]]:
    with Session(get_engine()) as session:
        conn = session.connection()
        return [
            (domain, uid)
            for domain in domains
            for uid in lifecycle.users_with_pending(conn, domain, user_id)
        ]


def process_pending(
    domains: list[str] | None = None,
    user_id: int | None = None,
    on_done: Callable[[ClaimRun], None] | None = None,
    *,
    workers: int = 1,
) -> list[ClaimRun]:
    """Process every pending (domain, user)."""
    work = pending_work(list(domains or DOMAINS_IN_ORDER), user_id)
    return process_work(work, on_done, workers=workers)


def process_work(
    work: list[tuple[str, int]],
    on_done: Callable[[ClaimRun], None] | None = None,
    *,
    workers: int = 1,
) -> list[ClaimRun]:
    """Claim and process each (domain, user); `workers` users run at once, as concurrent
    executions do in the workflow (claims and the per-user lock keep them apart)."""

    def one(item: tuple[str, int]) -> list[ClaimRun]:
        return process_user(*item, on_done)

    if workers <= 1:
        return [run for item in work for run in one(item)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [run for runs in pool.map(one, work) for run in runs]
