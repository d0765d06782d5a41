"""Charging sessions: opened, checkpointed by the plug snapshot, closed and billed once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from evplug.core import ledger
from evplug.core.plug import SessionClosed, SessionOpened
from evplug.store.models import ChargingSession, ReadingRow, User
from evplug.store.records import SessionRecord
from evplug.store.sql import insert_new, post_entry, save_snapshots


class Sessions:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def open_session(self, opened: SessionOpened, snapshot: dict[str, Any]) -> None:
        async with self._sessions.begin() as db:
            await insert_sessions(db, [opened])
            await save_snapshots(db, [snapshot], opened.started_ms)

    async def close_session(self, closed: SessionClosed, snapshot: dict[str, Any]) -> int | None:
        """Close, bill and release the plug in one transaction.

        Returns the driver's balance after the charge, or None if it was billed before.
        """
        async with self._sessions.begin() as db:
            await save_snapshots(db, [snapshot], closed.ended_ms)
            return await close_and_bill(db, closed)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        async with self._sessions() as db:
            row = await db.get(ChargingSession, session_id)
            return None if row is None else _session(row)

    async def sessions_of_user(
        self, user_id: str, limit: int = 50, offset: int = 0
    ) -> list[SessionRecord]:
        """Newest first; ``offset`` skips that many of the newest (paging)."""
        async with self._sessions() as db:
            rows = await db.scalars(
                select(ChargingSession)
                .where(ChargingSession.user_id == user_id)
                .order_by(ChargingSession.started_ms.desc(), ChargingSession.id)
                .limit(limit)
                .offset(offset)
            )
            return [_session(r) for r in rows]

    async def open_sessions_of_user(self, user_id: str) -> list[SessionRecord]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(ChargingSession)
                .where(ChargingSession.user_id == user_id, ChargingSession.ended_ms.is_(None))
                .order_by(ChargingSession.started_ms.desc())
            )
            return [_session(r) for r in rows]

    async def open_session_on_plug(self, plug_id: str) -> SessionRecord | None:
        """The session running on a plug now, whose driver is the plug's current user."""
        async with self._sessions() as db:
            row = await db.scalar(
                select(ChargingSession)
                .where(ChargingSession.plug_id == plug_id, ChargingSession.ended_ms.is_(None))
                .order_by(ChargingSession.started_ms.desc())
                .limit(1)
            )
            return None if row is None else _session(row)

    async def power_readings(self, session: SessionRecord) -> list[tuple[int, float]]:
        """(timestamp ms, active power W) of the session's plug while the session ran."""
        query = select(ReadingRow.timestamp_ms, ReadingRow.active_power_w).where(
            ReadingRow.plug_id == session.plug_id,
            ReadingRow.timestamp_ms >= session.started_ms,
        )
        if session.ended_ms is not None:
            query = query.where(ReadingRow.timestamp_ms <= session.ended_ms)
        async with self._sessions() as db:
            rows = await db.execute(query.order_by(ReadingRow.timestamp_ms))
            return [(int(t), float(w)) for t, w in rows]


def _session(row: ChargingSession) -> SessionRecord:
    return SessionRecord(
        row.id,
        row.plug_id,
        row.user_id,
        row.started_ms,
        row.ended_ms,
        row.price_cents_per_kwh,
        row.energy_wh,
        row.cost_cents,
        row.end_reason,
    )


async def insert_sessions(db: AsyncSession, opened: Sequence[SessionOpened]) -> None:
    """Insert inside the caller's transaction; a session already stored (a retry) is kept."""
    await db.execute(
        insert_new(db, ChargingSession, "id"),
        [
            {
                "id": o.session_id,
                "plug_id": o.plug_id,
                "user_id": o.user_id,
                "started_ms": o.started_ms,
                "price_cents_per_kwh": o.price_cents_per_kwh,
                "energy_wh": 0.0,
                "end_reason": "",
            }
            for o in opened
        ],
    )


async def close_and_bill(db: AsyncSession, closed: SessionClosed) -> int | None:
    """Close and bill inside the caller's transaction: the balance after, None if billed before."""
    # Only an open session is closed: of two racing closes, the second waits for the
    # first's row lock, then finds it closed.
    closing = await db.execute(
        update(ChargingSession)
        .where(ChargingSession.id == closed.session_id, ChargingSession.ended_ms.is_(None))
        .values(
            ended_ms=closed.ended_ms,
            energy_wh=closed.energy_wh,
            cost_cents=closed.cost_cents,
            end_reason=closed.reason,
        )
        .returning(ChargingSession.id)
        .execution_options(synchronize_session=False)
    )
    if closing.scalar() is None:
        if await db.get(ChargingSession, closed.session_id) is None:
            raise LookupError(f"session {closed.session_id} was never opened")
        return None
    charge = ledger.session_charge(
        closed.user_id,
        closed.session_id,
        closed.cost_cents,
        closed.ended_ms,
        memo=f"{closed.energy_wh / 1000:.3f} kWh at {closed.plug_id}",
    )
    if not await post_entry(db, charge):
        return None
    return await db.scalar(select(User.balance_cents).where(User.id == closed.user_id))
