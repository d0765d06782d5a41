"""Engine creation: SQLite (embedded default) tuned for one writer and many readers, or
PostgreSQL through asyncpg."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
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


def make_engine(url: str) -> AsyncEngine:
    # orjson: plug snapshots are written and read by the tens of thousands (checkpoints, starts).
    engine = create_async_engine(url, json_serializer=_json_text, json_deserializer=orjson.loads)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


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
