"""The money ledger: immutable entries, each posted once by its key, and the cached balance."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from evplug.core import ledger
from evplug.store.models import LedgerEntry, User
from evplug.store.records import EntryRecord, LedgerMismatch
from evplug.store.sql import UnknownUser, post_entry

# Ids bound in one IN (...): under SQLite's limit of variables in a statement.
_IDS_PER_READ = 500


class Ledger:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def balance(self, user_id: str) -> int:
        async with self._sessions() as db:
            balance = await db.scalar(select(User.balance_cents).where(User.id == user_id))
            if balance is None:
                raise UnknownUser(user_id)
            return int(balance)

    async def balances(self, user_ids: Collection[str]) -> dict[str, int]:
        """Many drivers' balances in a few reads; a user id not stored is left out."""
        ids = list(user_ids)
        found: dict[str, int] = {}
        async with self._sessions() as db:
            for start in range(0, len(ids), _IDS_PER_READ):
                rows = await db.execute(
                    select(User.id, User.balance_cents).where(
                        User.id.in_(ids[start : start + _IDS_PER_READ])
                    )
                )
                found.update((user_id, int(balance)) for user_id, balance in rows)
        return found

    async def ledger_sum(self, user_id: str) -> int:
        async with self._sessions() as db:
            total = await db.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0)).where(
                    LedgerEntry.user_id == user_id
                )
            )
            return int(total or 0)

    async def mismatches(self) -> list[LedgerMismatch]:
        """Every account whose cached balance is not the sum of its entries (none, normally).

        One statement, so it reads one consistent snapshot even while postings go on.
        """
        sums = (
            select(LedgerEntry.user_id, func.sum(LedgerEntry.amount_cents).label("total"))
            .group_by(LedgerEntry.user_id)
            .subquery()
        )
        total = func.coalesce(sums.c.total, 0)
        async with self._sessions() as db:
            rows = await db.execute(
                select(User.id, User.balance_cents, total)
                .outerjoin(sums, sums.c.user_id == User.id)
                .where(User.balance_cents != total)
                .order_by(User.id)
            )
            return [LedgerMismatch(u, int(cached), int(summed)) for u, cached, summed in rows]

    async def post(self, entry: ledger.Entry) -> bool:
        """Post one entry; False (and nothing changed) when its key was already posted."""
        ledger.validate(entry)
        async with self._sessions.begin() as db:
            return await post_entry(db, entry)

    async def entry(self, idempotency_key: str) -> EntryRecord | None:
        async with self._sessions() as db:
            row = await db.scalar(
                select(LedgerEntry).where(LedgerEntry.idempotency_key == idempotency_key)
            )
            return None if row is None else entry_record(row)

    async def last_credit_key(self, user_id: str) -> str:
        """The key of the driver's newest entry that added money ("" if none did)."""
        async with self._sessions() as db:
            key = await db.scalar(
                select(LedgerEntry.idempotency_key)
                .where(LedgerEntry.user_id == user_id, LedgerEntry.amount_cents > 0)
                .order_by(LedgerEntry.id.desc())
                .limit(1)
            )
            return key or ""

    async def entries(self, user_id: str) -> list[EntryRecord]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(LedgerEntry).where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id)
            )
            return [entry_record(r) for r in rows]

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
            return [entry_record(r) for r in rows]


def entry_record(row: LedgerEntry) -> EntryRecord:
    return EntryRecord(
        row.id,
        row.user_id,
        row.kind,
        row.amount_cents,
        row.idempotency_key,
        row.created_ms,
        row.memo,
        row.actor,
    )
