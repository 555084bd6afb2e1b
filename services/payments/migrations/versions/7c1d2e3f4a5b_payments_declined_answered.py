"""payments.declined_answered: a late capture of a payment answered declined is refunded

Revision ID: 7c1d2e3f4a5b
Revises: 3313d7db2baa
Create Date: 2026-11-30 13:05:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "7c1d2e3f4a5b"
down_revision: Union[str, Sequence[str], None] = "3313d7db2baa"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Expand only (a default, no rewrite of what running replicas read): safe in a rolling update.
    op.add_column("payments", sa.Column("declined_answered", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("payments", "declined_answered")
