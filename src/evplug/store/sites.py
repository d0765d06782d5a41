"""Sites, their circuits and plugs, and each plug's state history: what the mothership runs on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Text, cast, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from evplug.core.plug import Transitioned
from evplug.store.database import write_turn
from evplug.store.models import Circuit, CircuitParent, PlugMeter, PlugRow, Site
from evplug.store.records import PlugRecord, PlugSnapshot, SiteRecord
from evplug.store.sql import insert_new, insert_new_rows, save_meters, write_rows


class Sites:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine) -> None:
        self._sessions = sessions
        self._engine = engine

    async def ensure_site(
        self, site_id: str, name: str, price_cents_per_kwh: int, currency: str
    ) -> SiteRecord:
        async with self._sessions.begin() as db:
            await db.execute(
                insert_new(db, Site, "id").values(
                    id=site_id,
                    name=name,
                    price_cents_per_kwh=price_cents_per_kwh,
                    currency=currency,
                )
            )
            return _site(await db.get_one(Site, site_id))

    async def get_site(self, site_id: str) -> SiteRecord | None:
        async with self._sessions() as db:
            row = await db.get(Site, site_id)
            return None if row is None else _site(row)

    async def ensure_circuit(
        self, circuit_id: str, site_id: str, limit_a: float, parent_id: str | None = None
    ) -> None:
        """Add a circuit the store does not have yet (an operator's changes to one are kept)."""
        async with self._sessions.begin() as db:
            await db.execute(
                insert_new(db, Circuit, "id").values(
                    id=circuit_id, site_id=site_id, limit_a=limit_a
                )
            )
            if parent_id is not None:
                await db.execute(
                    insert_new(db, CircuitParent, "id").values(id=circuit_id, parent_id=parent_id)
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
                insert_new(db, PlugRow, "id").values(
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
            (record,) = await _plugs(db, PlugRow.id == plug_id)
            return record

    async def plug_snapshots(self, part_rows: int = 5_000) -> AsyncIterator[list[PlugSnapshot]]:
        """Every plug's site, fuze and snapshot, in parts of ``part_rows`` in id order: a start
        reads them all without holding them all at once, nor a read open in between."""
        # Core on the session's connection, the JSON as its text decoded here: the ORM's rows
        # and the JSON type's processing cost more than the decoding itself.
        query = (
            select(
                PlugRow.id,
                PlugRow.site_id,
                PlugRow.fuze_id,
                cast(PlugRow.snapshot, Text),
                cast(PlugMeter.meter, Text),
            )
            .outerjoin(PlugMeter, PlugMeter.plug_id == PlugRow.id)
            .order_by(PlugRow.id)
        )
        after = ""
        while True:
            async with self._sessions() as db:
                connection = await db.connection()
                rows = await connection.execute(query.where(PlugRow.id > after).limit(part_rows))
                part = [
                    PlugSnapshot(plug_id, site_id, fuze_id, _decoded(snapshot, meter))
                    for plug_id, site_id, fuze_id, snapshot, meter in rows
                ]
            if not part:
                return
            yield part
            after = part[-1].id

    async def load_plugs(self) -> list[PlugRecord]:
        async with self._sessions() as db:
            return await _plugs(db)

    async def site_of_plug(self, plug_id: str) -> str | None:
        async with self._sessions() as db:
            return await db.scalar(select(PlugRow.site_id).where(PlugRow.id == plug_id))

    async def save_meters(self, meters: Mapping[str, dict[str, Any]], now_ms: int) -> None:
        """Save plugs' meters (plug id -> ``Plug.meter()``) over their snapshots."""
        async with write_turn(self._engine), self._sessions.begin() as db:
            await save_meters(db, meters, now_ms)

    async def record_transitions(self, transitions: Sequence[Transitioned]) -> None:
        """Append to the history; a transition already recorded (a retry) is not added again."""
        if not transitions:
            return
        async with self._sessions.begin() as db:
            await insert_transitions(db, transitions)


_INSERT_TRANSITIONS = insert_new_rows(
    "transitions", ("plug_id", "session_id", "from_state", "to_state", "trigger", "at_ms")
)


async def insert_transitions(db: AsyncSession, transitions: Sequence[Transitioned]) -> None:
    """Append inside the caller's transaction, one statement for them all; repeats are kept out."""
    await write_rows(
        await db.connection(),
        _INSERT_TRANSITIONS,
        [
            (
                t.plug_id,
                t.session_id,
                t.from_state.value,
                t.to_state.value,
                t.trigger.value,
                t.at_ms,
            )
            for t in transitions
        ],
    )


def _site(row: Site) -> SiteRecord:
    return SiteRecord(row.id, row.name, row.price_cents_per_kwh, row.currency)


async def _plugs(db: AsyncSession, *where: ColumnElement[bool]) -> list[PlugRecord]:
    """Plugs in id order, each snapshot with the meter saved since."""
    rows = await db.execute(
        select(PlugRow, PlugMeter.meter)
        .outerjoin(PlugMeter, PlugMeter.plug_id == PlugRow.id)
        .where(*where)
        .order_by(PlugRow.id)
    )
    return [
        PlugRecord(
            row.id,
            row.site_id,
            row.fuze_id,
            row.label,
            row.model,
            row.state,
            {**row.snapshot, **(meter or {})},
        )
        for row, meter in rows
    ]


def _decoded(snapshot: str | None, meter: str | None) -> dict[str, Any]:
    """A plug's snapshot from its JSON, with the meter a checkpoint saved since."""
    whole = orjson.loads(snapshot or "{}") or {}  # JSON null, as SQL NULL: nothing stored
    if meter:
        whole.update(orjson.loads(meter))
    return whole
