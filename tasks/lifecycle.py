"""The raw-row lifecycle: claim, mark aggregated, mark failed, reset for reprocessing.

A claim stamps a user's pending rows of one domain `processing` under the caller's claim id
(the execution name). `FOR UPDATE SKIP LOCKED` makes concurrent claims take disjoint rows. A claim
returns counts and the touched local date range, never rows.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import Connection, text

from tasks.aggregation import (
    GRANULARITIES,
    USER_ZONE_SQL,
    ZONED_DOMAINS,
    aggregate_table,
    aggregation_of,
    lock_user_domain,
)
from tasks.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimSummary:
    claim_id: str
    user_id: int
    domain: str
    claimed: int
    date_from: date | None
    date_to: date | None
    # Rows taken over from claims whose execution is gone, and failed rows retried.
    taken_over: int = 0
    retried: int = 0
    # True when the claim holds one suspect row alone (see claim_pending).
    isolated: bool = False
    # Pending rows another transaction held when this claim first looked (it waited for them).
    skipped_locked: int = 0


def table_of(domain: str) -> str:
    return aggregation_of(domain).raw_table


def _local_date(domain: str) -> str:
    """The local date of a raw row `r` of the domain, in the user's zone `tz`."""
    return aggregation_of(domain).local_date_sql


# ---------------------------------------------------------------------------- claim owners


@dataclass(frozen=True)
class ClaimOwner:
    """The process that runs a claim, when other processes on its machine can check it."""

    host: str | None = None
    pid: int | None = None
    process_started: float | None = None


@lru_cache(maxsize=1)
def this_host() -> str:
    """This machine, as of this boot: a pid is only meaningful within one boot of one host."""
    boot_id = Path("/proc/sys/kernel/random/boot_id")
    if boot_id.exists():
        return f"{socket.gethostname()}/{boot_id.read_text().strip()}"
    return f"{socket.gethostname()}/{psutil.boot_time():.0f}"


def current_owner() -> ClaimOwner:
    """This process, or no process at all where claims must be leased (Lambda, ECS: the
    sandbox outlives the invocation, so a live process does not mean a live execution)."""
    if get_settings().runs_in_aws:
        return ClaimOwner()
    return ClaimOwner(this_host(), os.getpid(), psutil.Process().create_time())


def process_alive(pid: int, started: float) -> bool:
    """Whether the process `pid` that started at `started` still runs (a pid reused by a
    later process has another start time; a zombie has finished)."""
    try:
        process = psutil.Process(pid)
        return (
            abs(process.create_time() - started) < 0.5 and process.status() != psutil.STATUS_ZOMBIE
        )
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # it exists; only its owner may look at it


def _owner_gone(row: Any) -> bool:
    """A claim is stale when its lease is over, or at once when it was made on this machine
    by a process that no longer runs."""
    if row.lease_over:
        return True
    return bool(
        row.host is not None
        and row.host == this_host()
        and not process_alive(row.pid, row.process_started)
    )


def stale_claims(conn: Connection, *, domain: str, user_id: int, claim_id: str) -> list[str]:
    """Claims of the user's `processing` rows in `domain` whose execution no longer runs."""
    table = table_of(domain)
    # Served by the small index of unsettled rows (the user's processing and failed rows).
    rows = conn.execute(
        text(
            f"""
            SELECT held.claim_id, c.host, c.pid, c.process_started,
                   COALESCE(c.lease_expires_at,
                            held.claimed_at + make_interval(secs => :lease)) < now()
                       AS lease_over
            FROM (SELECT claim_id, max(claimed_at) AS claimed_at FROM {table}
                  WHERE user_id = :user_id AND status = 'processing'
                  GROUP BY claim_id) held
            LEFT JOIN claims c ON c.claim_id = held.claim_id
            """
        ),
        {"user_id": user_id, "lease": get_settings().claim_lease_seconds},
    ).all()
    return [row.claim_id for row in rows if row.claim_id != claim_id and _owner_gone(row)]


def _record_owner(
    conn: Connection, *, domain: str, user_id: int, claim_id: str, owner: ClaimOwner
) -> None:
    conn.execute(
        text(
            """
            INSERT INTO claims (claim_id, domain, user_id, host, pid, process_started,
                                lease_expires_at)
            VALUES (:claim_id, :domain, :user_id, :host, :pid, :started,
                    now() + make_interval(secs => :lease))
            ON CONFLICT (claim_id) DO NOTHING
            """
        ),
        {
            "claim_id": claim_id,
            "domain": domain,
            "user_id": user_id,
            "host": owner.host,
            "pid": owner.pid,
            "started": owner.process_started,
            "lease": get_settings().claim_lease_seconds,
        },
    )


