"""claims: who runs each claim, so that stale claims are taken over

Revision ID: 0003_recovery_claims
Revises: 0002_seed_table_names
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_recovery_claims"
down_revision = "0002_seed_table_names"
branch_labels = None
depends_on = None

RAW_TABLES = ("lab_report_raw", "vitals_raw_data", "nutrition_raw_data")


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("claim_id", sa.Text(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("process_started", sa.Double(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "domain IN ('labs', 'vitals', 'nutrition')", name=op.f("ck_claims_domain")
        ),
        sa.CheckConstraint(
            "num_nulls(host, pid, process_started) IN (0, 3)", name=op.f("ck_claims_owner")
        ),
        sa.PrimaryKeyConstraint("claim_id", name=op.f("pk_claims")),
    )
    for table in RAW_TABLES:
        op.create_index(
            f"ix_{table}_unsettled",
            table,
            ["user_id"],
            unique=False,
            postgresql_where=sa.text("status IN ('processing', 'failed')"),
        )


def downgrade() -> None:
    for table in RAW_TABLES:
        op.drop_index(f"ix_{table}_unsettled", table_name=table)
    op.drop_table("claims")
