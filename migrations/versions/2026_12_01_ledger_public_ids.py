"""Ledger entries get an opaque public id: the API showed the table's global counter,
which told every tenant how busy the others were.

Revision ID: 3b1f0c2d9e47
Revises: ddeef4b7a49a
Create Date: 2026-12-01 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3b1f0c2d9e47"
down_revision: str | None = "ddeef4b7a49a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_id", sa.Uuid(), nullable=True))
    # Existing rows get random ids in SQL, not row by row from Python (ledgers are long).
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE credit_ledger SET public_id = gen_random_uuid()")
    else:
        # SQLAlchemy keeps a Uuid on SQLite as 32 hex digits.
        op.execute("UPDATE credit_ledger SET public_id = lower(hex(randomblob(16)))")
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.alter_column("public_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.create_index("ix_credit_ledger_public_id", ["public_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_ledger_public_id")
        batch_op.drop_column("public_id")
