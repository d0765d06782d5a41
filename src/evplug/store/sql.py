"""Statements the store's areas share: dialect-aware idempotent inserts and ledger postings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from evplug.core import ledger
from evplug.store.models import Base, LedgerEntry, PlugRow, User


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


# Core, by primary key, executed once for all rows (the ORM's bulk update costs several times
# more per row): how checkpoints write tens of thousands of snapshots in one statement.
_SAVE_SNAPSHOT = (
    update(PlugRow.__table__)  # type: ignore[arg-type]
    .where(PlugRow.__table__.c.id == bindparam("plug_id_"))
    .values(state=bindparam("state_"), snapshot=bindparam("snapshot_"), updated_ms=bindparam("at_"))
)


async def save_snapshots(
    db: AsyncSession, snapshots: Iterable[dict[str, Any]], now_ms: int
) -> None:
    """Overwrite plugs' snapshots inside the caller's transaction, one statement for them all."""
    rows = [
        {"plug_id_": s["plug_id"], "state_": str(s["state"]), "snapshot_": s, "at_": now_ms}
        for s in snapshots
    ]
    if rows:
        await db.execute(_SAVE_SNAPSHOT, rows)
