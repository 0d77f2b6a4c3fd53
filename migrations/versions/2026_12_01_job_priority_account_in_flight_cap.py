"""Jobs get a priority (interactive, normal, batch) and accounts a cap on images in
flight; the fair claim orders a job's queued items by index.

Revision ID: 7d2e4c1a9b30
Revises: 3b1f0c2d9e47
Create Date: 2026-12-01 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d2e4c1a9b30"
down_revision: str | None = "3b1f0c2d9e47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("priority", sa.String(length=16), server_default="normal", nullable=False)
        )
        batch_op.create_index("ix_jobs_status", ["status"], unique=False)
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_in_flight", sa.Integer(), nullable=True))
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.drop_index("ix_job_items_job_id_status")
        batch_op.create_index(
            "ix_job_items_job_id_status_index", ["job_id", "status", "index"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.drop_index("ix_job_items_job_id_status_index")
        batch_op.create_index("ix_job_items_job_id_status", ["job_id", "status"], unique=False)
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("max_in_flight")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status")
        batch_op.drop_column("priority")
