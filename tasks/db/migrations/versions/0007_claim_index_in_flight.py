"""The claim index holds only rows of claims in flight (status processing)

Revision ID: 0007_claim_index_in_flight
Revises: 0006_lab_site_aliases
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_claim_index_in_flight"
down_revision = "0006_lab_site_aliases"
branch_labels = None
depends_on = None

RAW_TABLES = ("lab_report_raw", "vitals_raw_data", "nutrition_raw_data")


def _rebuild(where: str) -> None:
    for table in RAW_TABLES:
        op.drop_index(f"ix_{table}_claim", table_name=table)
        op.create_index(f"ix_{table}_claim", table, ["claim_id"], postgresql_where=sa.text(where))


def upgrade() -> None:
    _rebuild("status = 'processing'")


def downgrade() -> None:
    _rebuild("claim_id IS NOT NULL")
