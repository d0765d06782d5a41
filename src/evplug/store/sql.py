"""Statements the store's areas share: dialect-aware idempotent inserts and ledger postings."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

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


@dataclass(frozen=True)
class RowsStatement:
    """A statement that takes its rows as a VALUES list: ``head``, the list, ``tail``.

    ``single``: the statement for one row, where PostgreSQL needs another form (it cannot tell
    the types of a VALUES list's parameters outside an INSERT); by default ``head``, one row,
    ``tail``.
    """

    head: str
    tail: str = ""
    single: str | None = None


def insert_new_rows(table: str, columns: Sequence[str]) -> RowsStatement:
    """A raw INSERT that keeps out rows whose key is stored (``write_rows``)."""
    return RowsStatement(f"INSERT INTO {table} ({', '.join(columns)})", " ON CONFLICT DO NOTHING")


# Parameters in one statement: SQLite's default limit (since 3.32; older is refused). The fewer
# statements a batch takes, the fewer times the writing thread takes the GIL back: against
# 2,048 and 16,384 parameters this limit gave the most readings per second in process and
# through the broker (`bench/broker_ingest.py`), although binding them holds the GIL longest.
_STATEMENT_PARAMETERS = 32_766


async def write_rows(
    conn: AsyncConnection, statement: RowsStatement, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Run ``statement`` for ``rows``, in the connection's transaction.

    On SQLite a few statements of many rows each, not one per row: the thread that runs them
    lets the GIL go while SQLite works and takes it back after each statement, and while the
    loop is busy each taking costs up to the interpreter's switch interval (5 ms). Against a busy
    loop one row per statement wrote ~1,400 rows/s, a thousand rows per statement ~100,000. On
    PostgreSQL the driver's executemany: asyncpg sends the rows together, the work is the
    server's, in another process.
    """
    if not rows:
        return
    width = len(rows[0])
    if conn.dialect.name != "sqlite":
        single = statement.single or _with_values(statement, width, 1)
        await conn.exec_driver_sql(for_driver(single, conn.dialect.paramstyle), list(rows))
        return
    per = max(1, _STATEMENT_PARAMETERS // width)
    for start in range(0, len(rows), per):
        part = rows[start : start + per]
        await conn.exec_driver_sql(  # written with ?, SQLite's own style
            _with_values(statement, width, len(part)),
            tuple(itertools.chain.from_iterable(part)),
        )


@lru_cache(maxsize=64)
def _with_values(statement: RowsStatement, width: int, count: int) -> str:
    row = f"({', '.join('?' * width)})"
    return f"{statement.head} VALUES {', '.join(itertools.repeat(row, count))}{statement.tail}"


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


# Snapshots and meters are written as raw rows (``write_rows``), encoded here: SQLAlchemy's
# processing of each row's parameters (the JSON type's above all) cost more than the database's
# own work, and checkpoints write tens of thousands at a time. A whole snapshot deletes the meter
# saved before it, which is older.
_SAVE_SNAPSHOTS = RowsStatement(
    "UPDATE plugs SET state = v.column1, snapshot = v.column2, updated_ms = v.column3 FROM (",
    ") AS v WHERE plugs.id = v.column4",
    single="UPDATE plugs SET state = ?, snapshot = ?, updated_ms = ? WHERE id = ?",
)
_DELETE_METERS = RowsStatement(
    "DELETE FROM plug_meters WHERE plug_id IN (",
    ")",
    single="DELETE FROM plug_meters WHERE plug_id = ?",
)
_SAVE_METERS = RowsStatement(
    "INSERT INTO plug_meters (plug_id, meter, saved_ms)",
    " ON CONFLICT (plug_id) DO UPDATE SET meter = excluded.meter, saved_ms = excluded.saved_ms",
)


async def save_snapshots(
    db: AsyncSession, snapshots: Iterable[dict[str, Any]], now_ms: int
) -> None:
    """Overwrite plugs' snapshots, and delete the meters saved before them, inside the caller's
    transaction. A plug saved twice keeps its last: one statement of many rows updates a row
    from just one of them, any one."""
    latest = {s["plug_id"]: s for s in snapshots}
    rows = [(str(s["state"]), orjson.dumps(s).decode(), now_ms, p) for p, s in latest.items()]
    conn = await db.connection()
    await write_rows(conn, _SAVE_SNAPSHOTS, rows)
    await write_rows(conn, _DELETE_METERS, [(plug_id,) for *_, plug_id in rows])


async def save_meters(db: AsyncSession, meters: Mapping[str, dict[str, Any]], now_ms: int) -> None:
    """Save plugs' meters (plug id -> ``Plug.meter()``) over their snapshots, in the caller's
    transaction."""
    rows = [(plug_id, orjson.dumps(meter).decode(), now_ms) for plug_id, meter in meters.items()]
    await write_rows(await db.connection(), _SAVE_METERS, rows)
