"""Plugs' meters saved apart from their snapshots: between the batches that save a plug's whole
snapshot, a checkpoint saves only what moves without them (``core.plug.Plug.METER_FIELDS``).

A NULL meter (every plug's at first) leaves the snapshot whole; a downgrade folds the meters back
into the snapshots.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("plugs", sa.Column("meter", sa.JSON(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        fold = "(snapshot::jsonb || meter::jsonb)::json"
    else:
        # A null in the meter drops its key: restored, it is a new plug's, null too.
        fold = "json_patch(snapshot, meter)"
    op.execute(f"UPDATE plugs SET snapshot = {fold} WHERE meter IS NOT NULL")
    with op.batch_alter_table("plugs") as batch:
        batch.drop_column("meter")
