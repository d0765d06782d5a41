"""The migrations against the models and against databases of every age, on both back ends."""

from __future__ import annotations

import asyncio
import json

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from evplug.core.plug import Plug
from evplug.store import partitions, schema
from evplug.store.database import driver_url, make_engine
from evplug.store.models import Base, described
from evplug.store.repository import Repository
from evplug.store.telemetry import ReadingSink
from evplug.store.upkeep import TelemetryUpkeep


async def test_the_migrations_build_exactly_what_the_models_describe(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"include_object": described}),
                Base.metadata,
            )
        )
    assert diff == [], "the models changed without a migration: add one under store/migrations"


async def test_an_upgraded_database_is_at_head_and_upgrading_again_changes_nothing(
    engine: AsyncEngine,
) -> None:
    assert await schema.current(engine) == schema.head()
    assert await schema.upgrade(engine) == schema.head()
    await schema.check(engine)


async def test_a_database_from_before_migrations_is_upgraded_from_the_baseline(
    bare_engine: AsyncEngine,
) -> None:
    await schema.upgrade(bare_engine, schema.BASELINE)
    async with bare_engine.begin() as conn:  # as create_all left it: tables, no version
        await conn.exec_driver_sql("DROP TABLE alembic_version")
        for at_ms in (1, 1, 2):  # a retry that check-then-insert let through
            await conn.exec_driver_sql(
                "INSERT INTO transitions (plug_id, session_id, from_state, to_state, trigger,"
                f" at_ms) VALUES ('p', '', 'A', 'B', 't', {at_ms})"
            )
    assert await schema.current(bare_engine) == schema.BASELINE
    assert await schema.upgrade(bare_engine) == schema.head()
    async with bare_engine.connect() as conn:
        kept = await conn.exec_driver_sql("SELECT at_ms FROM transitions ORDER BY at_ms")
        assert [at for (at,) in kept] == [1, 2]


async def test_a_schema_behind_is_refused_naming_the_command_that_upgrades_it(
    bare_engine: AsyncEngine,
) -> None:
    with pytest.raises(schema.SchemaMismatch, match=r"none \(empty\).*`evplug db upgrade`"):
        await schema.check(bare_engine)
    await schema.upgrade(bare_engine, schema.BASELINE)
    with pytest.raises(schema.SchemaMismatch, match=r"at schema revision 0001.*evplug db upgrade"):
        await schema.check(bare_engine)


async def test_a_schema_newer_than_the_code_is_refused_asking_for_a_newer_evplug(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(schema.SchemaMismatch, match=r"revision 9999, newer.*run a newer evplug"):
        await schema.check(engine)


async def test_readings_are_keyed_time_first(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        key = await conn.run_sync(lambda sync: inspect(sync).get_pk_constraint("readings"))
    assert key["constrained_columns"] == ["timestamp_ms", "plug_id"]


async def test_two_upgrades_at_once_both_end_at_head(
    bare_engine: AsyncEngine, database_url: str
) -> None:
    other = make_engine(driver_url(database_url))
    try:
        async with asyncio.timeout(30):  # unserialised, they can wait on each other for ever
            revisions = await asyncio.gather(schema.upgrade(bare_engine), schema.upgrade(other))
    finally:
        await other.dispose()
    assert revisions == [schema.head()] * 2


async def test_readings_from_before_the_rollups_are_kept_partitioned_and_rolled_up(
    bare_engine: AsyncEngine,
) -> None:
    day = 19_675 * partitions.DAY_MS  # a UTC midnight
    times = (day + 1_000, day + 61_000, day + partitions.DAY_MS + 5)
    await schema.upgrade(bare_engine, "0004")
    async with bare_engine.begin() as conn:
        for at_ms in times:
            await conn.exec_driver_sql(
                "INSERT INTO readings (plug_id, timestamp_ms, actual_state, current_a, voltage_v,"
                f" power_factor, active_power_w, energy_wh) VALUES ('p', {at_ms}, 1, 1, 240, 1,"
                " 240, 1)"
            )
    await schema.upgrade(bare_engine)
    async with bare_engine.connect() as conn:
        kept = await conn.exec_driver_sql("SELECT timestamp_ms FROM readings ORDER BY 1")
        assert [at for (at,) in kept] == list(times)
        if bare_engine.dialect.name == "postgresql":
            days = await partitions.existing(conn)
            assert sorted(days) == [19_675, 19_676]
    await TelemetryUpkeep(bare_engine, ReadingSink(bare_engine)).roll_up(
        before_ms=times[-1] + 60_000
    )
    async with bare_engine.connect() as conn:
        rolled = await conn.exec_driver_sql("SELECT minute_ms, readings FROM reading_rollups")
        assert sorted(rolled.all()) == [(day, 1), (day + 60_000, 1), (day + partitions.DAY_MS, 1)]


async def test_plugs_from_before_meters_read_whole_and_a_downgrade_keeps_the_meters(
    bare_engine: AsyncEngine,
) -> None:
    await schema.upgrade(bare_engine, "0007")
    older = Plug("p", "f")
    older.energy_wh, older.last_counter_wh = 2.0, 10.0
    async with bare_engine.begin() as conn:
        await conn.exec_driver_sql("INSERT INTO sites VALUES ('s', 's', 30, 'AUD')")
        await conn.exec_driver_sql(
            "INSERT INTO plugs (id, site_id, fuze_id, label, model, state, snapshot, updated_ms)"
            f" VALUES ('p', 's', 'f', '', 'm', 'INITIALISING', '{json.dumps(older.snapshot())}', 0)"
        )
    await schema.upgrade(bare_engine)
    repo = Repository(bare_engine)
    (part,) = [part async for part in repo.sites.plug_snapshots()]
    assert Plug.restore(part[0].snapshot).snapshot() == older.snapshot()

    older.energy_wh, older.last_counter_wh = 5.0, None
    await repo.sites.save_meters({"p": older.meter()}, 1)
    async with bare_engine.connect() as conn:
        await conn.run_sync(lambda sync: command.downgrade(schema._config(connection=sync), "0007"))
        await conn.commit()
        stored = await conn.scalar(text("SELECT CAST(snapshot AS TEXT) FROM plugs"))
    assert Plug.restore(json.loads(stored)).snapshot() == older.snapshot()
