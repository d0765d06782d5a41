"""Statements the store's areas share: dialect-aware idempotent inserts and ledger postings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from evplug.core import ledger
from evplug.store.models import Base, LedgerEntry, User


class UnknownUser(LookupError):
    pass


_PLACEHOLDERS = {  # the drivers' own parameter styles
    "qmark": lambda n: "?",
    "numeric_dollar": lambda n: f"${n}",
}


def driver_insert(paramstyle: str, table: str, columns: Sequence[str]) -> str:
    """A raw INSERT that keeps out rows whose key is stored, in the driver's parameter style.

    For rows written by the thousand: the driver takes them as tuples, with no SQL compiled and
    no parameters processed per row.
    """
    values = ", ".join(_PLACEHOLDERS[paramstyle](n) for n in range(1, len(columns) + 1))
    names = ", ".join(columns)
    return f"INSERT INTO {table} ({names}) VALUES ({values}) ON CONFLICT DO NOTHING"


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
_SAVE_SNAPSHOT = {
    "sqlite": "UPDATE plugs SET state = ?, snapshot = ?, updated_ms = ? WHERE id = ?",
    "postgresql": "UPDATE plugs SET state = $1, snapshot = $2, updated_ms = $3 WHERE id = $4",
}
_DELETE_METER = {
    "sqlite": "DELETE FROM plug_meters WHERE plug_id = ?",
    "postgresql": "DELETE FROM plug_meters WHERE plug_id = $1",
}
_REPLACE_METER = (
    " ON CONFLICT (plug_id) DO UPDATE SET meter = excluded.meter, saved_ms = excluded.saved_ms"
)
_SAVE_METER = {
    "sqlite": "INSERT INTO plug_meters (plug_id, meter, saved_ms) VALUES (?, ?, ?)"
    + _REPLACE_METER,
    "postgresql": "INSERT INTO plug_meters (plug_id, meter, saved_ms) VALUES ($1, $2, $3)"
    + _REPLACE_METER,
}


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


async def _execute_many(
    db: AsyncSession, statements: Mapping[str, str], rows: list[tuple[Any, ...]]
) -> None:
    if rows:
        connection = await db.connection()
        await connection.exec_driver_sql(statements[connection.dialect.name], rows)
