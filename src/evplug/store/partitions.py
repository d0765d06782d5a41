"""PostgreSQL's readings by day: one partition per UTC day, named ``readings_pYYYYMMDD``.

Pruning a day is dropping its partition (no row-by-row delete, no bloat), and each day's primary
key index stays the size of one day, so inserts cost the same however much history is kept.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncConnection

DAY_MS = 86_400_000
_PREFIX = "readings_p"


def day_of(ms: int) -> int:
    """Days since the epoch (UTC) of a time in milliseconds."""
    return ms // DAY_MS


def name(day: int) -> str:
    return dt.datetime.fromtimestamp(day * 86_400, dt.UTC).strftime(f"{_PREFIX}%Y%m%d")


def create_statement(day: int) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {name(day)} PARTITION OF readings"
        f" FOR VALUES FROM ({day * DAY_MS}) TO ({(day + 1) * DAY_MS})"
    )


async def existing(conn: AsyncConnection) -> dict[int, str]:
    """The readings' partitions by day."""
    result = await conn.exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'readings'::regclass"
    )
    days = {}
    for (relname,) in result.all():
        if relname.startswith(_PREFIX):
            when = dt.datetime.strptime(relname.removeprefix(_PREFIX), "%Y%m%d")
            days[day_of(int(when.replace(tzinfo=dt.UTC).timestamp() * 1000))] = relname
    return days


async def create(conn: AsyncConnection, days: set[int]) -> None:
    for day in sorted(days):
        await conn.exec_driver_sql(create_statement(day))
