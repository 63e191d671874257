"""entry_id on raw rows: a re-sent source record is a duplicate, not a new row

Revision ID: 0004_recovery_entry_ids
Revises: 0003_recovery_claims
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_recovery_entry_ids"
down_revision = "0003_recovery_claims"
branch_labels = None
depends_on = None

RAW_TABLES = ("lab_report_raw", "vitals_raw_data", "nutrition_raw_data")


def upgrade() -> None:
    for table in RAW_TABLES:
        op.add_column(table, sa.Column("entry_id", sa.Text(), nullable=True))
        op.create_index(
            f"uq_{table}_entry",
            table,
            ["user_id", "entry_id"],
            unique=True,
            postgresql_where=sa.text("entry_id IS NOT NULL"),
        )


def downgrade() -> None:
    for table in RAW_TABLES:
        op.drop_index(f"uq_{table}_entry", table_name=table)
        op.drop_column(table, "entry_id")
