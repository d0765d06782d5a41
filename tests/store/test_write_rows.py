"""Raw rows written many to a statement (SQLite) or by executemany (PostgreSQL): all or nothing,
repeats kept out, whatever the number of rows per statement."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from evplug.store import database, partitions, sql
from evplug.store.telemetry import COLUMNS

INSERT = sql.insert_new_rows("readings", COLUMNS)


START_MS = 1_700_000_000_000


@pytest.fixture(autouse=True)
async def day(engine: AsyncEngine) -> None:
    """On PostgreSQL, the readings' day has its partition, as the sink makes it."""
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await partitions.create(conn, {partitions.day_of(START_MS)})


def reading(n: int) -> tuple[object, ...]:
    return ("p", START_MS + n, 1, 10.0, 230.0, 0.99, 2300.0, 100.0 + n)


async def stored(engine: AsyncEngine) -> list[tuple[int, float]]:
    async with engine.connect() as conn:
        rows = await conn.exec_driver_sql(
            "SELECT timestamp_ms, energy_wh FROM readings ORDER BY timestamp_ms"
        )
        return [(ts, wh) for ts, wh in rows]


@pytest.mark.parametrize("rows_per_statement", [1, 3, 10, 1000])
async def test_every_row_is_written_once_however_they_are_split(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, rows_per_statement: int
) -> None:
    monkeypatch.setattr(sql, "_STATEMENT_PARAMETERS", rows_per_statement * len(COLUMNS))
    async with engine.begin() as conn:
        await sql.write_rows(conn, INSERT, [reading(n) for n in range(10)])
    async with engine.begin() as conn:  # a redelivery: five repeats, two new
        await sql.write_rows(conn, INSERT, [reading(n) for n in range(5, 12)])

    assert await stored(engine) == [(START_MS + n, 100.0 + n) for n in range(12)]


async def test_a_statement_that_fails_writes_none_of_the_rows(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql, "_STATEMENT_PARAMETERS", 3 * len(COLUMNS))
    rows = [reading(n) for n in range(7)]
    rows[5] = (None, *rows[5][1:])  # no plug: refused by the NOT NULL of the key
    with pytest.raises(Exception, match=r"(?i)null"):
        async with engine.begin() as conn:
            await sql.write_rows(conn, INSERT, rows)

    assert await stored(engine) == []


async def test_no_rows_is_no_statement(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await sql.write_rows(conn, INSERT, [])
    assert await stored(engine) == []


def test_an_sqlite_too_old_for_many_rows_a_statement_is_named_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(database.sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(database.sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(RuntimeError, match=r"SQLite 3\.31\.1 is too old: evplug needs 3\.33"):
        database.make_engine("sqlite+aiosqlite://")
