"""reservation_lines snapshot: each reserved line keeps the product as it was when reserved

Revision ID: 9a4c6e2b7d10
Revises: 3052dc9c1b57
Create Date: 2026-11-30 14:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "9a4c6e2b7d10"
down_revision: Union[str, Sequence[str], None] = "3052dc9c1b57"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Expand only: nullable columns without a default (no table rewrite, no lock held for long);
    # replicas still running the previous code neither read nor write them. Lines reserved before
    # this migration keep NULLs: answers fill them from the product row.
    op.add_column("reservation_lines", sa.Column("sku", sa.String(length=64), nullable=True))
    op.add_column("reservation_lines", sa.Column("name", sa.String(length=200), nullable=True))
    op.add_column("reservation_lines", sa.Column("unit_price_cents", sa.BigInteger(), nullable=True))
    op.add_column("reservation_lines", sa.Column("currency_code", sa.String(length=3), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reservation_lines") as batch_op:
        batch_op.drop_column("currency_code")
        batch_op.drop_column("unit_price_cents")
        batch_op.drop_column("name")
        batch_op.drop_column("sku")
