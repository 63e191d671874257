"""The aggregation engine: set-based, incremental, idempotent.

Each call recomputes only the buckets that one claim's rows touch, from the next finer level
(vitals: readings -> hourly -> daily -> weekly and monthly; labs: results -> daily -> monthly ->
quarterly -> yearly; nutrition: entries -> daily -> weekly and monthly). A recompute replaces a
bucket with what its inputs say now, so running a step twice, or two executions for one user one
after the other, gives the same tables. A transaction-level advisory lock per user and domain
serializes one user's recomputes; the last recompute of a bucket always sees every committed input.

Statistics are mergeable: count, sum, min, max and the last value with its time (avg = sum/count).
Buckets follow the user's IANA zone (UTC when unknown): hours are real hours named by their first
instant (see hour_bucket_sql for offsets that change inside an hour); days, weeks (Monday start),
months, quarters and years are local calendar periods named by their first day.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from tasks.catalog import nutrient_keys, vital_types
from tasks.errors import HealthflowError
from tasks.lifecycle import LOCAL_DATE_SQL, USER_ZONE_SQL, table_of

GRANULARITIES = {
    "vitals": ("hourly", "daily", "weekly", "monthly"),
    "labs": ("daily", "monthly", "quarterly", "yearly"),
    "nutrition": ("daily", "weekly", "monthly"),
}

_DOMAIN_LOCK_KEYS = {"labs": 1, "vitals": 2, "nutrition": 3}

_MEASURE_COLUMNS = (
    "user_id, loinc_code, bucket_start, count, sum, min, max, last_value, last_time, unit"
)


def _reading_stats(value: str, at: str) -> str:
    """The mergeable statistics of readings `value` taken at `at` (see _MERGE_MEASURES)."""
    return (
        f"count(*), sum({value}), min({value}), max({value}), "
        f"(array_agg({value} ORDER BY {at} DESC, {value} DESC))[1], max({at})"
    )


# Merge finer measure buckets into coarser ones. `last` is the value of the latest reading;
# ties on time break on the larger value so that every recompute picks the same one.
_MERGE_MEASURES = """
    sum(f.count), sum(f.sum), min(f.min), max(f.max),
    (array_agg(f.last_value ORDER BY f.last_time DESC, f.last_value DESC))[1],
    max(f.last_time), min(f.unit)
"""


class UnknownGranularity(HealthflowError, ValueError):
    """A granularity that the domain does not aggregate to."""


@dataclass(frozen=True)
class Recomputed:
    granularity: str
    buckets: int


def lock_user_domain(conn: Connection, domain: str, user_id: int) -> None:
    """Serialize one user's recomputes in one domain until the transaction ends."""
    key = (_DOMAIN_LOCK_KEYS[domain] << 48) | user_id
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def pin_bucket_plans(conn: Connection) -> None:
    """Every recompute is "for each touched bucket, an index range scan of the level below".

    Pin that plan shape for this transaction. With statistics that lag a bulk load, the
    planner once chose to scan all of a user's readings for each of 7,000 touched hours: 30 s
    instead of 0.15 s (bench/aggregate.py). A per-bucket index scan is never the wrong plan
    here, since the touched buckets are few next to the history.
    """
    for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
        conn.execute(text(f"SET LOCAL {setting} = off"))


def _touched_dates(conn: Connection, domain: str, claim_id: str, user_id: int) -> None:
    """A temp table of the local dates the claim's rows fall on (dropped at commit)."""
    conn.execute(
        text(
            f"""
            CREATE TEMP TABLE touched_dates ON COMMIT DROP AS
            SELECT DISTINCT {LOCAL_DATE_SQL[domain]} AS day
            FROM {table_of(domain)} r, {USER_ZONE_SQL}
            WHERE r.claim_id = :claim_id AND r.user_id = :user_id
            """
        ),
        {"claim_id": claim_id, "user_id": user_id},
    )


_PERIOD_LENGTH = {"week": "1 week", "month": "1 month", "quarter": "3 months", "year": "1 year"}


def _touched_periods(conn: Connection, unit: str) -> None:
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


