"""Retention: old raw readings go, their rollups stay; on PostgreSQL by whole day partitions."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from evplug.metrics import value
from evplug.store import partitions
from evplug.store.partitions import DAY_MS
from evplug.store.rollups import MINUTE_MS
from evplug.store.telemetry import ReadingSink
from evplug.store.upkeep import TelemetryUpkeep, UpkeepConfig
from tests.conftest import wait_for
from tests.store.test_rollups import reading

NOW_MS = 1_700_006_400_000 + 12 * 3_600_000  # noon, UTC
RETENTION = UpkeepConfig(retention_ms=30 * DAY_MS, rollup_delay_ms=MINUTE_MS)
EXPIRED = "evplug_telemetry_expired_total"
PRUNED = "evplug_telemetry_pruned_total"


def oldest_kept(engine: AsyncEngine) -> int:
    """30 days before now: to the minute on SQLite, to the day (whole partitions) on PostgreSQL."""
    cutoff = NOW_MS - 30 * DAY_MS
    return cutoff // DAY_MS * DAY_MS if engine.dialect.name == "postgresql" else cutoff


async def count(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


async def one_reading_a_day(engine: AsyncEngine, sink: ReadingSink, days: int) -> None:
    """At 10:00 of each of the last ``days`` days, one reading of plug p."""
    for day in range(days, 0, -1):
        await sink.add([reading("p", NOW_MS - day * DAY_MS - 2 * 3_600_000, 100.0, float(day))])
    await sink.flush()


async def test_pruning_keeps_every_rollup_and_drops_only_raw_readings_past_the_retention(
    engine: AsyncEngine,
) -> None:
    sink = ReadingSink(engine)
    upkeep = TelemetryUpkeep(engine, sink, RETENTION)
    await one_reading_a_day(engine, sink, 40)
    await upkeep.run(NOW_MS)  # nothing rolled up before: pruning rolls its minutes up first
    # The reading 30 days and 2 h ago goes; on PostgreSQL its day stays until all of it is old.
    kept = 30 if engine.dialect.name == "postgresql" else 29
    assert await count(engine, "SELECT count(*) FROM readings") == kept
    assert (
        await count(
            engine, f"SELECT count(*) FROM readings WHERE timestamp_ms < {oldest_kept(engine)}"
        )
        == 0
    )
    assert await count(engine, "SELECT count(*) FROM reading_rollups") == 40


async def test_a_reading_older_than_the_retention_is_not_written_and_is_counted(
    engine: AsyncEngine,
) -> None:
    sink = ReadingSink(engine)
    upkeep = TelemetryUpkeep(engine, sink, RETENTION)
    await upkeep.run(NOW_MS)
    before = value(EXPIRED)
    await sink.add([reading("p", NOW_MS - 31 * DAY_MS, 1.0, 1.0), reading("p", NOW_MS, 1.0, 2.0)])
    await sink.flush()
    assert value(EXPIRED) == before + 1
    assert await count(engine, "SELECT count(*) FROM readings") == 1


async def test_postgresql_makes_day_partitions_ahead_and_drops_whole_old_ones(
    engine: AsyncEngine,
) -> None:
    if engine.dialect.name != "postgresql":
        return  # SQLite has no partitions: the test above covers its pruning
    sink = ReadingSink(engine)
    await one_reading_a_day(engine, sink, 40)
    await TelemetryUpkeep(engine, sink, RETENTION).run(NOW_MS)
    async with engine.connect() as conn:
        days = sorted(await partitions.existing(conn))
    today = NOW_MS // DAY_MS
    assert days == list(range(today - 30, today + 3))  # 30 days back, today, two ahead
    brin = await count(
        engine,
        f"SELECT count(*) FROM pg_indexes WHERE tablename = '{partitions.name(today)}'"
        " AND indexdef LIKE '%USING brin (timestamp_ms)%'",
    )
    assert brin == 1


async def test_ingest_goes_on_while_old_readings_are_pruned(engine: AsyncEngine) -> None:
    sink = ReadingSink(engine, max_rows=100_000, max_buffered_rows=1_000_000)
    if engine.dialect.name == "postgresql":  # a prune is one partition a day: many days
        await one_reading_a_day(engine, sink, 90)
    else:  # a prune is many small deletes
        old = NOW_MS - 40 * DAY_MS
        await sink.add([reading(f"p{i % 50}", old + i, 1.0, None) for i in range(60_000)])
        await sink.flush()
    upkeep = TelemetryUpkeep(
        engine, sink, UpkeepConfig(retention_ms=30 * DAY_MS, prune_step_rows=500, max_steps=10_000)
    )
    await upkeep.roll_up(before_ms=NOW_MS)  # what pruning rolls up first, done beforehand
    await upkeep.add_partitions(NOW_MS)
    unit = "partitions" if engine.dialect.name == "postgresql" else "rows"
    pruned = value(PRUNED, unit=unit)
    pruning = asyncio.create_task(upkeep.prune(NOW_MS))
    await wait_for(lambda: value(PRUNED, unit=unit) > pruned)  # its first step is done
    await sink.add([reading("new", NOW_MS + i, 1.0, None) for i in range(100)])
    await sink.flush()
    assert not pruning.done(), "the batch waited for the whole prune"
    await pruning
    assert await count(engine, "SELECT count(*) FROM readings WHERE plug_id = 'new'") == 100
    assert (
        await count(
            engine, f"SELECT count(*) FROM readings WHERE timestamp_ms < {oldest_kept(engine)}"
        )
        == 0
    )
