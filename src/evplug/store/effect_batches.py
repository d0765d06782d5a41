"""Many plugs' effects written in one transaction: their transitions, sessions and snapshots.

Every write is idempotent by key (a transition by plug, time and change; a session by its id; a
close only of an open session, billed under the ledger's key), so a batch written again after a
crash or a retry changes nothing it wrote before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from evplug.core.plug import Effect, SessionClosed, SessionOpened, Transitioned
from evplug.store.database import write_turn
from evplug.store.sessions import close_and_bill, insert_sessions
from evplug.store.sites import insert_transitions
from evplug.store.sql import save_snapshots


def unavailable(error: BaseException) -> bool:
    """True when the store could not be reached or was busy, as opposed to refusing the data:
    then no part of a batch would fare better, and splitting it only multiplies the attempts."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error, ConnectionError | TimeoutError | sa_exc.OperationalError | sa_exc.InterfaceError
    )


@dataclass(frozen=True, slots=True)
class PlugWrite:
    """One plug's effects in the order it produced them, and its snapshot taken with them."""

    plug_id: str
    effects: Sequence[Effect]
    snapshot: dict[str, Any]


class EffectBatches:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine) -> None:
        self._sessions = sessions
        self._engine = engine

    async def write(self, batch: Sequence[PlugWrite], now_ms: int) -> dict[str, int]:
        """Write every plug's effects and snapshot in one transaction, all or nothing.

        Returns, for each session closed and billed by this call, the driver's balance after the
        charge (a session billed before is not in it).
        """
        effects = [e for write in batch for e in write.effects]
        transitions = [e for e in effects if isinstance(e, Transitioned)]
        opened = [e for e in effects if isinstance(e, SessionOpened)]
        balances: dict[str, int] = {}
        async with write_turn(self._engine), self._sessions.begin() as db:
            if transitions:
                await insert_transitions(db, transitions)
            if opened:
                await insert_sessions(db, opened)
            for effect in effects:
                if isinstance(effect, SessionClosed):
                    balance = await close_and_bill(db, effect)
                    if balance is not None:
                        balances[effect.session_id] = balance
            await save_snapshots(db, [write.snapshot for write in batch], now_ms)
        return balances