def _replace_buckets(
    conn: Connection, table: str, touched: str, match: str, insert_sql: str, params: dict
) -> int:
    """Delete the touched buckets of `table`, then insert their recomputed contents."""
    conn.execute(
        text(f"DELETE FROM {table} a USING {touched} t WHERE a.user_id = :user_id AND {match}"),
        params,
    )
    return conn.execute(text(insert_sql), params).rowcount


@dataclass(frozen=True)
class _Shape:
    """What an aggregate table holds besides user and bucket: its key column and how finer
    rows of it merge into a coarser one."""

    columns: str
    key: str
    merge: str


def _rollup(
    conn: Connection, *, shape: _Shape, source: str, target: str, unit: str, params: dict
) -> int:
    """Recompute the touched week/month/quarter/year buckets of `target` from `source`."""
    _touched_periods(conn, unit)
    return _replace_buckets(
        conn,
        target,
        "touched_periods",
        "a.bucket_start = t.period_start",
        f"""
        INSERT INTO {target} ({shape.columns})
        SELECT :user_id, f.{shape.key}, t.period_start, {shape.merge}
        FROM touched_periods t
        JOIN {source} f ON f.user_id = :user_id
             AND f.bucket_start >= t.period_start AND f.bucket_start < t.period_end
        GROUP BY f.{shape.key}, t.period_start
        """,
        params,
    )


# --- vitals ---------------------------------------------------------------------------------


# Hourly buckets. An hourly bucket is the set of instants that share the local clock hour and
# the UTC offset; it is named by its first instant. With whole-hour offset changes these are the
# clock's hours (a fall-back day has 25, the repeated hour once per offset). Where the offset
# changes inside a local hour (Australia/Lord_Howe's 30-minute shift, Africa/Monrovia leaving
# -00:44:30 in 1972), the change starts a new bucket: that local hour is split in two buckets,
# each shorter than an hour, named 01:00+11:00 and 01:30+10:30 say. No instant is in two
# buckets, no bucket is longer than an hour, and every bucket lies within one local date.


def _local(ts: str) -> str:
    """The local wall time of instant `ts` in the user's zone (relation `tz`)."""
    return f"({ts} AT TIME ZONE tz.name)"


def _utc_offset(ts: str) -> str:
    return f"({_local(ts)} - ({ts} AT TIME ZONE 'UTC'))"


def hour_bucket_sql(ts: str) -> str:
    """The first instant of the hourly bucket that holds instant `ts`.

    `hour` is where the local hour starts if the offset has not changed during it. If the
    offset there differs, a change happened within this local hour (at most one: the tz
    database has no two changes an hour apart), and the bucket starts at that change, found to
    the second (offsets and changes are whole seconds); this runs only for instants in the
    hour after a change."""
    hour = f"({ts} - ({_local(ts)} - date_trunc('hour', {_local(ts)})))"
    return f"""
        CASE WHEN {_utc_offset(hour)} = {_utc_offset(ts)} THEN {hour}
        ELSE (SELECT min(x) FROM generate_series({hour}, {ts}, interval '1 second') x
              WHERE {_utc_offset("x")} = {_utc_offset(ts)})
        END"""


def _vitals_hourly(conn: Connection, params: dict) -> int:
    conn.execute(
        text(
            f"""
            CREATE TEMP TABLE touched_hours ON COMMIT DROP AS
            SELECT DISTINCT {hour_bucket_sql("r.start_time")} AS hour_start
            FROM vitals_raw_data r, {USER_ZONE_SQL}
            WHERE r.claim_id = :claim_id AND r.user_id = :user_id
            """
        ),
        params,
    )
    # A bucket is never longer than an hour, so its readings lie in [start, start + 1 hour);
    # of those, it holds the ones with its local hour and offset.
    return _replace_buckets(
        conn,
        "vitals_agg_hourly",
        "touched_hours",
        "a.bucket_start = t.hour_start",
        f"""
        INSERT INTO vitals_agg_hourly ({_MEASURE_COLUMNS})
        SELECT :user_id, c.loinc_code, t.hour_start,
               {_reading_stats("c.value", "c.start_time")}, min(c.unit)
        FROM touched_hours t, {USER_ZONE_SQL}
        JOIN vitals_categorized c ON c.user_id = :user_id
        WHERE c.start_time >= t.hour_start AND c.start_time < t.hour_start + interval '1 hour'
          AND date_trunc('hour', {_local("c.start_time")})
              = date_trunc('hour', {_local("t.hour_start")})
          AND {_utc_offset("c.start_time")} = {_utc_offset("t.hour_start")}
        GROUP BY c.loinc_code, t.hour_start
        """,
        params,
    )


