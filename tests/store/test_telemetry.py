"""The batched telemetry sink against a real database: each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from evplug.bus.base import BusError
from evplug.core.plug import Plug
from evplug.metrics import value
from evplug.store import partitions
from evplug.store.database import create_schema, make_engine, sqlite_turn, sqlite_url, write_turn
from evplug.store.repository import Repository
from evplug.store.telemetry import ReadingSink, SinkFull

WRITTEN = "evplug_telemetry_rows_written_total"
FLUSHES = "evplug_telemetry_flushes_total"
REFUSED = "evplug_telemetry_refused_total"


def rows(n: int, start: int = 0, at_ms: int = 1000) -> list[tuple]:
    return [(f"p{i}", at_ms + i, 1, 10.0, 240.0, 0.99, 2376.0, 5.0 + i) for i in range(start, n)]


class Acks:
    def __init__(self) -> None:
        self.count = 0
        self.sent = asyncio.Event()

    async def __call__(self) -> None:
        self.count += 1
        self.sent.set()


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
    sink, acks = ReadingSink(engine, max_rows=10, writers=1, max_buffered_rows=40), Acks()
    await sink.add(rows(10), acks, key="a")  # full: its write starts, the caller goes on
    assert acks.count == 0
    await sink.add(rows(20, start=10), acks, key="b")  # full too: waits for the writer alone
    assert acks.count == 0 and sink.buffered == 10
    await sink.add(rows(30, start=20), acks, key="c")  # half the buffer waits: so does ingest
    assert acks.count == 1 and sink.buffered == 10  # the writer took b, ingest went on
    await sink.flush()  # waits for what is being written, then writes the rest
    assert acks.count == 3 and await stored(engine) == 30


async def test_what_fills_during_a_write_is_written_when_it_ends_a_batch_at_a_time(
    engine: AsyncEngine,
) -> None:
    batches: list[int] = []
    sink = ReadingSink(engine, max_rows=10, writers=1, on_written=lambda r: batches.append(len(r)))
    acks = Acks()
    async with write_turn(engine):  # SQLite: held up behind another writer, a batch of effects
        await sink.add(rows(10), acks, key="a")
        await sink.add(rows(20, start=10), acks, key="b")  # the caller goes on
        await sink.add(rows(30, start=20), acks, key="c")
        assert sink.buffered == 20
    async with asyncio.timeout(10):  # no other message, no flush: the writer goes on alone
        while acks.count < 3:
            await acks.sent.wait()
            acks.sent.clear()
    assert batches == [10, 10, 10] and await stored(engine) == 30


async def test_a_flush_returns_once_what_a_writer_took_before_it_is_committed(
    engine: AsyncEngine,
) -> None:
    sink, acks = ReadingSink(engine, max_rows=10, writers=1), Acks()
    async with write_turn(engine):
        await sink.add(rows(10), acks, key="a")
        await asyncio.sleep(0)  # the writer takes them
        assert sink.buffered == 0
        flushing = asyncio.create_task(sink.flush())
        await asyncio.sleep(0)
        assert not flushing.done()
    await flushing
    assert acks.count == 1 and await stored(engine) == 10


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


async def test_a_batch_written_behind_commits_while_messages_keep_coming_without_a_wait(
    engine: AsyncEngine,
) -> None:
    sink, acks = ReadingSink(engine, max_rows=10), Acks()
    await sink.add(rows(10), acks, key="full")  # written behind
    await asyncio.sleep(0)  # the writer takes them
    sink.max_rows = 1_000_000  # what comes next never fills a batch
    loop = asyncio.get_running_loop()
    deadline, n = loop.time() + 10, 0
    # A backlog on the bus: each message handled at once, nothing else awaited in between.
    while acks.count == 0 and loop.time() < deadline:
        n += 1
        await sink.add(rows(1, at_ms=10_000 + n), key=n)
    assert acks.count == 1  # committed and acked while the backlog was handled
    await sink.flush()
    assert await stored(engine) == 10 + n


async def test_a_batch_across_midnight_lands_in_both_days(engine: AsyncEngine) -> None:
    midnight = 19_700 * partitions.DAY_MS
    sink = ReadingSink(engine, max_rows=1000)
    await sink.add(rows(3, at_ms=midnight - 2) + rows(6, start=3, at_ms=midnight - 2))
    await sink.flush()
    assert await stored(engine) == 6
    if engine.dialect.name == "postgresql":  # each day's readings in that day's partition
        async with engine.connect() as conn:
            for day, count in ((19_699, 2), (19_700, 4)):
                query = f"SELECT count(*) FROM ONLY {partitions.name(day)}"
                assert (await conn.exec_driver_sql(query)).scalar_one() == count


def postgresql_only(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: its batches are written one at a time")


async def test_on_postgresql_a_batch_held_up_holds_up_neither_the_next_batch_nor_its_acks(
    engine: AsyncEngine,
) -> None:
    postgresql_only(engine)
    day, other_day = (19_700 * partitions.DAY_MS, 19_701 * partitions.DAY_MS)
    sink = ReadingSink(engine, max_rows=10, writers=2, max_buffered_rows=20)
    await sink.add(rows(1, at_ms=day - 1000) + rows(1, at_ms=other_day - 1000))
    await sink.flush()  # both days' partitions made
    held, a, b, c = Acks(), Acks(), Acks(), Acks()
    async with engine.connect() as blocker:  # holds up every write into the first day
        await blocker.exec_driver_sql(f"LOCK TABLE {partitions.name(19_699)} IN SHARE MODE")
        await sink.add(rows(10, at_ms=day - 100), held, key="held")
        await sink.add(rows(10, at_ms=other_day - 100), a, key="a")
        async with asyncio.timeout(10):
            await a.sent.wait()  # committed beside the held batch, and acked
        await sink.add(rows(10, at_ms=day - 50), b, key="b")  # held too: two writers busy
        third = asyncio.create_task(sink.add(rows(10, at_ms=other_day - 50), c, key="c"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not third.done()  # waits for a writer: no more than two batches at once
        assert (held.count, b.count) == (0, 0)
        await blocker.rollback()
    async with asyncio.timeout(10):
        await third
        await sink.flush()
    assert (held.count, a.count, b.count, c.count) == (1, 1, 1, 1)
    assert await stored(engine) == 42


async def test_on_postgresql_writers_making_one_new_day_at_once_both_land(
    engine: AsyncEngine,
) -> None:
    postgresql_only(engine)
    sink, acks = ReadingSink(engine, max_rows=10, writers=2), Acks()
    day = 19_700 * partitions.DAY_MS
    with capture_logs() as logs:
        await sink.add(rows(10, at_ms=day), acks, key="a")
        await sink.add(rows(20, start=10, at_ms=day), acks, key="b")  # beside the first
        await sink.flush()
    assert [e for e in logs if e["log_level"] != "info"] == []  # neither write failed
    assert acks.count == 2 and await stored(engine) == 20
