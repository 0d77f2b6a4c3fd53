"""Jobs may ask for grounding and typed values; items keep the evidence of each value and
its typed (normalized) form.

Revision ID: 5c8a1e7f2b64
Revises: 7d2e4c1a9b30
Create Date: 2026-12-02 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c8a1e7f2b64"
down_revision: str | None = "7d2e4c1a9b30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("grounding", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("normalize", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("evidence", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("normalized", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.drop_column("normalized")
        batch_op.drop_column("evidence")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("normalize")
        batch_op.drop_column("grounding")