def _vitals_daily(conn: Connection, params: dict) -> int:
    """Days roll up from hours by the local date of each hour, which is the date of every
    instant in it. A date is never turned back into an instant to decide what a day holds:
    at a midnight that happens twice (America/Havana, Atlantic/Azores) or never (a change at
    00:00 that skips to 01:00) no single instant is "the" midnight. The UTC range is only a
    superset that lets the index find the candidate hours (no offset exceeds a day)."""
    return _replace_buckets(
        conn,
        "vitals_agg_daily",
        "touched_dates",
        "a.bucket_start = t.day",
        f"""
        INSERT INTO vitals_agg_daily ({_MEASURE_COLUMNS})
        SELECT :user_id, f.loinc_code, t.day, {_MERGE_MEASURES}
        FROM touched_dates t, {USER_ZONE_SQL}
        JOIN vitals_agg_hourly f ON f.user_id = :user_id
        WHERE f.bucket_start >= ((t.day - 1)::timestamp AT TIME ZONE 'UTC')
          AND f.bucket_start < ((t.day + 2)::timestamp AT TIME ZONE 'UTC')
          AND {_local("f.bucket_start")}::date = t.day
        GROUP BY f.loinc_code, t.day
        """,
        params,
    )


# --- labs -----------------------------------------------------------------------------------


def _labs_daily(conn: Connection, params: dict) -> int:
    return _replace_buckets(
        conn,
        "labs_agg_daily",
        "touched_dates",
        "a.bucket_start = t.day",
        f"""
        INSERT INTO labs_agg_daily ({_MEASURE_COLUMNS})
        SELECT :user_id, c.loinc_code, t.day,
               {_reading_stats("c.value", "c.observed_at")}, min(c.unit)
        FROM touched_dates t
        JOIN lab_report_categorized c ON c.user_id = :user_id AND c.local_date = t.day
        WHERE c.status = 'categorized' AND c.value IS NOT NULL
          AND c.unit_flag IS NULL
        GROUP BY c.loinc_code, t.day
        """,
        params,
    )


# --- nutrition ------------------------------------------------------------------------------

_NUTRIENTS = nutrient_keys()
_NUTRITION_COLUMNS = "user_id, meal_type, bucket_start, entries, " + ", ".join(_NUTRIENTS)
# Rows that were accepted: aggregated, being processed, or whose run failed after acceptance.
_ACCEPTED_NUTRITION = "('processing', 'aggregated', 'failed')"


def _nutrition_daily(conn: Connection, params: dict) -> int:
    sums = ", ".join(f"sum(n.{k})" for k in _NUTRIENTS)
    return _replace_buckets(
        conn,
        "nutrition_agg_daily",
        "touched_dates",
        "a.bucket_start = t.day",
        f"""
        INSERT INTO nutrition_agg_daily ({_NUTRITION_COLUMNS})
        SELECT :user_id, COALESCE(n.meal_type, 'all'), n.meal_date, count(*), {sums}
        FROM touched_dates t
        JOIN nutrition_raw_data n ON n.user_id = :user_id AND n.meal_date = t.day
        WHERE n.status IN {_ACCEPTED_NUTRITION}
        GROUP BY GROUPING SETS ((n.meal_date, n.meal_type), (n.meal_date))
        """,
        params,
    )


