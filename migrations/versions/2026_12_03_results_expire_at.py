"""Jobs keep when their results expire, indexed, so the retention sweep finds them in SQL.

Revision ID: 1c6e9b4d7a02
Revises: 4e7a2c9d1f58
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "1c6e9b4d7a02"
down_revision: str | None = "4e7a2c9d1f58"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("results_expire_at", sa.DateTime(timezone=True), nullable=True)
        )
    # Jobs that ended before: finished_at + their TTL, in each database's own date arithmetic.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE jobs SET results_expire_at = "
            "finished_at + make_interval(secs => results_ttl_seconds) "
            "WHERE finished_at IS NOT NULL"
        )
    else:
        # SQLite keeps datetimes as text with six fraction digits (SQLAlchemy's format);
        # %f gives three, so three zeros keep the text comparable with the others.
        op.execute(
            "UPDATE jobs SET results_expire_at = strftime('%Y-%m-%d %H:%M:%f000', "
            "finished_at, '+' || results_ttl_seconds || ' seconds') "
            "WHERE finished_at IS NOT NULL"
        )
    op.create_index(
        "ix_jobs_results_expire_at",
        "jobs",
        ["results_expire_at"],
        postgresql_where=sa.text("purged_at IS NULL"),
        sqlite_where=sa.text("purged_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_jobs_results_expire_at",
        table_name="jobs",
        postgresql_where=sa.text("purged_at IS NULL"),
        sqlite_where=sa.text("purged_at IS NULL"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("results_expire_at")
