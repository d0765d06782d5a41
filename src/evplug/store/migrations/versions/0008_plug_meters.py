"""Plugs' meters saved apart from their snapshots: between the batches that save a plug's whole
snapshot, a checkpoint saves only what moves without them (``core.plug.Plug.METER_FIELDS``), in
a narrow table of its own.

A plug without a meter row has a whole snapshot; a downgrade folds the meters back into the
snapshots.

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
    op.create_table(
        "plug_meters",
        sa.Column("plug_id", sa.String(length=128), sa.ForeignKey("plugs.id"), primary_key=True),
        sa.Column("meter", sa.JSON(), nullable=False),
        sa.Column("saved_ms", sa.BigInteger(), nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    meter = "(SELECT meter FROM plug_meters WHERE plug_meters.plug_id = plugs.id)"
    if op.get_bind().dialect.name == "postgresql":
        fold = f"(snapshot::jsonb || {meter}::jsonb)::json"
    else:
        # A null in the meter drops its key: restored, it is a new plug's, null too.
        fold = f"json_patch(snapshot, {meter})"
    op.execute(f"UPDATE plugs SET snapshot = {fold} WHERE id IN (SELECT plug_id FROM plug_meters)")
    op.drop_table("plug_meters")
