"""Jobs keep their per-image price, a results TTL and when they were purged.

Revision ID: ddeef4b7a49a
Revises: 748493b4bc45
Create Date: 2026-11-21 15:30:05.154010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ddeef4b7a49a"
down_revision: str | None = "748493b4bc45"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("credits_per_image", sa.Integer(), server_default="1", nullable=False)
        )
        batch_op.add_column(
            sa.Column("results_ttl_seconds", sa.Integer(), server_default="604800", nullable=False)
        )
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
        batch_op.drop_column("results_ttl_seconds")
        batch_op.drop_column("credits_per_image")