def _forget_claims(conn: Connection, claim_ids: list[str]) -> None:
    conn.execute(text("DELETE FROM claims WHERE claim_id = ANY(:ids)"), {"ids": claim_ids})


# ---------------------------------------------------------------------------- claims


def claim_pending(
    conn: Connection,
    *,
    domain: str,
    user_id: int,
    claim_id: str,
    limit: int | None = None,
    owner: ClaimOwner | None = None,
) -> ClaimSummary:
    """Stamp the user's claimable rows `processing` under `claim_id`; summarize what was taken.

    Claimable: pending rows; `processing` rows of a claim whose execution is gone (taken over:
    a crash never leaves rows stuck); rows that failed once (a redrive, or any later message,
    retries them, attempts counting the failures). Rows that failed twice in a batch are
    suspects, bisected (see `_bisect_half`) only when nothing else is claimable, so a row that
    makes a step fail ends up failing by itself and is set aside after `max_attempts` while the
    user's other rows go on, in a number of claims that grows with the log of the batch.

    The locked ids go into arrays and the update finds its rows by `id = ANY(array)`: an
    index lookup per id whatever the planner believes. Joining the locked set back to the
    table instead was planned, with the statistics of a bulk load not yet analyzed (reltuples
    0), as a nested loop over the whole primary key: 10,000 rows took 10 to 26 s and 20,000
    rows 37 to 106 s, where an analyzed table takes a fraction of a second
    (bench/stale_claims.py; tests/db/test_stale_statistics.py counts it from the plans)."""
    table = table_of(domain)
    settings = get_settings()
    stale = stale_claims(conn, domain=domain, user_id=user_id, claim_id=claim_id)
    params = {
        "user_id": user_id,
        "claim_id": claim_id,
        "limit": limit,
        "stale": stale,
        "max_attempts": settings.max_attempts,
        "suspect_from": suspect_from(settings.max_attempts),
    }
    # Order only matters when a limit picks which rows go first; sorting a large claim costs
    # more than the update itself (measured: 1.6 s against 0.9 s for 137k rows).
    limit_sql = "ORDER BY id LIMIT :limit" if limit else ""
    # One locked subquery per kind of row, each served by its own small partial index (an OR
    # of them is planned as a scan of the whole table when statistics lag a bulk load).
    batch = {
        "pending": f"""
            ARRAY(SELECT id FROM {table} WHERE user_id = :user_id AND status = 'pending'
                  {limit_sql} FOR UPDATE SKIP LOCKED)""",
        "retried": f"""
            ARRAY(SELECT id FROM {table} WHERE user_id = :user_id AND status = 'failed'
                  AND attempts < :suspect_from FOR UPDATE SKIP LOCKED)""",
    }
    if stale:
        batch["taken_over"] = f"""
            ARRAY(SELECT id FROM {table} WHERE user_id = :user_id AND status = 'processing'
                  AND claim_id = ANY(CAST(:stale AS text[])) FOR UPDATE SKIP LOCKED)"""
    suspect = {"retried": _bisect_half(table, limit)}
    summary = _claim_rows(conn, domain, batch, params)
    skipped = 0
    if summary.claimed == 0:
        skipped = _wait_for_locked_pending(conn, table, user_id)
        if skipped:
            summary = _claim_rows(conn, domain, batch, params)
    isolated = False
    if summary.claimed == 0:
        summary = _claim_rows(conn, domain, suspect, params)
        isolated = summary.claimed > 0
    if stale:
        _forget_claims(conn, stale)
    if summary.claimed:
        _record_owner(
            conn, domain=domain, user_id=user_id, claim_id=claim_id,
            owner=owner if owner is not None else current_owner(),
        )  # fmt: skip
    return ClaimSummary(
        claim_id,
        user_id,
        domain,
        summary.claimed,
        summary.date_from,
        summary.date_to,
        taken_over=summary.taken_over,
        retried=summary.retried,
        isolated=isolated,
        skipped_locked=skipped,
    )


