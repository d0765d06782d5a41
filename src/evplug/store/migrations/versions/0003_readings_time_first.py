"""Readings keyed by (timestamp_ms, plug_id): new readings append at the key's end.

Keyed plug first, every batch of a site's plugs wrote into pages all over the table's B-tree;
time first, a batch lands in the last few pages however big the table grows.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _key("timestamp_ms", "plug_id")


def downgrade() -> None:
    _key("plug_id", "timestamp_ms")


def _key(*columns: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot alter a primary key: the table is copied into one with the new key.
        with op.batch_alter_table("readings", recreate="always") as batch:
            batch.create_primary_key("readings_pkey", list(columns))
    else:
        op.drop_constraint("readings_pkey", "readings", type_="primary")
        op.create_primary_key("readings_pkey", "readings", list(columns))
