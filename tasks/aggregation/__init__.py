"""The aggregation engine: set-based, incremental, idempotent, one module per domain.

Each call recomputes only the buckets that one claim's rows touch, from the next finer level
(vitals: readings -> hourly -> daily -> weekly and monthly; labs: results -> daily -> monthly ->
quarterly -> yearly; nutrition: entries -> daily -> weekly and monthly). A recompute replaces a
bucket with what its inputs say now, so running a step twice, or two executions for one user one
after the other, gives the same tables. A transaction-level advisory lock per user and domain
serializes one user's recomputes; the last recompute of a bucket always sees every committed input.

Statistics are mergeable: count, sum, min, max and the last value with its time (avg = sum/count).
Buckets follow the user's IANA zone (UTC when unknown): hours are real hours named by their first
instant (see tasks.aggregation.vitals for offsets that change inside an hour); days, weeks (Monday
start), months, quarters and years are local calendar periods named by their first day.

tasks.aggregation.base holds what the domains share; vitals, labs and nutrition each own their
tables, local date and SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from sqlalchemy import Connection

from tasks.aggregation.base import (
    USER_ZONE_SQL,
    Domain,
    DomainAggregation,
    Granularity,
    UnknownGranularity,
    lock_user,
    without_jit,
)
from tasks.aggregation.labs import LABS
from tasks.aggregation.nutrition import NUTRITION
from tasks.aggregation.vitals import VITALS, CopyResult, copy_vitals_to_categorized
from tasks.errors import HealthflowError

__all__ = [
    "DOMAINS",
    "GRANULARITIES",
    "USER_ZONE_SQL",
    "ZONED_DOMAINS",
    "CopyResult",
    "Domain",
    "DomainAggregation",
    "Granularity",
    "Recomputed",
    "UnknownDomain",
    "UnknownGranularity",
    "aggregate",
    "aggregate_table",
    "aggregation_of",
    "copy_vitals_to_categorized",
    "lock_user_domain",
    "without_jit",
]

DOMAINS: dict[Domain, DomainAggregation] = {a.domain: a for a in (LABS, VITALS, NUTRITION)}
GRANULARITIES: dict[Domain, tuple[Granularity, ...]] = {
    domain: aggregation.granularities for domain, aggregation in DOMAINS.items()
}
# Domains whose buckets depend on the user's zone.
ZONED_DOMAINS: tuple[Domain, ...] = tuple(d for d, a in DOMAINS.items() if a.zoned)


class UnknownDomain(HealthflowError, ValueError):
    """A domain healthflow does not aggregate."""


@dataclass(frozen=True)
class Recomputed:
    granularity: Granularity
    buckets: int


def aggregation_of(domain: str) -> DomainAggregation:
    """The aggregation of a domain named by a string from outside (a CLI argument, a step)."""
    if domain not in DOMAINS:
        raise UnknownDomain(f"no domain {domain!r} (choose from: {', '.join(get_args(Domain))})")
    return DOMAINS[domain]


def aggregate_table(domain: str, granularity: str) -> str:
    return aggregation_of(domain).table(granularity)


def lock_user_domain(conn: Connection, domain: str, user_id: int) -> None:
    """Serialize one user's recomputes in one domain until the transaction ends."""
    lock_user(conn, aggregation_of(domain), user_id)


def aggregate(
    conn: Connection, *, domain: Domain, claim_id: str, user_id: int, granularity: Granularity
) -> Recomputed:
    """Recompute the `granularity` buckets of `domain` that the claim touches."""
    aggregation = aggregation_of(domain)
    aggregation.table(granularity)  # an unknown level fails before any lock is taken
    lock_user(conn, aggregation, user_id)
    without_jit(conn)
    buckets = aggregation.recompute(conn, granularity, {"claim_id": claim_id, "user_id": user_id})
    return Recomputed(granularity, buckets)
