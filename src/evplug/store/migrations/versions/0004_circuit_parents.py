"""Nested circuits: the circuit each circuit is under (a sub-circuit under the site's supply).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "circuit_parents",
        sa.Column("id", sa.String(length=128), sa.ForeignKey("circuits.id"), primary_key=True),
        sa.Column("parent_id", sa.String(length=128), sa.ForeignKey("circuits.id"), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("circuit_parents")