def _wait_for_locked_pending(conn: Connection, table: str, user_id: int) -> int:
    """Pending rows that a claim found nothing of were skipped because another transaction
    holds them: a claim still running, or the statement of a step that gave up. Saying
    "nothing to do" then would leave them pending with nobody coming back for them, so wait
    for the holder (no longer than this step's lock_timeout: tasks.db.deadline) and let the
    caller claim again. Returns how many rows were held (0: nothing pending, no wait)."""
    held = conn.execute(
        text(f"SELECT count(*) FROM {table} WHERE user_id = :user_id AND status = 'pending'"),
        {"user_id": user_id},
    ).scalar_one()
    if held:
        log.info("claim_waits_for_locked_rows table=%s user_id=%s rows=%d", table, user_id, held)
        conn.execute(
            text(
                f"SELECT count(*) FROM (SELECT id FROM {table} WHERE user_id = :user_id "
                "AND status = 'pending' FOR UPDATE) held"
            ),
            {"user_id": user_id},
        )
    return int(held)


def suspect_from(max_attempts: int) -> int:
    """Failures in a batch after which its rows are suspects: two (one failure is retried
    whole, as a transient fault deserves), or one when two would already set them aside."""
    return max(1, min(2, max_attempts - 1))


def _bisect_half(table: str, limit: int | None) -> str:
    """The first half (by id) of the suspects that failed last together (their claim id).

    Whichever way the half ends, its sibling half is retried whole with the next batch
    (`_release_sibling_half`); a half that fails becomes the last failed group and is halved in
    turn. A fault in one row is found in about 2 log2(n) claims, a fault that has gone by the
    time the suspects are retried costs two."""
    group = f"""
        (SELECT claim_id FROM {table} WHERE user_id = :user_id AND status = 'failed'
         AND attempts >= :suspect_from AND attempts < :max_attempts
         GROUP BY claim_id ORDER BY max(processed_at) DESC, claim_id LIMIT 1)
    """
    half = f"""
        (SELECT (count(*) + 1) / 2 FROM {table} WHERE user_id = :user_id AND status = 'failed'
         AND attempts >= :suspect_from AND attempts < :max_attempts
         AND claim_id = {group})
    """
    bound = f"LEAST({half}, :limit)" if limit else half
    return f"""
        ARRAY(SELECT id FROM {table} WHERE user_id = :user_id AND status = 'failed'
              AND attempts >= :suspect_from AND attempts < :max_attempts
              AND claim_id = {group}
              ORDER BY id LIMIT {bound} FOR UPDATE SKIP LOCKED)
    """


def _claim_rows(conn: Connection, domain: str, locked: dict[str, str], params: dict) -> Any:
    """Lock the ids of each kind in `locked` (name -> id array SQL) into one row of arrays,
    then stamp them all. Every locked id is updated (a row locked here cannot change
    meanwhile), so the counts by kind are the arrays' lengths."""
    table = table_of(domain)
    arrays = ", ".join(f"{sql} AS {kind}" for kind, sql in locked.items())
    every_id = " || ".join(f"l.{kind}" for kind in locked)

    def count(kind: str) -> str:
        return f"(SELECT cardinality(l.{kind}) FROM locked l)" if kind in locked else "0"

    return conn.execute(
        text(
            f"""
            WITH locked AS MATERIALIZED (SELECT {arrays}),
            claimed AS (
                UPDATE {table} r
                SET status = 'processing', claim_id = :claim_id, claimed_at = now(),
                    updated_at = now()
                -- The cast makes the subquery one array value (ANY(SELECT ...) would be a set).
                WHERE r.id = ANY(CAST((SELECT {every_id} FROM locked l) AS bigint[]))
                RETURNING {aggregation_of(domain).date_columns}
            )
            SELECT count(*) AS claimed,
                   {count("taken_over")} AS taken_over,
                   {count("retried")} AS retried,
                   min({_local_date(domain)}) AS date_from,
                   max({_local_date(domain)}) AS date_to
            FROM claimed r, {USER_ZONE_SQL}
            """
        ),
        params,
    ).one()


