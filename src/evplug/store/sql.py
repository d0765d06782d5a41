"""Statements the store's areas share: dialect-aware idempotent inserts and ledger postings."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from evplug.core import ledger
from evplug.store.models import Base, LedgerEntry, User


class UnknownUser(LookupError):
    pass


@lru_cache(maxsize=64)
def for_driver(statement: str, paramstyle: str) -> str:
    """A statement written with ``?`` placeholders, in the driver's own parameter style.

    For rows written by the thousand: the driver takes them as tuples, with no SQL compiled and
    no parameters processed per row.
    """
    if paramstyle == "qmark":
        return statement
    if paramstyle == "numeric_dollar":
        numbers = itertools.count(1)
        return re.sub(r"\?", lambda _: f"${next(numbers)}", statement)
    raise ValueError(f"no raw statements for the {paramstyle!r} parameter style")


def driver_insert(paramstyle: str, table: str, columns: Sequence[str]) -> str:
    """A raw INSERT that keeps out rows whose key is stored (``for_driver``)."""
    values = ", ".join("?" for _ in columns)
    statement = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) ON CONFLICT DO NOTHING"
    )
    return for_driver(statement, paramstyle)


def insert_new(db: AsyncSession, model: type[Base], *key: str) -> postgresql.Insert | sqlite.Insert:
    """INSERT that leaves an existing row with the same ``key`` as it is (in the db's dialect)."""
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    return insert(model).on_conflict_do_nothing(index_elements=key)


async def post_entry(db: AsyncSession, entry: ledger.Entry) -> bool:
    """Post inside the caller's transaction; False when the entry's key was posted before."""
    if await db.get(User, entry.user_id) is None:
        raise UnknownUser(entry.user_id)
    posted = await db.scalar(
        insert_new(db, LedgerEntry, "idempotency_key")
        .values(
            user_id=entry.user_id,
            kind=str(entry.kind),
            amount_cents=entry.amount_cents,
            idempotency_key=entry.idempotency_key,
            created_ms=entry.created_ms,
            memo=entry.memo,
            actor=entry.actor,
        )
        .returning(LedgerEntry.id)
    )
    if posted is None:  # the key was posted before, perhaps a moment ago by another writer
        return False
    await db.execute(
        update(User)
        .where(User.id == entry.user_id)
        .values(balance_cents=User.balance_cents + entry.amount_cents)
    )
    return True


# Snapshots and meters are written by the driver's own executemany, encoded here: SQLAlchemy's
# processing of each row's parameters (the JSON type's above all) cost more than the database's
# own work, and checkpoints write tens of thousands at a time. A whole snapshot deletes the meter
# saved before it, which is older.
_SAVE_SNAPSHOT = "UPDATE plugs SET state = ?, snapshot = ?, updated_ms = ? WHERE id = ?"
_DELETE_METER = "DELETE FROM plug_meters WHERE plug_id = ?"
_SAVE_METER = (
    "INSERT INTO plug_meters (plug_id, meter, saved_ms) VALUES (?, ?, ?)"
    " ON CONFLICT (plug_id) DO UPDATE SET meter = excluded.meter, saved_ms = excluded.saved_ms"
)


async def save_snapshots(
    db: AsyncSession, snapshots: Iterable[dict[str, Any]], now_ms: int
) -> None:
    """Overwrite plugs' snapshots, and delete the meters saved before them, inside the caller's
    transaction, a statement each for them all."""
    rows = [(str(s["state"]), orjson.dumps(s).decode(), now_ms, s["plug_id"]) for s in snapshots]
    await _execute_many(db, _SAVE_SNAPSHOT, rows)
    await _execute_many(db, _DELETE_METER, [(plug_id,) for *_, plug_id in rows])


async def save_meters(db: AsyncSession, meters: Mapping[str, dict[str, Any]], now_ms: int) -> None:
    """Save plugs' meters (plug id -> ``Plug.meter()``) over their snapshots, in the caller's
    transaction, one statement for them all."""
    rows = [(plug_id, orjson.dumps(meter).decode(), now_ms) for plug_id, meter in meters.items()]
    await _execute_many(db, _SAVE_METER, rows)


async def _execute_many(db: AsyncSession, statement: str, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        connection = await db.connection()
        await connection.exec_driver_sql(for_driver(statement, connection.dialect.paramstyle), rows)
