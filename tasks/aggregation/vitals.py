"""Vitals: readings from devices, copied to a categorized table with LOINC codes and canonical
units, then aggregated hourly, daily, weekly (Monday start) and monthly in the user's zone.

Hours are computed from the categorized readings, days from hours, weeks and months from days.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from tasks.aggregation.base import (
    MEASURE_COLUMNS,
    MEASURES,
    USER_ZONE_SQL,
    DomainAggregation,
    Params,
    Rollup,
    analyze,
    reading_stats,
    replace_buckets,
    without_jit,
)
from tasks.catalog import vital_types
from tasks.db.models import VitalsCategorized, VitalsRaw
from tasks.precision import sql_converted_decimals, sql_decimals, sql_round

# Hourly buckets. An hourly bucket is the set of instants that share the local clock hour and
# the UTC offset; it is named by its first instant. With whole-hour offset changes these are the
# clock's hours (a fall-back day has 25, the repeated hour once per offset). Where the offset
# changes inside a local hour (Australia/Lord_Howe's 30-minute shift, Africa/Monrovia leaving
# -00:44:30 in 1972), the change starts a new bucket: that local hour is split in two buckets,
# each shorter than an hour, named 01:00+11:00 and 01:30+10:30 say. No instant is in two
# buckets, no bucket is longer than an hour, and every bucket lies within one local date.


def _offset_at(ts: str) -> str:
    """The UTC offset of instant `ts` in the user's zone (relation `tz`)."""
    return f"((({ts}) AT TIME ZONE tz.name) - (({ts}) AT TIME ZONE 'UTC'))"


def _first_second(start: str, end: str, condition: str) -> str:
    """The first whole second in [start, end] where `condition` (on `x`) holds. Used only for
    the rare bucket that an offset change cuts (offsets and changes are whole seconds)."""
    return (
        f"(SELECT min(x) FROM generate_series({start}, {end}, interval '1 second') x "
        f"WHERE {condition})"
    )


def _vitals_hourly(conn: Connection, params: Params) -> int:
    # Per reading (one zone conversion, kept once by OFFSET 0): `hour`, where its local hour
    # starts if the offset held all hour, and its offset. Per distinct (hour, offset): the
    # bucket starts at `hour` if the offset there is the same, else at the change inside the
    # hour; it ends at the hour's end, or at a change before it. (At most one change per hour:
    # the tz database has no two changes an hour apart.)
    hour_end = "h.hour + interval '1 hour'"
    last_second = "h.hour + interval '59 min 59 s'"
    change_into = _first_second("h.hour", hour_end, f"{_offset_at('x')} = h.utc_offset")
    second_before = "x - interval '1 second'"
    change_away = _first_second(
        "h.hour",
        hour_end,
        f"{_offset_at('x')} <> h.utc_offset AND {_offset_at(second_before)} = h.utc_offset",
    )
    conn.execute(
        text(
            f"""
            CREATE TEMP TABLE touched_hours ON COMMIT DROP AS
            WITH hours AS (
                SELECT DISTINCT q.ts - (q.local - date_trunc('hour', q.local)) AS hour,
                       q.local - (q.ts AT TIME ZONE 'UTC') AS utc_offset
                FROM (SELECT r.start_time AS ts, r.start_time AT TIME ZONE tz.name AS local
                      FROM vitals_raw_data r, {USER_ZONE_SQL}
                      WHERE r.claim_id = :claim_id AND r.user_id = :user_id
                        AND r.status = 'processing'
                      OFFSET 0) q
            ), bounded AS (
                SELECT CASE WHEN {_offset_at("h.hour")} = h.utc_offset THEN h.hour
                            ELSE {change_into} END AS hour_start,
                       CASE WHEN {_offset_at(last_second)} = h.utc_offset THEN {hour_end}
                            ELSE {change_away} END AS hour_end
                FROM hours h, {USER_ZONE_SQL}
            )
            SELECT DISTINCT hour_start, hour_end FROM bounded
            """
        ),
        params,
    )
    analyze(conn, "touched_hours")
    return replace_buckets(
        conn,
        "vitals_agg_hourly",
        "touched_hours",
        "hour_start",
        f"""
        INSERT INTO vitals_agg_hourly ({MEASURE_COLUMNS})
        SELECT :user_id, s.*
        FROM touched_hours t CROSS JOIN LATERAL (
            SELECT c.loinc_code, t.hour_start,
                   {reading_stats("c.value", "c.start_time")}, min(c.unit), max(c.decimals)
            FROM vitals_categorized c
            WHERE c.user_id = :user_id
              AND c.start_time >= t.hour_start AND c.start_time < t.hour_end
            GROUP BY c.loinc_code
        ) s
        """,
        params,
    )


