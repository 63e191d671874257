"""lab_site_alias: test names a reviewer mapped to a LOINC code, with who, when and from which file

Names the matcher leaves uncategorized are exported for review (`healthflow labs review
--export`); the accepted mappings are stored here and win over every matcher tier. A name is
keyed as the matcher normalizes it, with the reported unit's canonical spelling ("" for none).

Revision ID: 0006_lab_site_aliases
Revises: 0005_reading_precision
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_lab_site_aliases"
down_revision = "0005_reading_precision"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lab_site_alias",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name_key", sa.Text, nullable=False),
        sa.Column("unit_key", sa.Text, nullable=False, server_default=""),
        sa.Column("loinc_code", sa.Text, nullable=False),
        sa.Column("reviewed_by", sa.Text, nullable=False),
        sa.Column(
            "reviewed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("source_file", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lab_site_alias")),
        sa.UniqueConstraint("name_key", "unit_key", name="uq_lab_site_alias_key"),
    )


def downgrade() -> None:
    op.drop_table("lab_site_alias")