def summarize_claim(conn: Connection, *, domain: str, claim_id: str) -> ClaimSummary | None:
    """What a claim holds now (a retried claim step returns the same answer)."""
    table = table_of(domain)
    row = conn.execute(
        text(
            f"""
            SELECT min(r.user_id) AS user_id, count(*) AS claimed,
                   min({_local_date(domain)}) AS date_from,
                   max({_local_date(domain)}) AS date_to
            FROM {table} r,
                 LATERAL (SELECT COALESCE((SELECT timezone FROM user_settings u
                                           WHERE u.user_id = r.user_id), 'UTC') AS name) tz
            WHERE r.claim_id = :claim_id AND r.status = 'processing'
            """
        ),
        {"claim_id": claim_id},
    ).one()
    if not row.claimed:
        return None
    return ClaimSummary(claim_id, row.user_id, domain, row.claimed, row.date_from, row.date_to)


def _lock_claim_user(conn: Connection, domain: str, claim_id: str) -> int | None:
    """Take the per-user lock of the claim's user before marking its rows. A re-zone holds it
    while it deletes the user's buckets and puts rows back to pending: without it, a mark that
    updated its rows before the re-zone and committed after would leave them `aggregated` with
    their buckets gone (the re-zone's reset saw them `processing`, its release saw them done).
    Returns the claim's user (None when the claim holds no rows any more)."""
    user_id = conn.execute(
        text(
            f"SELECT user_id FROM {table_of(domain)} "
            "WHERE claim_id = :claim_id AND status = 'processing' LIMIT 1"
        ),
        {"claim_id": claim_id},
    ).scalar()
    if user_id is not None:
        lock_user_domain(conn, domain, user_id)
    return user_id


def mark_aggregated(conn: Connection, *, domain: str, claim_id: str) -> int:
    user_id = _lock_claim_user(conn, domain, claim_id)
    if user_id is not None:
        _after_bisection_step(conn, domain, claim_id, user_id)
    result = conn.execute(
        text(
            f"UPDATE {table_of(domain)} SET status = 'aggregated', processed_at = now(), "
            "updated_at = now(), error = NULL "
            "WHERE claim_id = :claim_id AND status = 'processing'"
        ),
        {"claim_id": claim_id},
    )
    _forget_claims(conn, [claim_id])
    return result.rowcount


@dataclass(frozen=True)
class FailedClaim:
    failed: int
    # Rows that reached max_attempts with this failure: they stay `failed`, no longer retried.
    set_aside: int
    # A failed bisection step (a half, or a suspect row that failed alone): the next claim
    # narrows the fault further or retries the sibling half it released, so the workflow
    # re-sends the trigger at once. Bounded: each such failure halves a group or brings a row
    # closer to max_attempts. A failed batch is not re-sent (a fault every claim meets stops).
    bisect_further: bool = False


def mark_failed(conn: Connection, *, domain: str, claim_id: str, error: str) -> FailedClaim:
    """Rows of a failed claim become `failed` with the error name; attempts counts the tries.

    A row that reaches `max_attempts` is set aside: it keeps its reason and is not retried.
    That is logged as `rows_set_aside`, and the step's `set_aside` count becomes the
    RowsSetAside metric that the alarm watches.
    """
    table = table_of(domain)
    _lock_claim_user(conn, domain, claim_id)
    # What a step derived from the rows goes too: a failed claim's rows must not be counted by
    # another claim's recompute of the same buckets while they wait for their retry.
    derived_table = aggregation_of(domain).derived_table
    settings = get_settings()
    suspect_claim = _holds_suspects(conn, table, claim_id, settings.max_attempts)
    derived = _delete_derived_cte(derived_table, "failed")
    row = conn.execute(
        text(
            f"""
            WITH failed AS (
                UPDATE {table} SET status = 'failed', error = :error,
                       attempts = {_attempts_after_failure(table)},
                       processed_at = now(), updated_at = now()
                WHERE claim_id = :claim_id AND status = 'processing'
                RETURNING id, user_id, attempts
            ){derived}
            SELECT count(*) AS failed, min(user_id) AS user_id,
                   count(*) FILTER (WHERE attempts >= :max_attempts) AS set_aside
            FROM failed
            """
        ),
        {
            "claim_id": claim_id,
            "error": error[:200],
            "max_attempts": settings.max_attempts,
        },
    ).one()
    if suspect_claim and row.user_id is not None:
        _release_sibling_half(conn, table, row.user_id, claim_id, settings.max_attempts)
    _forget_claims(conn, [claim_id])
    if row.set_aside:
        log.warning(
            "rows_set_aside domain=%s user_id=%s claim_id=%s rows=%d error=%s",
            domain, row.user_id, claim_id, row.set_aside, error[:200],
        )  # fmt: skip
    return FailedClaim(
        failed=row.failed,
        set_aside=row.set_aside,
        bisect_further=suspect_claim and row.failed > 0,
    )


