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
from tasks.lifecycle import LOCAL_DATE_SQL, USER_ZONE_SQL, reset_for_reprocessing, table_of

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


def without_jit(conn: Connection) -> None:
    """No JIT compilation in this transaction.

    A stock PostgreSQL built with LLVM compiles every statement whose estimated cost passes
    `jit_above_cost`; the recompute statements are many and small, and compiling one took
    150-300 ms against the few milliseconds it runs (direct mode was 16-22x slower with JIT on:
    bench/servers.py). Nothing here runs long enough to win the compile time back."""
    conn.execute(text("SET LOCAL jit = off"))


def _analyze(conn: Connection, table: str) -> None:
    """Give the planner the real size of a fresh temp table (it has no statistics otherwise).

    Every recompute is "for each touched bucket, an index range scan of the level below". With
    an unanalyzed temp table and statistics that lag a bulk load, the planner once chose to scan
    all of a user's readings for each of 7,000 touched hours: 30 s instead of 0.15 s. Knowing
    how many buckets are touched, it picks the per-bucket index scans on its own, so no
    planner setting has to be forced (forcing them made every cost estimate huge, which is what
    set off JIT compilation)."""
    conn.execute(text(f"ANALYZE {table}"))


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
    _analyze(conn, "touched_dates")


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
    _analyze(conn, "touched_periods")


def _replace_buckets(
    conn: Connection, table: str, touched: str, bucket: str, insert_sql: str, params: dict
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


# --- vitals ---------------------------------------------------------------------------------


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


def _vitals_hourly(conn: Connection, params: dict) -> int:
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
    _analyze(conn, "touched_hours")
    return _replace_buckets(
        conn,
        "vitals_agg_hourly",
        "touched_hours",
        "hour_start",
        f"""
        INSERT INTO vitals_agg_hourly ({_MEASURE_COLUMNS})
        SELECT :user_id, s.*
        FROM touched_hours t CROSS JOIN LATERAL (
            SELECT c.loinc_code, t.hour_start,
                   {_reading_stats("c.value", "c.start_time")}, min(c.unit)
            FROM vitals_categorized c
            WHERE c.user_id = :user_id
              AND c.start_time >= t.hour_start AND c.start_time < t.hour_end
            GROUP BY c.loinc_code
        ) s
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
        "day",
        f"""
        INSERT INTO vitals_agg_daily ({_MEASURE_COLUMNS})
        SELECT :user_id, s.*
        FROM touched_dates t, {USER_ZONE_SQL} CROSS JOIN LATERAL (
            SELECT f.loinc_code, t.day, {_MERGE_MEASURES}
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


# --- labs -----------------------------------------------------------------------------------


def _labs_daily(conn: Connection, params: dict) -> int:
    return _replace_buckets(
        conn,
        "labs_agg_daily",
        "touched_dates",
        "day",
        f"""
        INSERT INTO labs_agg_daily ({_MEASURE_COLUMNS})
        SELECT :user_id, s.*
        FROM touched_dates t CROSS JOIN LATERAL (
            SELECT c.loinc_code, t.day,
                   {_reading_stats("c.value", "c.observed_at")}, min(c.unit)
            FROM lab_report_categorized c
            WHERE c.user_id = :user_id AND c.local_date = t.day
              AND c.status = 'categorized' AND c.value IS NOT NULL AND c.unit_flag IS NULL
            GROUP BY c.loinc_code
        ) s
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
        "day",
        f"""
        INSERT INTO nutrition_agg_daily ({_NUTRITION_COLUMNS})
        SELECT :user_id, s.*
        FROM touched_dates t CROSS JOIN LATERAL (
            SELECT COALESCE(n.meal_type, 'all'), t.day, count(*), {sums}
            FROM nutrition_raw_data n
            WHERE n.user_id = :user_id AND n.meal_date = t.day
              AND n.status IN {_ACCEPTED_NUTRITION}
            GROUP BY GROUPING SETS ((n.meal_type), ())
        ) s
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


# Domains whose buckets depend on the user's zone (nutrition entries carry their local date).
ZONED_DOMAINS = ("vitals", "labs")


def rezone_users(conn: Connection, zones: dict[int, str]) -> list[int]:
    """Before users' zones are stored: forget what was aggregated in another zone.

    For each user whose zone changes (a user that had none was aggregated in UTC), delete the
    vitals and labs aggregates and put the settled rows back to pending, so the next claim
    recomputes every bucket in the new zone (a lab result's local date is derived again when
    its claim categorizes it). Rows a live execution holds keep going; their buckets are
    recomputed in the zone current when each step runs. Returns the users that changed."""
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
    for domain in ZONED_DOMAINS:
        for user_id in changed:  # in user order: two concurrent calls cannot deadlock
            lock_user_domain(conn, domain, user_id)
            for granularity in GRANULARITIES[domain]:
                conn.execute(
                    text(
                        f"DELETE FROM {aggregate_table(domain, granularity)} "
                        "WHERE user_id = :user_id"
                    ),
                    {"user_id": user_id},
                )
            reset_for_reprocessing(conn, domain=domain, user_id=user_id)
    return changed


def aggregate(
    conn: Connection, *, domain: str, claim_id: str, user_id: int, granularity: str
) -> Recomputed:
    """Recompute the `granularity` buckets of `domain` that the claim touches."""
    target = aggregate_table(domain, granularity)
    lock_user_domain(conn, domain, user_id)
    without_jit(conn)
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
