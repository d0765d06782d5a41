"""Per-minute rollups of the readings, kept after raw readings are pruned; on PostgreSQL the
readings partitioned by day (BRIN on time), so pruning drops whole partitions.

Existing readings are kept: on PostgreSQL they are copied into the day partitions they fall in.
Every minute that holds readings is marked due, so their rollups are computed in the background
once the mothership runs, not while the schema is upgraded.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_DAY_MS = 86_400_000
_COLUMNS = (
    "plug_id, timestamp_ms, actual_state, current_a, voltage_v, power_factor, active_power_w,"
    " energy_wh"
)
_READINGS = (
    "plug_id VARCHAR(128) NOT NULL, timestamp_ms BIGINT NOT NULL, actual_state INTEGER NOT NULL,"
    " current_a FLOAT NOT NULL, voltage_v FLOAT NOT NULL, power_factor FLOAT NOT NULL,"
    " active_power_w FLOAT NOT NULL, energy_wh FLOAT"
)


def upgrade() -> None:
    op.create_table(
        "reading_rollups",
        sa.Column("plug_id", sa.String(length=128), nullable=False),
        sa.Column("minute_ms", sa.BigInteger(), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.Column("power_sum_w", sa.Float(), nullable=False),
        sa.Column("max_power_w", sa.Float(), nullable=False),
        sa.Column("energy_first_ms", sa.BigInteger(), nullable=True),
        sa.Column("energy_first_wh", sa.Float(), nullable=True),
        sa.Column("energy_last_ms", sa.BigInteger(), nullable=True),
        sa.Column("energy_last_wh", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("minute_ms", "plug_id", name="reading_rollups_pkey"),
    )
    op.create_index("ix_reading_rollups_plug_minute", "reading_rollups", ["plug_id", "minute_ms"])
    op.create_table(
        "rollups_due",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("minute_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _partition_readings()
    op.execute(
        "INSERT INTO rollups_due (minute_ms)"
        " SELECT DISTINCT timestamp_ms / 60000 * 60000 FROM readings"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE readings RENAME TO readings_partitioned")
        op.execute(
            f"CREATE TABLE readings ({_READINGS},"
            " CONSTRAINT readings_unpartitioned_pkey PRIMARY KEY (timestamp_ms, plug_id))"
        )
        op.execute(f"INSERT INTO readings ({_COLUMNS}) SELECT {_COLUMNS} FROM readings_partitioned")
        op.execute("DROP TABLE readings_partitioned")
        op.execute(
            "ALTER TABLE readings RENAME CONSTRAINT readings_unpartitioned_pkey TO readings_pkey"
        )
    op.drop_table("rollups_due")
    op.drop_index("ix_reading_rollups_plug_minute", table_name="reading_rollups")
    op.drop_table("reading_rollups")


def _partition_readings() -> None:
    op.execute("ALTER TABLE readings RENAME TO readings_unpartitioned")
    op.execute(
        "ALTER TABLE readings_unpartitioned RENAME CONSTRAINT readings_pkey TO readings_old_pkey"
    )
    op.execute(
        f"CREATE TABLE readings ({_READINGS},"
        " CONSTRAINT readings_pkey PRIMARY KEY (timestamp_ms, plug_id))"
        " PARTITION BY RANGE (timestamp_ms)"
    )
    # Rows of a day are appended in time order, so block ranges summarise them tightly.
    op.execute("CREATE INDEX readings_time_brin ON readings USING brin (timestamp_ms)")
    days = op.get_bind().exec_driver_sql(
        f"SELECT DISTINCT timestamp_ms / {_DAY_MS} FROM readings_unpartitioned"
    )
    for (day,) in days.all():
        # The same names and bounds as evplug.store.partitions gives its partitions.
        name = dt.datetime.fromtimestamp(day * 86_400, dt.UTC).strftime("readings_p%Y%m%d")
        op.execute(
            f"CREATE TABLE {name} PARTITION OF readings"
            f" FOR VALUES FROM ({day * _DAY_MS}) TO ({(day + 1) * _DAY_MS})"
        )
    op.execute(f"INSERT INTO readings ({_COLUMNS}) SELECT {_COLUMNS} FROM readings_unpartitioned")
    op.execute("DROP TABLE readings_unpartitioned")
