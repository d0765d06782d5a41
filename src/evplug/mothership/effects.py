"""Carrying out what the state machines decided: sessions and money stored, commands on the bus.

Effects are written in batches, many plugs' in one transaction, each plug's in the order it
produced them; the commands follow once the batch is committed (a session is on disk before its
relay is asked to switch on). A batch the store refuses is split until the plug whose effects it
refuses is found: that plug's effects are reported and wait for retry, the others go through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from evplug import metrics
from evplug.bus.base import Bus, Outgoing
from evplug.clock import Clock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack
from evplug.core.plug import (
    Effect,
    MeterAnomaly,
    SessionClosed,
    SwitchRelay,
    Transitioned,
)
from evplug.mothership.events import EventHook
from evplug.store.effect_batches import PlugWrite, unavailable
from evplug.store.repository import Repository

log = structlog.get_logger(__name__)


class EffectApplier:
    def __init__(self, repo: Repository, bus: Bus, events: EventHook, clock: Clock) -> None:
        self.repo = repo
        self.bus = bus
        self.events = events
        self.clock = clock
        # Held while a batch's snapshots are taken and written, and by each checkpoint chunk:
        # a snapshot taken before another must never land after it.
        self.lock = asyncio.Lock()

    async def write(
        self, batch: Sequence[PlugWrite]
    ) -> tuple[dict[str, Exception], dict[str, int]]:
        """Write the batch (the caller holds ``lock``): the plugs refused, each with its error,
        and the balance after each session this billed."""
        refused: dict[str, Exception] = {}
        balances: dict[str, int] = {}
        await self._write(batch, refused, balances)
        return refused, balances

    async def _write(
        self, batch: Sequence[PlugWrite], refused: dict[str, Exception], balances: dict[str, int]
    ) -> None:
        try:
            balances.update(await self.repo.effects.write(batch, self.clock.now_ms()))
        except Exception as exc:
            if len(batch) > 1 and not unavailable(exc):
                half = len(batch) // 2
                await self._write(batch[:half], refused, balances)
                await self._write(batch[half:], refused, balances)
                return
            for write in batch:
                refused[write.plug_id] = exc
            if len(batch) == 1 and not unavailable(exc):
                log.error(
                    "effects.refused",
                    plug_id=batch[0].plug_id,
                    effects=[repr(e) for e in batch[0].effects],
                    error=f"{type(exc).__name__}: {exc}",
                    fix="the store refuses this plug's effects (the rest of its batch went"
                    " through): they are kept and retried; correct the data or the schema",
                )

    async def send(self, writes: Sequence[tuple[str, Sequence[Effect]]]) -> list[Exception | None]:
        """Send the commands among each plug's effects (its site's id, its effects), once what
        they follow from is on disk: all on the bus at once, each plug's in its order. For each
        plug, the first error that kept one of its commands off the bus."""
        messages: list[Outgoing] = []
        owners: list[int] = []
        for n, (site_id, effects) in enumerate(writes):
            for effect in effects:
                if isinstance(effect, SwitchRelay):
                    messages.append(_command(site_id, effect))
                    owners.append(n)
        errors: list[Exception | None] = [None] * len(writes)
        if messages:
            results = await self.bus.publish_many(messages)
            for owner, result in zip(owners, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(result, Exception):
                    raise result  # a cancellation, not the bus
                if isinstance(result, Exception) and errors[owner] is None:
                    errors[owner] = result
        return errors

    def applied(self, effects: Sequence[Effect], balances: dict[str, int]) -> None:
        """Count, log and announce effects that are on disk and sent."""
        for effect in effects:
            if isinstance(effect, Transitioned):
                metrics.TRANSITIONS.labels(effect.to_state.value).inc()
            elif isinstance(effect, MeterAnomaly):
                _meter_anomaly(effect)
            elif isinstance(effect, SessionClosed):
                _closed(effect, balances.get(effect.session_id))
            self.events.emit(effect)


def _command(site_id: str, effect: SwitchRelay) -> Outgoing:
    request = pb.LocalStateRequest(
        request_id=effect.request_id,
        plug_id=effect.plug_id,
        requested_state=pb.REQUESTED_STATE_ON if effect.on else pb.REQUESTED_STATE_OFF,
        issued_ms=effect.issued_ms,
    )
    return subjects.for_site(subjects.COMMANDS, site_id), pack(request), effect.request_id


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


def _closed(effect: SessionClosed, balance: int | None) -> None:
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
