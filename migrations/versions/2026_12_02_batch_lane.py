"""Jobs may run through the provider's Batch API (mode batch): the provider batches and
their state, and each item's lane.

Revision ID: 9b3f6d2a8e15
Revises: 5c8a1e7f2b64
Create Date: 2026-12-02 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9b3f6d2a8e15"
down_revision: str | None = "5c8a1e7f2b64"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "provider_batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_batch_id", sa.String(length=200), nullable=True),
        sa.Column("provider_status", sa.String(length=32), nullable=True),
        sa.Column("input_file_id", sa.String(length=200), nullable=True),
        sa.Column("output_file_id", sa.String(length=200), nullable=True),
        sa.Column("error_file_id", sa.String(length=200), nullable=True),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("completed_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("input_bytes", sa.BigInteger(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("lease_expires_at", _WHEN, nullable=True),
        sa.Column("next_poll_at", _WHEN, nullable=True),
        sa.Column("poll_seconds", sa.Float(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("submitted_at", _WHEN, nullable=True),
        sa.Column("in_progress_at", _WHEN, nullable=True),
        sa.Column("expires_at", _WHEN, nullable=True),
        sa.Column("ended_at", _WHEN, nullable=True),
        sa.Column("recorded_at", _WHEN, nullable=True),
        sa.Column("files_deleted_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_provider_batches_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_batches")),
    )
    op.create_index(
        op.f("ix_provider_batches_job_id"), "provider_batches", ["job_id"], unique=False
    )
    op.create_index(
        "ix_provider_batches_status_next_poll_at",
        "provider_batches",
        ["status", "next_poll_at"],
        unique=False,
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mode", sa.String(length=8), server_default="live", nullable=False)
        )
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lane", sa.String(length=8), server_default="live", nullable=False)
        )
        batch_op.add_column(sa.Column("provider_batch_id", sa.Uuid(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_job_items_provider_batch_id"), ["provider_batch_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_job_items_provider_batch_id_provider_batches"),
            "provider_batches",
            ["provider_batch_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_job_items_provider_batch_id_provider_batches"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_job_items_provider_batch_id"))
        batch_op.drop_column("provider_batch_id")
        batch_op.drop_column("lane")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("mode")
    op.drop_index("ix_provider_batches_status_next_poll_at", table_name="provider_batches")
    op.drop_index(op.f("ix_provider_batches_job_id"), table_name="provider_batches")
    op.drop_table("provider_batches")
