"""Carrying out what the state machine decided: commands on the bus, sessions and money stored.

Effects of one step are applied in order and under one lock, so the store sees them in the order
the plugs produced them. Store writes come before the command they enable (a session is on disk
before its relay is asked to switch on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from evplug import metrics
from evplug.bus.base import Bus
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack
from evplug.core.plug import (
    Effect,
    MeterAnomaly,
    Plug,
    SessionClosed,
    SessionOpened,
    SwitchRelay,
    Transitioned,
)
from evplug.mothership.events import EventHook
from evplug.store.repository import Repository

log = structlog.get_logger(__name__)


class EffectApplier:
    def __init__(self, repo: Repository, bus: Bus, events: EventHook) -> None:
        self.repo = repo
        self.bus = bus
        self.events = events
        # Held while effects are written; whoever else writes plug snapshots takes it too.
        self.lock = asyncio.Lock()

    async def apply(self, site_id: str, plug: Plug, effects: Sequence[Effect]) -> None:
        """Apply in order; on failure raise, having applied a prefix (every write is idempotent)."""
        if not effects:
            return
        async with self.lock:
            transitions = [e for e in effects if isinstance(e, Transitioned)]
            await self.repo.sites.record_transitions(transitions)
            snapshot = plug.snapshot()
            wrote_snapshot = False
            for effect in effects:
                if isinstance(effect, SessionOpened):
                    await self.repo.sessions.open_session(effect, snapshot)
                    wrote_snapshot = True
                elif isinstance(effect, SessionClosed):
                    await self._close(effect, snapshot)
                    wrote_snapshot = True
            if transitions and not wrote_snapshot:
                await self.repo.sites.save_plugs([snapshot], transitions[-1].at_ms)
            # Commands last: the state that expects the answer is on disk before it can come.
            for effect in effects:
                if isinstance(effect, SwitchRelay):
                    await self._send_command(site_id, effect)
        for effect in effects:
            if isinstance(effect, Transitioned):
                metrics.TRANSITIONS.labels(effect.to_state.value).inc()
            elif isinstance(effect, MeterAnomaly):
                _meter_anomaly(effect)
            self.events.emit(effect)

    async def _close(self, effect: SessionClosed, snapshot: dict[str, object]) -> None:
        balance = await self.repo.sessions.close_session(effect, snapshot)
        billed = balance is not None
        if billed:
            metrics.SESSIONS_CLOSED.labels(effect.reason).inc()
        if balance is not None and balance < 0:
            # Delivered energy is owed in full; the credit check should have stopped it sooner.
            owed = min(-balance, effect.cost_cents)
            metrics.DEBT_CENTS.inc(owed)
            log.error(
                "session.debt",
                session_id=effect.session_id,
                user_id=effect.user_id,
                debt_cents=owed,
                balance_cents=balance,
                fix="the driver owes this: they cannot start again until they top up;"
                " check why the credit check did not stop the session in time",
            )
        log.info(
            "session.closed",
            session_id=effect.session_id,
            plug_id=effect.plug_id,
            kwh=round(effect.energy_wh / 1000, 3),
            cents=effect.cost_cents,
            reason=effect.reason,
            billed=billed,
        )

    async def _send_command(self, site_id: str, effect: SwitchRelay) -> None:
        request = pb.LocalStateRequest(
            request_id=effect.request_id,
            plug_id=effect.plug_id,
            requested_state=pb.REQUESTED_STATE_ON if effect.on else pb.REQUESTED_STATE_OFF,
            issued_ms=effect.issued_ms,
        )
        await self.bus.publish(
            subjects.for_site(subjects.COMMANDS, site_id), pack(request), msg_id=effect.request_id
        )


def _meter_anomaly(anomaly: MeterAnomaly) -> None:
    """Counted and logged, not stored: a miswired plug can show one at every reading."""
    metrics.METER_ANOMALIES.labels(anomaly.kind).inc()
    log.warning(
        "meter.anomaly",
        plug_id=anomaly.plug_id,
        kind=anomaly.kind,
        discarded_wh=round(anomaly.discarded_wh, 3),
        fix="energy the relay reported but could not have delivered was not billed; a relay"
        " that does this often needs checking",
    )
