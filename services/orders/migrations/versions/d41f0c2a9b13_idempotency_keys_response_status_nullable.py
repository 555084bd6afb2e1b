"""idempotency_keys.response_status: nullable with a server default (expand step of its removal)

Revision ID: d41f0c2a9b13
Revises: b0aea279eca0
Create Date: 2026-12-02 10:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "d41f0c2a9b13"
down_revision: Union[str, Sequence[str], None] = "b0aea279eca0"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Expand: the code of this release no longer writes or reads the column; replicas still running
    # the previous code keep writing it (and their ORM reads it as an int: the default gives them 0,
    # never NULL, for the rows the new code inserts). Metadata-only on PostgreSQL (no table rewrite).
    # The contract step, dropping the column, is the next release's (README "Pending contract
    # migrations").
    with op.batch_alter_table("idempotency_keys") as batch_op:
        batch_op.alter_column(
            "response_status", existing_type=sa.Integer(), nullable=True, server_default=sa.text("0")
        )


def downgrade() -> None:
    op.execute("UPDATE idempotency_keys SET response_status = 0 WHERE response_status IS NULL")
    with op.batch_alter_table("idempotency_keys") as batch_op:
        batch_op.alter_column("response_status", existing_type=sa.Integer(), nullable=False, server_default=None)
