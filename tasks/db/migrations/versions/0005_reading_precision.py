"""decimals on readings and aggregates: a reading keeps the precision it was reported with

Exports rounded every min, max and last to a per-code catalog precision (a 4.5 mmol/L potassium
exported as 4.0). Readings are now stored as reported (or converted once, rounded once) and
carry their decimals, so that nothing downstream has to guess them: the mean of a bucket shows
one decimal more than its finest reading. Existing rows get the decimals of their stored value's
shortest form; the lab_report_* views show the mean at that precision too.

Revision ID: 0005_reading_precision
Revises: 0004_recovery_entry_ids
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_reading_precision"
down_revision = "0004_recovery_entry_ids"
branch_labels = None
depends_on = None

READINGS = ("lab_report_categorized", "vitals_categorized")
AGGREGATES = (
    *(f"labs_agg_{level}" for level in ("daily", "monthly", "quarterly", "yearly")),
    *(f"vitals_agg_{level}" for level in ("hourly", "daily", "weekly", "monthly")),
)
LEVELS = ("daily", "monthly", "quarterly", "yearly")
# tasks.precision.sql_decimals("value") as of this revision: the decimals of a float8's
# shortest printed form ("1e-05" has 5).
_TEXT = "lower(value::text)"
VALUE_DECIMALS = (
    f"length(split_part(split_part({_TEXT}, 'e', 1), '.', 2)) "
    f"- COALESCE(NULLIF(split_part({_TEXT}, 'e', 2), '')::int, 0)"
)


def _view(level: str, avg: str, extra: str = "") -> str:
    return (
        f"CREATE OR REPLACE VIEW lab_report_{level} AS "
        "SELECT user_id, loinc_code, bucket_start, count, sum, min, max, "
        f"{avg} AS avg, last_value, last_time, unit, updated_at{extra} "
        f"FROM labs_agg_{level}"
    )


def upgrade() -> None:
    for table in (*READINGS, *AGGREGATES):
        op.add_column(table, sa.Column("decimals", sa.SmallInteger(), nullable=True))
    for table in READINGS:
        op.execute(
            f"UPDATE {table} SET decimals = {VALUE_DECIMALS} "
            "WHERE value IS NOT NULL AND value NOT IN ('NaN', 'Infinity', '-Infinity')"
        )
    # A mean carries one decimal more than its readings (tasks.precision.mean_decimals).
    mean = (
        "CASE WHEN decimals IS NULL THEN sum / count "
        "ELSE round((sum / count)::numeric, greatest(decimals, 0) + 1)::float8 END"
    )
    for level in LEVELS:
        op.execute(_view(level, mean, ", decimals"))


def downgrade() -> None:
    for level in LEVELS:
        op.execute(f"DROP VIEW lab_report_{level}")
        op.execute(_view(level, "sum / count"))
    for table in (*READINGS, *AGGREGATES):
        op.drop_column(table, "decimals")