def _vitals_daily(conn: Connection, params: Params) -> int:
    """Days roll up from hours by the local date of each hour, which is the date of every
    instant in it. A date is never turned back into an instant to decide what a day holds:
    at a midnight that happens twice (America/Havana, Atlantic/Azores) or never (a change at
    00:00 that skips to 01:00) no single instant is "the" midnight. The UTC range is only a
    superset that lets the index find the candidate hours (no offset exceeds a day)."""
    return replace_buckets(
        conn,
        "vitals_agg_daily",
        "touched_dates",
        "day",
        f"""
        INSERT INTO vitals_agg_daily ({MEASURE_COLUMNS})
        SELECT :user_id, s.*
        FROM touched_dates t, {USER_ZONE_SQL} CROSS JOIN LATERAL (
            SELECT f.loinc_code, t.day, {MEASURES.merge}
            FROM vitals_agg_hourly f
            WHERE f.user_id = :user_id
              AND f.bucket_start >= ((t.day - 1)::timestamp AT TIME ZONE 'UTC')
              AND f.bucket_start < ((t.day + 2)::timestamp AT TIME ZONE 'UTC')
              AND (f.bucket_start AT TIME ZONE tz.name)::date = t.day
            GROUP BY f.loinc_code
        ) s
        """,
        params,
    )


VITALS = DomainAggregation(
    domain="vitals",
    raw_table=VitalsRaw.__tablename__,
    derived_table=VitalsCategorized.__tablename__,
    local_date_sql="(r.start_time AT TIME ZONE tz.name)::date",
    date_columns="r.start_time",
    zoned=True,
    lock_key=2,
    shape=MEASURES,
    granularities=("hourly", "daily", "weekly", "monthly"),
    from_rows={"hourly": _vitals_hourly, "daily": _vitals_daily},
    rollups={"weekly": Rollup("daily", "week"), "monthly": Rollup("daily", "month")},
)


# --- raw -> categorized ---------------------------------------------------------------------


@dataclass(frozen=True)
class CopyResult:
    copied: int
    rejected: int
    duplicates: int


def _load_conversions(conn: Connection) -> None:
    """The vital catalog as a keyed temp table: (metric name, normalized unit) -> conversion.

    Names are catalog keys and LOINC codes. A keyed table keeps the join an index lookup
    whatever the planner believes about a fresh claim (a VALUES list, unanalyzed, was once
    joined by a nested loop: 17 s instead of 1 s for 137k readings).
    """
    conn.execute(
        text(
            """
            CREATE TEMP TABLE vital_conversions (
                name text, unit text, key text, loinc_code text, factor float8, shift float8,
                canonical_unit text, low float8, high float8, PRIMARY KEY (name, unit)
            ) ON COMMIT DROP
            """
        )
    )
    conn.execute(
        text(
            "INSERT INTO vital_conversions VALUES (:name, :unit, :key, :loinc, :factor, "
            ":shift, :canonical, :low, :high)"
        ),
        [
            {
                "name": name,
                "unit": unit,
                "key": vital.key,
                "loinc": vital.loinc_code,
                "factor": factor,
                "shift": shift,
                "canonical": vital.canonical_unit,
                "low": vital.low,
                "high": vital.high,
            }
            for name, vital in sorted(vital_types().items())
            for unit, (factor, shift) in sorted(vital.units.items())
        ],
    )
    conn.execute(
        text(
            "CREATE TEMP TABLE vital_metrics ON COMMIT DROP AS "
            "SELECT DISTINCT name, key, low, high, canonical_unit FROM vital_conversions"
        )
    )
    conn.execute(text("ALTER TABLE vital_metrics ADD PRIMARY KEY (name)"))
    conn.execute(text("ANALYZE vital_conversions, vital_metrics"))


