"""The money ledger: immutable entries, each posted once by its key, and the cached balance."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from evplug.core import ledger
from evplug.store.models import LedgerEntry, User
from evplug.store.records import EntryRecord
from evplug.store.sql import UnknownUser, post_entry


class Ledger:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def balance(self, user_id: str) -> int:
        async with self._sessions() as db:
            balance = await db.scalar(select(User.balance_cents).where(User.id == user_id))
            if balance is None:
                raise UnknownUser(user_id)
            return int(balance)

    async def ledger_sum(self, user_id: str) -> int:
        async with self._sessions() as db:
            total = await db.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0)).where(
                    LedgerEntry.user_id == user_id
                )
            )
            return int(total or 0)

    async def post(self, entry: ledger.Entry) -> bool:
        """Post one entry; False (and nothing changed) when its key was already posted."""
        ledger.validate(entry)
        async with self._sessions.begin() as db:
            return await post_entry(db, entry)

    async def entries(self, user_id: str) -> list[EntryRecord]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(LedgerEntry).where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id)
            )
            return [_entry(r) for r in rows]

    async def latest_entries(
        self, user_id: str, limit: int = 50, offset: int = 0
    ) -> list[EntryRecord]:
        """Newest first, a page at a time: a driver's transactions."""
        async with self._sessions() as db:
            rows = await db.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.user_id == user_id)
                .order_by(LedgerEntry.id.desc())
                .limit(limit)
                .offset(offset)
            )
            return [_entry(r) for r in rows]


def _entry(row: LedgerEntry) -> EntryRecord:
    return EntryRecord(
        row.id,
        row.user_id,
        row.kind,
        row.amount_cents,
        row.idempotency_key,
        row.created_ms,
        row.memo,
    )
