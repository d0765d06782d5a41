"""Reads and writes of sites, plugs, users, sessions and the ledger.

Every method is one transaction. Postings, transitions and session closes are idempotent by
key, by INSERT ... ON CONFLICT DO NOTHING and a close that only an open session takes, so two
writers racing on one key (two processes, two connections) apply it once. A session's close, its
charge and the plug's new state commit together: a crash leaves either all or none of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from evplug.core import ledger
from evplug.core.plug import SessionClosed, SessionOpened, Transitioned
from evplug.store.models import (
    Base,
    ChargingSession,
    Circuit,
    CircuitParent,
    LedgerEntry,
    PlugRow,
    Site,
    Transition,
    User,
)


class UnknownUser(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class PlugRecord:
    id: str
    site_id: str
    fuze_id: str
    label: str
    model: str
    state: str
    snapshot: dict[str, Any]


class Repository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    # -- sites and plugs ---------------------------------------------------------------------

    async def ensure_site(
        self, site_id: str, name: str, price_cents_per_kwh: int, currency: str
    ) -> Site:
        async with self._sessions.begin() as db:
            await db.execute(
                _insert_new(db, Site, "id").values(
                    id=site_id,
                    name=name,
                    price_cents_per_kwh=price_cents_per_kwh,
                    currency=currency,
                )
            )
            return await db.get_one(Site, site_id)

    async def get_site(self, site_id: str) -> Site | None:
        async with self._sessions() as db:
            return await db.get(Site, site_id)

    async def ensure_circuit(
        self, circuit_id: str, site_id: str, limit_a: float, parent_id: str | None = None
    ) -> None:
        """Add a circuit the store does not have yet (an operator's changes to one are kept)."""
        async with self._sessions.begin() as db:
            await db.execute(
                _insert_new(db, Circuit, "id").values(
                    id=circuit_id, site_id=site_id, limit_a=limit_a
                )
            )
            if parent_id is not None:
                await db.execute(
                    _insert_new(db, CircuitParent, "id").values(id=circuit_id, parent_id=parent_id)
                )

    async def circuit_parents(self) -> dict[str, str]:
        """Circuit id -> the circuit it is under, for the circuits that have one."""
        async with self._sessions() as db:
            rows = await db.execute(select(CircuitParent.id, CircuitParent.parent_id))
            return {cid: parent for cid, parent in rows}

    async def circuits(self) -> dict[str, float]:
        async with self._sessions() as db:
            rows = await db.execute(select(Circuit.id, Circuit.limit_a))
            return {cid: limit for cid, limit in rows}

    async def register_plug(
        self, plug_id: str, site_id: str, fuze_id: str, model: str, snapshot: dict[str, Any]
    ) -> PlugRecord:
        """Register a plug announced by a site; an existing plug keeps its state and site."""
        async with self._sessions.begin() as db:
            await db.execute(
                _insert_new(db, PlugRow, "id").values(
                    id=plug_id,
                    site_id=site_id,
                    fuze_id=fuze_id,
                    model=model,
                    label="",
                    state=str(snapshot["state"]),
                    snapshot=snapshot,
                    updated_ms=0,
                )
            )
            return _record(await db.get_one(PlugRow, plug_id))

    async def load_plugs(self) -> list[PlugRecord]:
        async with self._sessions() as db:
            rows = (await db.scalars(select(PlugRow).order_by(PlugRow.id))).all()
            return [_record(r) for r in rows]

    async def save_plugs(self, snapshots: Iterable[dict[str, Any]], now_ms: int) -> None:
        async with self._sessions.begin() as db:
            await _save_snapshots(db, snapshots, now_ms)

    async def record_transitions(self, transitions: Sequence[Transitioned]) -> None:
        """Append to the history; a transition already recorded (a retry) is not added again."""
        if not transitions:
            return
        async with self._sessions.begin() as db:
            await db.execute(
                _insert_new(db, Transition, "plug_id", "at_ms", "from_state", "to_state"),
                [
                    {
                        "plug_id": t.plug_id,
                        "session_id": t.session_id,
                        "from_state": str(t.from_state),
                        "to_state": str(t.to_state),
                        "trigger": str(t.trigger),
                        "at_ms": t.at_ms,
                    }
                    for t in transitions
                ],
            )

    # -- users and money ---------------------------------------------------------------------

    async def ensure_user(self, user_id: str, name: str, email: str) -> User:
        async with self._sessions.begin() as db:
            await db.execute(
                _insert_new(db, User, "id").values(
                    id=user_id, name=name, email=email, balance_cents=0
                )
            )
            return await db.get_one(User, user_id)

    async def get_user(self, user_id: str) -> User:
        async with self._sessions() as db:
            user = await db.get(User, user_id)
            if user is None:
                raise UnknownUser(user_id)
            return user

    async def balance(self, user_id: str) -> int:
        return (await self.get_user(user_id)).balance_cents

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
            return await _post(db, entry)

    async def entries(self, user_id: str) -> list[LedgerEntry]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(LedgerEntry).where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id)
            )
            return list(rows)

    # -- sessions ----------------------------------------------------------------------------

    async def open_session(self, opened: SessionOpened, snapshot: dict[str, Any]) -> None:
        async with self._sessions.begin() as db:
            await db.execute(
                _insert_new(db, ChargingSession, "id").values(
                    id=opened.session_id,
                    plug_id=opened.plug_id,
                    user_id=opened.user_id,
                    started_ms=opened.started_ms,
                    price_cents_per_kwh=opened.price_cents_per_kwh,
                    energy_wh=0.0,
                    end_reason="",
                )
            )
            await _save_snapshots(db, [snapshot], opened.started_ms)

    async def close_session(self, closed: SessionClosed, snapshot: dict[str, Any]) -> int | None:
        """Close, bill and release the plug in one transaction.

        Returns the driver's balance after the charge, or None if it was billed before.
        """
        async with self._sessions.begin() as db:
            await _save_snapshots(db, [snapshot], closed.ended_ms)
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
            if not await _post(db, charge):
                return None
            return await db.scalar(select(User.balance_cents).where(User.id == closed.user_id))

    async def get_session(self, session_id: str) -> ChargingSession | None:
        async with self._sessions() as db:
            return await db.get(ChargingSession, session_id)

    async def sessions_of_user(self, user_id: str, limit: int = 50) -> list[ChargingSession]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(ChargingSession)
                .where(ChargingSession.user_id == user_id)
                .order_by(ChargingSession.started_ms.desc())
                .limit(limit)
            )
            return list(rows)