def copy_vitals_to_categorized(conn: Connection, *, claim_id: str, user_id: int) -> CopyResult:
    """Give the claim's readings their LOINC code, canonical unit and converted value.

    Readings that cannot be accepted become `rejected` with the same reasons ingest uses; an
    identical re-synced reading is kept in raw but counts once in the categorized table.

    The claim's rows go through an analyzed temp table first: a fresh claim has no statistics,
    and a planner that expects one row picks nested loops that cost 3 s instead of 0.3 s.
    Rows of the big tables are found by primary key through arrays, a plan that no stale
    statistic can turn into a scan of the whole history.
    """
    without_jit(conn)
    _load_conversions(conn)
    params = {"claim_id": claim_id, "user_id": user_id}
    conn.execute(
        text(
            """
            CREATE TEMP TABLE claim_readings ON COMMIT DROP AS
            SELECT id, user_id, lower(metric) AS metric_name, lower(trim(unit)) AS unit_name,
                   value, unit, start_time, end_time, source
            FROM vitals_raw_data
            WHERE claim_id = :claim_id AND user_id = :user_id AND status = 'processing'
            """
        ),
        params,
    )
    conn.execute(text("ANALYZE claim_readings"))
    conn.execute(
        text(
            """
            CREATE TEMP TABLE claim_verdicts ON COMMIT DROP AS
            SELECT r.*, c.key, c.loinc_code, c.canonical_unit, c.factor, c.shift,
                   r.value * c.factor + c.shift AS canonical_value,
                   CASE
                       WHEN m.key IS NULL THEN 'unknown_metric'
                       WHEN r.value IS NULL THEN 'unparseable_value'
                       WHEN r.end_time < r.start_time THEN 'end_before_start'
                       WHEN r.value IN ('NaN', 'Infinity', '-Infinity') THEN 'non_finite_value'
                       WHEN c.factor IS NULL THEN 'unconvertible_unit'
                       WHEN r.value * c.factor + c.shift NOT BETWEEN m.low AND m.high
                           THEN 'out_of_range'
                   END AS reason
            FROM claim_readings r
            LEFT JOIN vital_metrics m ON m.name = r.metric_name
            -- A reading without a unit is in the metric's canonical unit (docs/formats.md).
            LEFT JOIN vital_conversions c ON c.name = r.metric_name
                AND c.unit = COALESCE(r.unit_name, lower(m.canonical_unit))
            """
        )
    )
    conn.execute(text("ANALYZE claim_verdicts"))
    # One update per reason (a handful at most), by id: like the claim, rows of the raw table
    # are found through an array, never through a join whose order rests on its statistics.
    reasons = conn.execute(
        text("SELECT DISTINCT reason FROM claim_verdicts WHERE reason IS NOT NULL")
    ).scalars()
    rejected = sum(
        conn.execute(
            text(
                """
                UPDATE vitals_raw_data
                SET status = 'rejected', error = :reason, processed_at = now(),
                    updated_at = now()
                WHERE id = ANY(ARRAY(SELECT id FROM claim_verdicts WHERE reason = :reason))
                """
            ),
            {"reason": reason},
        ).rowcount
        for reason in list(reasons)
    )
    # A rerun replaces what an earlier try of this claim wrote; a late duplicate delivery
    # after the claim was marked finds no `processing` rows and changes nothing.
    conn.execute(
        text(
            "DELETE FROM vitals_categorized "
            "WHERE raw_id = ANY(ARRAY(SELECT id FROM claim_readings))"
        )
    )
    candidates = conn.execute(
        text("SELECT count(*) FROM claim_verdicts WHERE reason IS NULL")
    ).scalar_one()
    # Kept as sent in the canonical unit; else converted once, rounded once to the precision
    # the reading was sent with (tasks.precision.converted_decimals, as labs are).
    rounded_decimals = sql_converted_decimals(sql_decimals("v.value"), "v.factor")
    copied = conn.execute(
        text(
            f"""
            INSERT INTO vitals_categorized (raw_id, user_id, metric, loinc_code, start_time,
                end_time, value, unit, source, original_value, original_unit, decimals)
            SELECT id, user_id, key, loinc_code, start_time, end_time,
                   CASE WHEN unchanged THEN value ELSE {sql_round("canonical_value", "decimals")}
                   END,
                   canonical_unit, source, value, COALESCE(unit, canonical_unit), decimals
            FROM (
                SELECT v.*, v.factor = 1 AND v.shift = 0 AS unchanged,
                       CASE WHEN v.factor = 1 AND v.shift = 0 THEN {sql_decimals("v.value")}
                            ELSE {rounded_decimals} END AS decimals
                FROM claim_verdicts v
                WHERE v.reason IS NULL
            ) v
            ON CONFLICT ON CONSTRAINT uq_vitals_categorized_reading DO NOTHING
            """
        )
    ).rowcount
    return CopyResult(copied=copied, rejected=rejected, duplicates=candidates - copied)