def _after_bisection_step(conn: Connection, domain: str, claim_id: str, user_id: int) -> None:
    """When half of a suspect group succeeds, the other half is retried whole with the next
    batch: a fault that has gone costs two claims, not log2(n); a row at fault in that half
    makes the batch fail, and it is bisected in turn."""
    table, max_attempts = table_of(domain), get_settings().max_attempts
    if not _holds_suspects(conn, table, claim_id, max_attempts):
        return
    _release_sibling_half(conn, table, user_id, claim_id, max_attempts)


def _attempts_after_failure(table: str) -> str:
    """A failure counts fully against a row that failed alone. In a batch it cannot be told
    whose fault it was: the count stops one short of setting the row aside, and bisection
    decides (a batch that fails twice is not `max_attempts` strikes against each row)."""
    return (
        f"CASE WHEN (SELECT count(*) FROM {table} c WHERE c.claim_id = :claim_id "
        "AND c.status = 'processing') = 1 THEN attempts + 1 "
        "ELSE LEAST(attempts + 1, GREATEST(:max_attempts - 1, 1)) END"
    )


def _holds_suspects(conn: Connection, table: str, claim_id: str, max_attempts: int) -> bool:
    """Whether the claim is a bisection step: it holds suspects (see `_bisect_half`)."""
    lowest = conn.execute(
        text(
            f"SELECT min(attempts) FROM {table} "
            "WHERE claim_id = :claim_id AND status = 'processing'"
        ),
        {"claim_id": claim_id},
    ).scalar_one()
    return lowest is not None and lowest >= suspect_from(max_attempts)


def _release_sibling_half(
    conn: Connection, table: str, user_id: int, claim_id: str, max_attempts: int
) -> int:
    """After half of a suspect group failed again or succeeded, the other half (the rest of
    the group it came from: the last other group that failed) is retried whole with the next
    batch: if the half failed, the fault is there, unless both halves hold one."""
    return conn.execute(
        text(
            f"""
            UPDATE {table} SET attempts = :batch_attempts, updated_at = now()
            WHERE user_id = :user_id AND status = 'failed'
              AND attempts >= :suspect_from AND attempts < :max_attempts
              AND claim_id = (
                  SELECT claim_id FROM {table} WHERE user_id = :user_id AND status = 'failed'
                  AND attempts >= :suspect_from AND attempts < :max_attempts
                  AND claim_id <> :claim_id
                  GROUP BY claim_id ORDER BY max(processed_at) DESC, claim_id LIMIT 1)
            """
        ),
        {
            "user_id": user_id,
            "claim_id": claim_id,
            "max_attempts": max_attempts,
            "suspect_from": suspect_from(max_attempts),
            "batch_attempts": suspect_from(max_attempts) - 1,
        },
    ).rowcount


def reset_for_reprocessing(
    conn: Connection,
    *,
    domain: str,
    user_id: int,
    date_from: date | None = None,
    date_to: date | None = None,
) -> int:
    """Put a user's settled rows (aggregated or failed) in a local date range back to pending.

    Rows a live execution holds (`processing`) and rows rejected as bad input stay as they are.
    """
    table = table_of(domain)
    result = conn.execute(
        text(
            f"""
            UPDATE {table} r SET status = 'pending', claim_id = NULL, claimed_at = NULL,
                   error = NULL, updated_at = now()
            FROM {USER_ZONE_SQL}
            WHERE r.user_id = :user_id AND r.status IN ('aggregated', 'failed')
              AND (CAST(:date_from AS date) IS NULL OR {_local_date(domain)} >= :date_from)
              AND (CAST(:date_to AS date) IS NULL OR {_local_date(domain)} <= :date_to)
            """
        ),
        {"user_id": user_id, "date_from": date_from, "date_to": date_to},
    )
    return result.rowcount


