"""Payments: who made a ledger entry, provider events applied once, customers, saved cards,
payment intents (top-ups and guest holds) and auto top-up settings.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(
            sa.Column("actor", sa.String(length=100), nullable=False, server_default="")
        )
    op.create_table(
        "payment_events",
        sa.Column("id", sa.String(length=100), primary_key=True),
        sa.Column("type", sa.String(length=60), nullable=False),
        sa.Column("processed_ms", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=False),
    )
    op.create_table(
        "payment_customers",
        sa.Column("user_id", sa.String(length=64), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("customer_id", sa.String(length=100), nullable=False, unique=True),
        sa.Column("default_payment_method", sa.String(length=100), nullable=False),
    )
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.String(length=100), primary_key=True),
        sa.Column("user_id", sa.String(length=64), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("brand", sa.String(length=40), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_payment_methods_user_id", "payment_methods", ["user_id"])
    op.create_table(
        "payment_intents",
        sa.Column("id", sa.String(length=100), primary_key=True),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("user_id", sa.String(length=64), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("failure", sa.String(length=200), nullable=False),
        sa.Column("plug_id", sa.String(length=128), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("captured_cents", sa.BigInteger(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_payment_intents_user_id", "payment_intents", ["user_id"])
    op.create_table(
        "auto_top_ups",
        sa.Column("user_id", sa.String(length=64), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("threshold_cents", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("paused_reason", sa.String(length=200), nullable=False),
        sa.Column("paused_ms", sa.BigInteger(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("auto_top_ups")
    op.drop_index("ix_payment_intents_user_id", "payment_intents")
    op.drop_table("payment_intents")
    op.drop_index("ix_payment_methods_user_id", "payment_methods")
    op.drop_table("payment_methods")
    op.drop_table("payment_customers")
    op.drop_table("payment_events")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("actor")