_MEASURES = _Shape(_MEASURE_COLUMNS, "loinc_code", _MERGE_MEASURES)
_NUTRITION = _Shape(
    _NUTRITION_COLUMNS,
    "meal_type",
    "sum(f.entries), " + ", ".join(f"sum(f.{k})" for k in _NUTRIENTS),
)

# Levels computed from readings or entries ...
_FROM_ROWS = {
    ("vitals", "hourly"): _vitals_hourly,
    ("vitals", "daily"): _vitals_daily,
    ("labs", "daily"): _labs_daily,
    ("nutrition", "daily"): _nutrition_daily,
}
# ... and levels rolled up from the one below: (shape, source table, calendar unit).
_ROLLUPS = {
    ("vitals", "weekly"): (_MEASURES, "vitals_agg_daily", "week"),
    ("vitals", "monthly"): (_MEASURES, "vitals_agg_daily", "month"),
    ("labs", "monthly"): (_MEASURES, "labs_agg_daily", "month"),
    ("labs", "quarterly"): (_MEASURES, "labs_agg_monthly", "quarter"),
    ("labs", "yearly"): (_MEASURES, "labs_agg_quarterly", "year"),
    ("nutrition", "weekly"): (_NUTRITION, "nutrition_agg_daily", "week"),
    ("nutrition", "monthly"): (_NUTRITION, "nutrition_agg_daily", "month"),
}
_TABLE_PREFIX = {"vitals": "vitals_agg", "labs": "labs_agg", "nutrition": "nutrition_agg"}


def aggregate_table(domain: str, granularity: str) -> str:
    if granularity not in GRANULARITIES.get(domain, ()):
        known = ", ".join(GRANULARITIES.get(domain, ()))
        raise UnknownGranularity(
            f"{domain} has no {granularity!r} aggregates (choose from: {known})"
        )
    return f"{_TABLE_PREFIX[domain]}_{granularity}"


def aggregate(
    conn: Connection, *, domain: str, claim_id: str, user_id: int, granularity: str
) -> Recomputed:
    """Recompute the `granularity` buckets of `domain` that the claim touches."""
    target = aggregate_table(domain, granularity)
    lock_user_domain(conn, domain, user_id)
    pin_bucket_plans(conn)
    params = {"claim_id": claim_id, "user_id": user_id}
    if granularity != "hourly":  # every calendar level starts from the claim's local dates
        _touched_dates(conn, domain, claim_id, user_id)
    key = (domain, granularity)
    if key in _FROM_ROWS:
        buckets = _FROM_ROWS[key](conn, params)
    else:
        shape, source, unit = _ROLLUPS[key]
        buckets = _rollup(conn, shape=shape, source=source, target=target, unit=unit, params=params)
    return Recomputed(granularity, buckets)


# --- vitals: raw -> categorized -------------------------------------------------------------


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
            "SELECT DISTINCT name, key, low, high FROM vital_conversions"
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
            SELECT r.*, c.key, c.loinc_code, c.canonical_unit,
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
            LEFT JOIN vital_conversions c ON c.name = r.metric_name AND c.unit = r.unit_name
            """
        )
    )
    conn.execute(text("ANALYZE claim_verdicts"))
    rejected = conn.execute(
        text(
            """
            UPDATE vitals_raw_data r
            SET status = 'rejected', error = v.reason, processed_at = now(), updated_at = now()
            FROM claim_verdicts v
            WHERE r.id = ANY(ARRAY(SELECT id FROM claim_verdicts WHERE reason IS NOT NULL))
              AND r.id = v.id
            """
        )
    ).rowcount
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
    copied = conn.execute(
        text(
            """
            INSERT INTO vitals_categorized (raw_id, user_id, metric, loinc_code, start_time,
                end_time, value, unit, source, original_value, original_unit)
            SELECT id, user_id, key, loinc_code, start_time, end_time, canonical_value,
                   canonical_unit, source, value, unit
            FROM claim_verdicts
            WHERE reason IS NULL
            ON CONFLICT ON CONSTRAINT uq_vitals_categorized_reading DO NOTHING
            """
        )
    ).rowcount
    return CopyResult(copied=copied, rejected=rejected, duplicates=candidates - copied)