def has_suspects(conn: Connection, domain: str, user_id: int) -> bool:
    """Rows of the user that failed twice together and wait to be bisected."""
    return bool(
        conn.execute(
            text(
                f"SELECT EXISTS (SELECT 1 FROM {table_of(domain)} WHERE user_id = :user_id "
                "AND status IN ('processing', 'failed') AND status = 'failed' "
                "AND attempts >= :suspect_from AND attempts < :max_attempts)"
            ),
            {
                "user_id": user_id,
                "max_attempts": get_settings().max_attempts,
                "suspect_from": suspect_from(get_settings().max_attempts),
            },
        ).scalar_one()
    )


def users_with_pending(conn: Connection, domain: str, user_id: int | None = None) -> list[int]:
    """Users with work in `domain` (only `user_id`, when given): pending rows, `processing`
    rows (a claim decides whether their execution is gone) or failed rows still retried."""
    table = table_of(domain)
    # Two queries, each served by its own small partial index, never a scan of the history.
    rows = conn.execute(
        text(
            f"SELECT user_id FROM {table} WHERE status = 'pending' "
            "AND (CAST(:user_id AS bigint) IS NULL OR user_id = :user_id) "
            f"UNION SELECT user_id FROM {table} WHERE status IN ('processing', 'failed') "
            "AND (status = 'processing' OR attempts < :max_attempts) "
            "AND (CAST(:user_id AS bigint) IS NULL OR user_id = :user_id)"
        ),
        {"user_id": user_id, "max_attempts": get_settings().max_attempts},
    )
    return sorted(r.user_id for r in rows)


def rezone_users(conn: Connection, zones: dict[int, str]) -> list[int]:
    """Before users' zones are stored: forget what was aggregated in another zone.

    For each user whose zone changes (a user that had none was aggregated in UTC), delete the
    vitals and labs aggregates and put the settled rows back to pending, so the next claim
    recomputes every bucket in the new zone (a lab result's local date is derived again when
    its claim categorizes it). Rows a live execution holds go back to pending too (see
    `_release_claims`). Returns the users that changed."""
    if not zones:
        return []
    stored: dict[int, str] = {
        row.user_id: row.timezone
        for row in conn.execute(
            text("SELECT user_id, timezone FROM user_settings WHERE user_id = ANY(:ids)"),
            {"ids": list(zones)},
        )
    }
    changed = sorted(u for u, zone in zones.items() if stored.get(u, "UTC") != zone)
    if not changed:
        return []
    for domain in ZONED_DOMAINS:
        for user_id in changed:  # in user order: two concurrent calls cannot deadlock
            lock_user_domain(conn, domain, user_id)
        for granularity in GRANULARITIES[domain]:
            conn.execute(
                text(
                    f"DELETE FROM {aggregate_table(domain, granularity)} WHERE user_id = ANY(:ids)"
                ),
                {"ids": changed},
            )
        for user_id in changed:
            reset_for_reprocessing(conn, domain=domain, user_id=user_id)
        _release_claims(conn, domain, changed)
    return changed


def _release_claims(conn: Connection, domain: str, user_ids: list[int]) -> int:
    """Put the users' `processing` rows back to pending, taking them from their claims.

    A live claim may have aggregated its finer levels already: re-zoning deletes those buckets,
    and its coarser levels would roll up from nothing while its rows were marked done (every
    row `aggregated`, every table empty). The per-user lock that the caller holds waits for
    a running step, so no step is half way; the claim's later steps then find no rows under
    its id and change nothing, and the next claim recomputes the rows in the new zone. Their
    attempts stay as they were: the claim did not fail."""
    # What the claim derived (a lab's local date) was computed in the old zone: it goes in the
    # same statement, so the released ids never travel to the client and back.
    derived = _delete_derived_cte(aggregation_of(domain).derived_table, "released")
    released: int = conn.execute(
        text(
            f"""
            WITH released AS (
                UPDATE {table_of(domain)} SET status = 'pending', claim_id = NULL,
                       claimed_at = NULL, updated_at = now()
                WHERE user_id = ANY(:ids) AND status = 'processing' RETURNING id
            ){derived}
            SELECT count(*) FROM released
            """
        ),
        {"ids": user_ids},
    ).scalar_one()
    return released


def _delete_derived_cte(derived_table: str | None, source: str) -> str:
    """A CTE deleting what a step derived (`derived_table`) from the rows a CTE `source`
    returns; empty for a domain that derives nothing."""
    if not derived_table:
        return ""
    return (
        f", derived AS (DELETE FROM {derived_table} "
        f"WHERE raw_id = ANY(ARRAY(SELECT id FROM {source})))"
    )
