"""Nutrition: meal entries aggregated daily, weekly (Monday start) and monthly, per meal type
and for all meals together ('all').

Entries carry their own local date (`meal_date`), so no zone is involved. Days are summed from
the entries, weeks and months from days.
"""

from __future__ import annotations

from sqlalchemy import Connection

from tasks.aggregation.base import (
    DomainAggregation,
    Params,
    Rollup,
    Shape,
    exact_sum,
    replace_buckets,
)
from tasks.catalog import nutrient_keys
from tasks.db.models import NutritionRaw

_NUTRIENTS = nutrient_keys()
_COLUMNS = "user_id, meal_type, bucket_start, entries, " + ", ".join(_NUTRIENTS)
# Rows that were accepted: aggregated, being processed, or whose run failed after acceptance.
_ACCEPTED = "('processing', 'aggregated', 'failed')"


def _nutrition_daily(conn: Connection, params: Params) -> int:
    sums = ", ".join(exact_sum(f"n.{k}") for k in _NUTRIENTS)
    return replace_buckets(
        conn,
        "nutrition_agg_daily",
        "touched_dates",
        "day",
        f"""
        INSERT INTO nutrition_agg_daily ({_COLUMNS})
        SELECT :user_id, s.*
        FROM touched_dates t CROSS JOIN LATERAL (
            SELECT COALESCE(n.meal_type, 'all'), t.day, count(*), {sums}
            FROM nutrition_raw_data n
            WHERE n.user_id = :user_id AND n.meal_date = t.day
              AND n.status IN {_ACCEPTED}
            GROUP BY GROUPING SETS ((n.meal_type), ())
        ) s
        """,
        params,
    )


NUTRITION = DomainAggregation(
    domain="nutrition",
    raw_table=NutritionRaw.__tablename__,
    derived_table=None,
    local_date_sql="r.meal_date",
    date_columns="r.meal_date",
    zoned=False,
    lock_key=3,
    shape=Shape(
        _COLUMNS,
        "meal_type",
        "sum(f.entries), " + ", ".join(exact_sum(f"f.{k}") for k in _NUTRIENTS),
    ),
    granularities=("daily", "weekly", "monthly"),
    from_rows={"daily": _nutrition_daily},
    rollups={"weekly": Rollup("daily", "week"), "monthly": Rollup("daily", "month")},
)
