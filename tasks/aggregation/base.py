"""What every domain's aggregation shares: its types, the per-domain description, and the
set-based recompute machinery (touched buckets, replace, roll up).

A domain module (vitals, labs, nutrition) describes itself with a `DomainAggregation`: its
tables, the local date of one of its raw rows, and for each granularity either a function that
computes it from rows or the finer level it rolls up from. Everything here is SQL over the
caller's connection: no domain names, no table names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from tasks.domains import CalendarUnit, Domain, Granularity
from tasks.errors import HealthflowError

__all__ = ["CalendarUnit", "Domain", "Granularity"]

# Statement parameters of one recompute: the claim and its user.
Params = dict[str, Any]

# The user's IANA zone (UTC when unknown) as a one-row relation `tz`, for FROM clauses.
USER_ZONE_SQL = (
    "(SELECT COALESCE((SELECT timezone FROM user_settings WHERE user_id = :user_id), 'UTC') "
    "AS name) AS tz"
)


class UnknownGranularity(HealthflowError, ValueError):
    """A granularity that the domain does not aggregate to."""


@dataclass(frozen=True)
class Shape:
    """What an aggregate table holds besides user and bucket: its columns, its key column and
    how finer rows of it merge into a coarser one."""

    columns: str
    key: str
    merge: str


@dataclass(frozen=True)
class Rollup:
    """A level merged from the finer level `source`, one bucket per calendar `unit`."""

    source: Granularity
    unit: CalendarUnit


# A level computed from the domain's rows: fills its touched buckets, returns how many.
FromRows = Callable[[Connection, Params], int]


@dataclass(frozen=True)
class DomainAggregation:
    """One domain's aggregation: the tables it owns and how each of its levels is computed."""

    domain: Domain
    raw_table: str
    # Rows a step derives from raw rows, by raw_id (None: aggregates read the raw rows).
    derived_table: str | None
    # The local date of a raw row `r` in zone `tz`, and the columns of `r` that it reads.
    local_date_sql: str
    date_columns: str
    # Whether buckets follow the user's zone (nutrition entries carry their own local date).
    zoned: bool
    # Advisory lock namespace: one user's recomputes in this domain run one at a time.
    lock_key: int
    shape: Shape
    granularities: tuple[Granularity, ...]
    from_rows: Mapping[Granularity, FromRows]
    rollups: Mapping[Granularity, Rollup]

    def __post_init__(self) -> None:
        described = set(self.from_rows) | set(self.rollups)
        if described != set(self.granularities) or set(self.from_rows) & set(self.rollups):
            raise ValueError(f"{self.domain}: each granularity needs exactly one definition")
        for rollup in self.rollups.values():
            if rollup.source not in self.granularities:
                raise ValueError(f"{self.domain}: rolls up from unknown {rollup.source!r}")

    def table(self, granularity: str) -> str:
        if granularity not in self.granularities:
            raise UnknownGranularity(
                f"{self.domain} has no {granularity!r} aggregates "
                f"(choose from: {', '.join(self.granularities)})"
            )
        return f"{self.table_prefix}_{granularity}"

    @property
    def table_prefix(self) -> str:
        return f"{self.domain}_agg"

    def recompute(self, conn: Connection, granularity: Granularity, params: Params) -> int:
        """Recompute the `granularity` buckets that the claim in `params` touches."""
        target = self.table(granularity)
        if granularity != "hourly":  # every calendar level starts from the claim's local dates
            touched_dates(conn, self, params)
        if granularity in self.from_rows:
            return self.from_rows[granularity](conn, params)
        rollup = self.rollups[granularity]
        return roll_up(
            conn,
            shape=self.shape,
            source=self.table(rollup.source),
            target=target,
            unit=rollup.unit,
            params=params,
        )


def lock_user(conn: Connection, aggregation: DomainAggregation, user_id: int) -> None:
    """Serialize one user's recomputes in one domain until the transaction ends."""
    key = (aggregation.lock_key << 48) | user_id
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def without_jit(conn: Connection) -> None:
    """No JIT compilation in this transaction.

    A stock PostgreSQL built with LLVM compiles every statement whose estimated cost passes
    `jit_above_cost`; the recompute statements are many and small, and compiling one took
    150-300 ms against the few milliseconds it runs (direct mode was 16-22x slower with JIT on:
    bench/servers.py). Nothing here runs long enough to win the compile time back."""
    conn.execute(text("SET LOCAL jit = off"))


def analyze(conn: Connection, table: str) -> None:
    """Give the planner the real size of a fresh temp table (it has no statistics otherwise).

    Every recompute is "for each touched bucket, an index range scan of the level below". With
    an unanalyzed temp table and statistics that lag a bulk load, the planner once chose to scan
    all of a user's readings for each of 7,000 touched hours: 30 s instead of 0.15 s. Knowing
    how many buckets are touched, it picks the per-bucket index scans on its own, so no
    planner setting has to be forced (forcing them made every cost estimate huge, which is what
    set off JIT compilation)."""
    conn.execute(text(f"ANALYZE {table}"))


