"""Work handed to the mothership (telemetry upkeep, the InfluxDB export) runs with its loops."""

from __future__ import annotations

from pathlib import Path

from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock, settle
from evplug.mothership.runtime import Background, Mothership
from evplug.store.database import create_schema, make_engine, sqlite_url
from evplug.store.repository import Repository
from evplug.store.telemetry import ReadingSink


async def test_background_work_runs_at_its_interval_and_finishes_when_the_mothership_stops(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    engine = make_engine(sqlite_url(tmp_path / "m.sqlite3"))
    await create_schema(engine)
    done: list[str] = []

    async def work() -> None:
        done.append("work")

    async def finish() -> None:
        done.append("finish")

    mothership = Mothership(
        MemoryBus(clock),
        Repository(engine),
        ReadingSink(engine),
        clock,
        background=[Background("upkeep", 10.0, work, finish)],
    )
    await mothership.start()
    await settle()  # every loop is waiting
    try:
        await clock.advance(9.9)
        assert done == []
        await clock.advance(0.1)
        assert done == ["work"]
        await clock.advance(10)
        assert done == ["work", "work"]
    finally:
        await mothership.stop()
        await engine.dispose()
    assert done == ["work", "work", "finish"]