async def _post(db: AsyncSession, entry: ledger.Entry) -> bool:
    if await db.get(User, entry.user_id) is None:
        raise UnknownUser(entry.user_id)
    posted = await db.scalar(
        _insert_new(db, LedgerEntry, "idempotency_key")
        .values(
            user_id=entry.user_id,
            kind=str(entry.kind),
            amount_cents=entry.amount_cents,
            idempotency_key=entry.idempotency_key,
            created_ms=entry.created_ms,
            memo=entry.memo,
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


def _insert_new(
    db: AsyncSession, model: type[Base], *key: str
) -> postgresql.Insert | sqlite.Insert:
    """INSERT that leaves an existing row with the same ``key`` as it is (in the db's dialect)."""
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    return insert(model).on_conflict_do_nothing(index_elements=key)


async def _save_snapshots(
    db: AsyncSession, snapshots: Iterable[dict[str, Any]], now_ms: int
) -> None:
    for snapshot in snapshots:
        await db.execute(
            update(PlugRow)
            .where(PlugRow.id == snapshot["plug_id"])
            .values(state=str(snapshot["state"]), snapshot=snapshot, updated_ms=now_ms)
        )


def _record(row: PlugRow) -> PlugRecord:
    return PlugRecord(
        row.id, row.site_id, row.fuze_id, row.label, row.model, row.state, dict(row.snapshot)
    )
