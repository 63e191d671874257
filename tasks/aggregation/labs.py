"""Labs: results categorized to LOINC codes (tasks.steps.labs), aggregated daily, monthly,
quarterly and yearly by the local date they were collected on.

Days are computed from the categorized results, months from days, quarters from months and
years from quarters. A result counts only when it has a code, a value and a known unit.
"""

from __future__ import annotations

from sqlalchemy import Connection

from tasks.aggregation.base import (
    MEASURE_COLUMNS,
    MEASURES,
    DomainAggregation,
    Params,
    Rollup,
    reading_stats,
    replace_buckets,
)
from tasks.db.models import LabCategorized, LabRaw

# A result's local date: its instant in the user's zone, or the local time the report gave.
LOCAL_DATE_SQL = "COALESCE((r.collected_at AT TIME ZONE tz.name)::date, r.collected_local::date)"


def _labs_daily(conn: Connection, params: Params) -> int:
    return replace_buckets(
        conn,
        "labs_agg_daily",
        "touched_dates",
        "day",
        f"""
        INSERT INTO labs_agg_daily ({MEASURE_COLUMNS})
        SELECT :user_id, s.*
        FROM touched_dates t CROSS JOIN LATERAL (
            SELECT c.loinc_code, t.day,
                   {reading_stats("c.value", "c.observed_at")}, min(c.unit), max(c.decimals)
            FROM lab_report_categorized c
            WHERE c.user_id = :user_id AND c.local_date = t.day
              AND c.status = 'categorized' AND c.value IS NOT NULL AND c.unit_flag IS NULL
            GROUP BY c.loinc_code
        ) s
        """,
        params,
    )


LABS = DomainAggregation(
    domain="labs",
    raw_table=LabRaw.__tablename__,
    derived_table=LabCategorized.__tablename__,
    local_date_sql=LOCAL_DATE_SQL,
    date_columns="r.collected_at, r.collected_local",
    zoned=True,
    lock_key=1,
    shape=MEASURES,
    granularities=("daily", "monthly", "quarterly", "yearly"),
    from_rows={"daily": _labs_daily},
    rollups={
        "monthly": Rollup("daily", "month"),
        "quarterly": Rollup("monthly", "quarter"),
        "yearly": Rollup("quarterly", "year"),
    },
)
