"""Transitions keyed by (plug_id, at_ms, from_state, to_state), so a retry inserts nothing.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Check-then-insert let a concurrent retry through: keep the first of any duplicates.
    op.execute(
        "DELETE FROM transitions WHERE id NOT IN (SELECT min(id) FROM transitions"
        " GROUP BY plug_id, at_ms, from_state, to_state)"
    )
    with op.batch_alter_table("transitions") as batch:
        batch.drop_index("ix_transitions_plug_at")
        batch.create_unique_constraint(
            "uq_transitions_plug_at_change", ["plug_id", "at_ms", "from_state", "to_state"]
        )


def downgrade() -> None:
    with op.batch_alter_table("transitions") as batch:
        batch.drop_constraint("uq_transitions_plug_at_change", type_="unique")
        batch.create_index("ix_transitions_plug_at", ["plug_id", "at_ms"])
