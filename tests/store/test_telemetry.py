"""The batched telemetry sink against a real database: each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from evplug.bus.base import BusError
from evplug.core.plug import Plug
from evplug.metrics import value
from evplug.store.database import create_schema, make_engine, sqlite_turn, sqlite_url
from evplug.store.repository import Repository
from evplug.store.telemetry import ReadingSink, SinkFull

WRITTEN = "evplug_telemetry_rows_written_total"
FLUSHES = "evplug_telemetry_flushes_total"
REFUSED = "evplug_telemetry_refused_total"


def rows(n: int, start: int = 0) -> list[tuple]:
    return [(f"p{i}", 1000 + i, 1, 10.0, 240.0, 0.99, 2376.0, 5.0 + i) for i in range(start, n)]


class Acks:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


async def stored(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM readings"))).scalar_one()


async def test_acks_only_after_commit_and_a_redelivery_replaces_its_batch(
    engine: AsyncEngine,
) -> None:
    sink, acks = ReadingSink(engine, max_rows=1000), Acks()
    written, flushes = value(WRITTEN), value(FLUSHES)
    await sink.add(rows(60), acks, key="site:1")
    for _ in range(10):  # redelivered while the flush is late
        await sink.add(rows(60), acks, key="site:1")
    assert sink.buffered == 60 and acks.count == 0
    await sink.flush()
    assert acks.count == 1 and await stored(engine) == 60
    assert (value(WRITTEN), value(FLUSHES)) == (written + 60, flushes + 1)


async def test_a_failed_flush_keeps_rows_and_acks_for_the_next(bare_engine: AsyncEngine) -> None:
    engine = bare_engine  # no schema yet: writes fail
    sink, acks = ReadingSink(engine, max_rows=1000), Acks()
    await sink.add(rows(10), acks, key="a")
    with pytest.raises(Exception, match=r"no such table|does not exist"):
        await sink.flush()
    assert sink.buffered == 10 and acks.count == 0
    await create_schema(engine)
    await sink.flush()
    assert acks.count == 1 and await stored(engine) == 10


async def test_a_batchs_acks_are_in_flight_together_and_one_failing_stops_no_other(
    engine: AsyncEngine,
) -> None:
    sink = ReadingSink(engine, max_rows=1000)
    started: list[str] = []
    all_started = asyncio.Event()

    def ack(key: str) -> Callable[[], Awaitable[None]]:
        async def send() -> None:
            started.append(key)
            if len(started) == 3:
                all_started.set()
            await all_started.wait()  # a broker round trip: each waits for the others
            if key == "b":
                raise BusError("ack of 'telemetry.s': the broker did not answer in time")

        return send

    for n, key in enumerate("abc"):
        await sink.add(rows(10 * n + 10, 10 * n), ack(key), key=key)
    with pytest.raises(BusError, match="did not answer"):
        async with asyncio.timeout(5):  # one after the other, the first would wait for ever
            await sink.flush()
    assert started == ["a", "b", "c"] and await stored(engine) == 30


async def test_past_the_buffer_limit_readings_are_refused_not_dropped(engine: AsyncEngine) -> None:
    sink = ReadingSink(engine, max_rows=1000, max_buffered_rows=100)
    before = value(REFUSED, reason="backlog")
    await sink.add(rows(80), key="a")
    with pytest.raises(SinkFull, match=r"80 readings already wait .* behind or unreachable"):
        await sink.add(rows(30), key="b")
    assert sink.buffered == 80 and value(REFUSED, reason="backlog") == before + 1


async def test_a_batch_larger_than_the_whole_buffer_is_not_blamed_on_the_database(
    engine: AsyncEngine,
) -> None:
    sink = ReadingSink(engine, max_rows=1000, max_buffered_rows=100)
    before = value(REFUSED, reason="oversize_batch")
    with pytest.raises(SinkFull, match="larger than the whole buffer") as refused:
        await sink.add(rows(101), key="a")  # into an empty buffer, the database idle
    assert "reachable" not in str(refused.value)
    assert sink.buffered == 0 and value(REFUSED, reason="oversize_batch") == before + 1


async def test_each_value_lands_in_its_named_column_whatever_the_table_order(
    bare_engine: AsyncEngine,
) -> None:
    partitioned = " PARTITION BY RANGE (timestamp_ms)" * (bare_engine.dialect.name != "sqlite")
    async with bare_engine.begin() as conn:  # the columns in another order than the rows'
        await conn.exec_driver_sql(
            "CREATE TABLE readings (energy_wh FLOAT, active_power_w FLOAT NOT NULL,"
            " power_factor FLOAT NOT NULL, voltage_v FLOAT NOT NULL, current_a FLOAT NOT NULL,"
            " actual_state INTEGER NOT NULL, timestamp_ms BIGINT NOT NULL,"
            f" plug_id VARCHAR(128) NOT NULL, PRIMARY KEY (timestamp_ms, plug_id)){partitioned}"
        )
        await conn.exec_driver_sql("CREATE TABLE rollups_due (id INTEGER, minute_ms BIGINT)")
    sink = ReadingSink(bare_engine, max_rows=1000)
    await sink.add([("p1", 1000, 1, 10.0, 240.0, 0.99, 2376.0, None)])
    await sink.add([("p1", 1000, 1, 99.0, 99.0, 0.5, 1.0, 1.0)])  # the same key again: ignored
    await sink.flush()
    async with bare_engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM readings"))).mappings().one()
    assert dict(row) == {
        "plug_id": "p1", "timestamp_ms": 1000, "actual_state": 1, "current_a": 10.0,
        "voltage_v": 240.0, "power_factor": 0.99, "active_power_w": 2376.0, "energy_wh": None,
    }  # fmt: skip


async def test_a_full_buffer_is_written_in_the_background_while_the_next_fills(
    engine: AsyncEngine,
) -> None:
    sink, acks = ReadingSink(engine, max_rows=10), Acks()
    await sink.add(rows(10), acks, key="a")  # full: its write starts, the caller goes on
    assert acks.count == 0 and sink.buffered == 0
    await sink.add(rows(20, start=10), acks, key="b")  # a batch ahead: waits for the first
    assert acks.count == 1
    await sink.flush()  # waits for what is being written, then writes the rest
    assert acks.count == 2 and await stored(engine) == 20


async def test_sqlite_writers_of_one_process_take_turns_in_order(tmp_path) -> None:
    """Telemetry, effect batches and checkpoints wait for the writer before them in order,
    not in SQLite's busy handler, whose sleeps let a late comer go first."""
    engine = make_engine(sqlite_url(tmp_path / "turns.sqlite3"))
    await create_schema(engine)
    repo, sink = Repository(engine), ReadingSink(engine, max_rows=1000)
    await repo.sites.ensure_site("site", "Site", 30, "AUD")
    await repo.sites.register_plug("p", "site", "f", "sim", Plug("p", "f").snapshot())
    finished: list[str] = []

    async def write(name: str, work: Awaitable[object]) -> None:
        await work
        finished.append(name)

    turn = sqlite_turn(engine)
    assert turn is not None and sqlite_turn(engine) is turn
    await sink.add(rows(10))
    async with turn:
        writes = [
            asyncio.create_task(write("telemetry", sink.flush())),
            asyncio.create_task(write("effects", repo.effects.write([], 1))),
            asyncio.create_task(
                write("checkpoint", repo.sites.save_meters({"p": Plug("p", "f").meter()}, 1))
            ),
        ]
        await asyncio.sleep(0.2)  # a real wait: the writers are in threads of their own
        assert finished == []
    await asyncio.gather(*writes)
    assert finished == ["telemetry", "effects", "checkpoint"]
    assert await stored(engine) == 10
    await engine.dispose()
