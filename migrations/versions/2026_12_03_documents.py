"""PDFs and other multi-page documents: a job's document mode, and per item its page count,
how each page was read, and its own price (a document costs per page).

Revision ID: 4e7a2c9d1f58
Revises: 9b3f6d2a8e15
Create Date: 2026-12-03 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4e7a2c9d1f58"
down_revision: str | None = "9b3f6d2a8e15"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "document_mode", sa.String(length=16), server_default="document", nullable=False
            )
        )
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("page_count", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pages", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("credits", sa.Integer(), server_default="1", nullable=False))
    # Items made before: one image each, at their job's price per image.
    op.execute(
        "UPDATE job_items SET credits = "
        "(SELECT jobs.credits_per_image FROM jobs WHERE jobs.id = job_items.job_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.drop_column("credits")
        batch_op.drop_column("pages")
        batch_op.drop_column("page_count")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("document_mode")