def touched_dates(conn: Connection, aggregation: DomainAggregation, params: Params) -> None:
    """A temp table of the local dates the claim's rows fall on (dropped at commit)."""
    conn.execute(
        text(
            f"""
            CREATE TEMP TABLE touched_dates ON COMMIT DROP AS
            SELECT DISTINCT {aggregation.local_date_sql} AS day
            FROM {aggregation.raw_table} r, {USER_ZONE_SQL}
            WHERE r.claim_id = :claim_id AND r.user_id = :user_id AND r.status = 'processing'
            """
        ),
        params,
    )
    analyze(conn, "touched_dates")


_PERIOD_LENGTH: dict[CalendarUnit, str] = {
    "week": "1 week",
    "month": "1 month",
    "quarter": "3 months",
    "year": "1 year",
}


def _touched_periods(conn: Connection, unit: CalendarUnit) -> None:
    """Coarser periods (week/month/quarter/year) that hold the touched dates."""
    conn.execute(
        text(
            f"""
            CREATE TEMP TABLE touched_periods ON COMMIT DROP AS
            SELECT DISTINCT date_trunc('{unit}', day)::date AS period_start,
                   (date_trunc('{unit}', day) + interval '{_PERIOD_LENGTH[unit]}')::date
                       AS period_end
            FROM touched_dates
            """
        )
    )
    analyze(conn, "touched_periods")


def replace_buckets(
    conn: Connection, table: str, touched: str, bucket: str, insert_sql: str, params: Params
) -> int:
    """Delete the touched buckets of `table`, then insert their recomputed contents.

    Plans that no estimate can derail, without forcing planner settings: the deletion finds
    the buckets by primary key through an array, and every insert reads the level below with
    one LATERAL subquery per touched bucket (it aggregates, so the planner cannot flatten it
    into a join, and for each bucket an index range scan is cheaper than any scan of the
    history). An unanalyzed join of the touched buckets with a large history was planned as a
    scan of all of a user's readings per bucket: 3 s instead of 0.05 s (bench/aggregate.py)."""
    conn.execute(
        text(
            f"DELETE FROM {table} a WHERE a.user_id = :user_id "
            f"AND a.bucket_start = ANY(ARRAY(SELECT t.{bucket} FROM {touched} t))"
        ),
        params,
    )
    return conn.execute(text(insert_sql), params).rowcount


def roll_up(
    conn: Connection, *, shape: Shape, source: str, target: str, unit: CalendarUnit, params: Params
) -> int:
    """Recompute the touched week/month/quarter/year buckets of `target` from `source`."""
    _touched_periods(conn, unit)
    return replace_buckets(
        conn,
        target,
        "touched_periods",
        "period_start",
        f"""
        INSERT INTO {target} ({shape.columns})
        SELECT :user_id, s.*
        FROM touched_periods t CROSS JOIN LATERAL (
            SELECT f.{shape.key}, t.period_start, {shape.merge}
            FROM {source} f
            WHERE f.user_id = :user_id
              AND f.bucket_start >= t.period_start AND f.bucket_start < t.period_end
            GROUP BY f.{shape.key}
        ) s
        """,
        params,
    )


# --- measures: the statistics of vitals and labs --------------------------------------------

MEASURE_COLUMNS = (
    "user_id, loinc_code, bucket_start, count, sum, min, max, last_value, last_time, unit, decimals"
)


def exact_sum(value: str) -> str:
    """A float sum that does not depend on the order rows arrive in.

    Floating-point addition is not associative: summed in two physical orders (a table whose
    rows were updated in a different sequence), 5 entries gave 25.7 once and
    25.700000000000003 the other time, so the workflow and direct mode wrote different tables
    from the same data. Each value is taken at the 15 significant digits float8 guarantees,
    added exactly, and rounded once."""
    return f"sum(({value})::numeric)::float8"


def reading_stats(value: str, at: str) -> str:
    """The mergeable statistics of readings `value` taken at `at` (see MEASURES.merge)."""
    return (
        f"count(*), {exact_sum(value)}, min({value}), max({value}), "
        f"(array_agg({value} ORDER BY {at} DESC, {value} DESC))[1], max({at})"
    )


# Merge finer measure buckets into coarser ones. `last` is the value of the latest reading;
# ties on time break on the larger value so that every recompute picks the same one.
MEASURES = Shape(
    MEASURE_COLUMNS,
    "loinc_code",
    f"""
    sum(f.count), {exact_sum("f.sum")}, min(f.min), max(f.max),
    (array_agg(f.last_value ORDER BY f.last_time DESC, f.last_value DESC))[1],
    max(f.last_time), min(f.unit), max(f.decimals)
    """,
)
