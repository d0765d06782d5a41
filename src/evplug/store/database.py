"""Engine creation: SQLite (embedded default) tuned for one writer and many readers, or
PostgreSQL through asyncpg."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import orjson
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from evplug.store import schema

_DRIVERS = {"sqlite:///": "sqlite+aiosqlite:///", "postgresql://": "postgresql+asyncpg://"}


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def driver_url(url: str) -> str:
    """A plain database URL (sqlite:///PATH, postgresql://user@host/db) with its async driver."""
    for plain, with_driver in _DRIVERS.items():
        if url.startswith(plain):
            return with_driver + url.removeprefix(plain)
    raise ValueError(f"{url}: not a sqlite:/// or postgresql:// URL")


# Rows are written many to a statement (``sql.write_rows``): UPDATE ... FROM came in 3.33, the
# default limit of 32,766 parameters in 3.32.
SQLITE_AT_LEAST = (3, 33)


def make_engine(url: str) -> AsyncEngine:
    # orjson: plug snapshots are written and read by the tens of thousands (checkpoints, starts).
    engine = create_async_engine(url, json_serializer=_json_text, json_deserializer=orjson.loads)
    if engine.dialect.name == "sqlite":
        if sqlite3.sqlite_version_info < SQLITE_AT_LEAST:
            raise RuntimeError(
                f"SQLite {sqlite3.sqlite_version} is too old: evplug needs"
                f" {'.'.join(map(str, SQLITE_AT_LEAST))} or newer (UPDATE ... FROM, 32,766"
                " parameters a statement); use a newer Python build or PostgreSQL"
            )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


# The turn lock of each SQLite engine, for the event loop it was made on.
_TURNS: WeakKeyDictionary[Engine, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    WeakKeyDictionary()
)


def sqlite_turn(engine: AsyncEngine) -> asyncio.Lock | None:
    """On SQLite, the lock this process's writers take turns by; None on PostgreSQL.

    SQLite has one writer at a time, and a writer that finds the file locked waits in its busy
    handler, which sleeps in steps of up to 100 ms and lets whoever tries next go first: a
    telemetry batch and a batch of effects would each wait out the other's sleeps. Taking turns
    on one lock, in order, the next writer starts the moment the last commits.
    """
    if engine.dialect.name != "sqlite":
        return None
    loop = asyncio.get_running_loop()
    held = _TURNS.get(engine.sync_engine)
    if held is None or held[0] is not loop:
        held = _TURNS[engine.sync_engine] = (loop, asyncio.Lock())
    return held[1]


def write_turn(engine: AsyncEngine) -> AbstractAsyncContextManager[object]:
    """Hold while writing: the SQLite writers' turn (``sqlite_turn``), nothing on PostgreSQL."""
    return sqlite_turn(engine) or contextlib.nullcontext()


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # First, so every later statement waits for a lock rather than failing at once.
    cursor.execute("PRAGMA busy_timeout=10000")
    # NORMAL in WAL mode survives a process crash (power loss may cost the last commit).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def create_schema(engine: AsyncEngine) -> None:
    """The schema at this code's revision: migrations applied as needed."""
    await schema.upgrade(engine)
