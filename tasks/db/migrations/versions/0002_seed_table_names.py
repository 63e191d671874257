"""the lab aggregate names of the SQS-worker system healthflow replaces, as views

Apps moving from that system read lab aggregates from lab_report_daily, lab_report_monthly,
lab_report_quarterly and lab_report_yearly. These views give them those names over healthflow's
labs_agg_* tables, with the average precomputed, so the app's queries keep working unchanged.

Revision ID: 0002_seed_table_names
Revises: 0001
"""

from alembic import op

revision = "0002_seed_table_names"
down_revision = "0001"
branch_labels = None
depends_on = None

LEVELS = ("daily", "monthly", "quarterly", "yearly")


def upgrade() -> None:
    for level in LEVELS:
        op.execute(
            f"CREATE VIEW lab_report_{level} AS "
            "SELECT user_id, loinc_code, bucket_start, count, sum, min, max, "
            "sum / count AS avg, last_value, last_time, unit, updated_at "
            f"FROM labs_agg_{level}"
        )


def downgrade() -> None:
    for level in LEVELS:
        op.execute(f"DROP VIEW IF EXISTS lab_report_{level}")
