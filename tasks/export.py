"""CSV export of the aggregate tables, with local bucket labels (the export contract)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from typing import IO, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text

from tasks.aggregation import aggregate_table
from tasks.catalog import nutrient_keys
from tasks.precision import format_mean, format_reading, reported_precision

MEASURE_COLUMNS = (
    "user_id", "loinc_code", "granularity", "bucket_start",
    "count", "sum", "min", "max", "avg", "last", "unit",
)  # fmt: skip
NUTRITION_COLUMNS = ("user_id", "granularity", "bucket_start", "entries", *nutrient_keys())


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local_label(bucket: object, zone: str) -> str:
    if isinstance(bucket, datetime):  # an hour: local start with its offset
        return bucket.astimezone(_zone(zone)).isoformat()
    return bucket.isoformat()  # type: ignore[attr-defined]


def _number(value: float | None) -> str:
    """Exact figures (sums, nutrient totals): only the float noise of the arithmetic goes."""
    if value is None:
        return ""
    return repr(round(value, 9))


def _bucket_decimals(row: Any) -> int:
    """The finest decimals of a bucket's readings; for a bucket written before they were
    stored, the finest of its min, max and last."""
    if row.decimals is not None:
        return int(row.decimals)
    return max(reported_precision(None, v).decimals for v in (row.min, row.max, row.last_value))


def export_rows(
    engine: Engine,
    domain: str,
    granularity: str,
    *,
    user_id: int | None = None,
    by_meal_type: bool = False,
) -> Iterator[list[str]]:
    table = aggregate_table(domain, granularity)
    zone_join = "LEFT JOIN user_settings u ON u.user_id = a.user_id"
    user_filter = "AND a.user_id = :user_id" if user_id is not None else ""
    params = {"user_id": user_id}
    with engine.connect() as conn:
        if domain == "nutrition":
            yield [*NUTRITION_COLUMNS, *(["meal_type"] if by_meal_type else [])]
            meal_filter = "" if by_meal_type else "AND a.meal_type = 'all'"
            nutrient_sql = ", ".join(f"a.{k}" for k in nutrient_keys())
            rows = conn.execution_options(stream_results=True).execute(
                text(
                    f"SELECT a.user_id, a.bucket_start, a.entries, {nutrient_sql}, a.meal_type "
                    f"FROM {table} a WHERE TRUE {user_filter} {meal_filter} "
                    "ORDER BY a.user_id, a.bucket_start, a.meal_type"
                ),
                params,
            )
            for row in rows:
                amounts = [_number(v) for v in row[3 : 3 + len(nutrient_keys())]]
                extra = [row.meal_type] if by_meal_type else []
                yield [str(row.user_id), granularity, row.bucket_start.isoformat(),
                       str(row.entries), *amounts, *extra]  # fmt: skip
            return
        yield list(MEASURE_COLUMNS)
        rows = conn.execution_options(stream_results=True).execute(
            text(
                "SELECT a.user_id, a.loinc_code, a.bucket_start, a.count, a.sum, a.min, a.max, "
                "a.last_value, a.unit, a.decimals, COALESCE(u.timezone, 'UTC') AS zone "
                f"FROM {table} a {zone_join} WHERE TRUE {user_filter} "
                "ORDER BY a.user_id, a.loinc_code, a.bucket_start"
            ),
            params,
        )
        # min, max and last are readings: written exactly as stored, which is as reported (or
        # converted once and rounded once). Only the mean is rounded, to one decimal more
        # than the bucket's finest reading.
        for row in rows:
            count = int(row._mapping["count"])  # `row.count` is also tuple.count to a checker
            yield [
                str(row.user_id), row.loinc_code, granularity,
                _local_label(row.bucket_start, row.zone), str(count), _number(row.sum),
                format_reading(row.min), format_reading(row.max),
                format_mean(row.sum, count, _bucket_decimals(row)),
                format_reading(row.last_value),
                row.unit,
            ]  # fmt: skip


def write_csv(rows: Iterator[list[str]], out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    count = -1
    for row in rows:
        writer.writerow(row)
        count += 1
    return max(count, 0)
