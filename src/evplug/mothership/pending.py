"""Each plug's effects, applied in order; what cannot be applied yet waits, and is never dropped.

The plug has already moved on in memory when its effects are applied, so an effect the store or
the bus cannot take now (the database restarting, the broker away) must wait and be retried:
dropping it would lose a bill or leave a socket on. Effects wait per plug, in order, and leave the
queue only once applied, so two applies of one plug that overlap (a reading and a driver's action)
can neither lose nor reorder them. A plug whose effects keep failing is retried with a growing
backoff and reported, so it never holds up the other plugs.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from evplug import metrics
from evplug.clock import Clock
from evplug.core.plug import Effect, Plug
from evplug.mothership.effects import EffectApplier

log = structlog.get_logger(__name__)

FIRST_RETRY_MS = 1_000
MAX_RETRY_MS = 60_000
# Failed attempts in a row after which a plug's effects are reported as stuck.
STUCK_AFTER = 5


@dataclass(eq=False)
class _Queue:
    effects: deque[Effect] = field(default_factory=deque)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    queued: int = 0  # effects ever queued, and ever applied: how a caller knows its own went
    applied: int = 0
    failures: int = 0
    retry_at_ms: int = 0


class PendingEffects:
    def __init__(
        self, applier: EffectApplier, clock: Clock, site_of: Callable[[Plug], str]
    ) -> None:
        self.applier = applier
        self.clock = clock
        self.site_of = site_of
        self._queues: dict[str, _Queue] = {}
        self._plugs: dict[str, Plug] = {}

    def waiting(self, plug_id: str) -> int:
        """How many of this plug's effects wait to be applied."""
        queue = self._queues.get(plug_id)
        return len(queue.effects) if queue else 0

    def stuck(self, plug_id: str) -> bool:
        queue = self._queues.get(plug_id)
        return queue is not None and queue.failures >= STUCK_AFTER

    async def apply(self, plug: Plug, effects: Iterable[Effect]) -> bool:
        """Queue ``effects`` behind any of the plug's that wait, and apply what is queued.

        True when these effects (and all queued before them) are applied. A plug still in its
        backoff only queues: its turn comes in ``retry_due``.
        """
        queue = self._queues.get(plug.plug_id)
        if queue is None:
            queue = self._queues[plug.plug_id] = _Queue()
            self._plugs[plug.plug_id] = plug
        queue.effects.extend(effects)  # before any await: the plug's order is the queue's
        queue.queued += len(effects)
        mine = queue.queued
        if queue.failures and self.clock.now_ms() < queue.retry_at_ms:
            return False
        await self._drain(plug.plug_id, queue)
        return queue.applied >= mine

    async def retry_due(self) -> None:
        """Retry every plug whose backoff has run out; one plug's failure stops no other."""
        now = self.clock.now_ms()
        for plug_id, queue in list(self._queues.items()):
            if queue.effects and queue.retry_at_ms <= now:
                await self._drain(plug_id, queue)

    async def _drain(self, plug_id: str, queue: _Queue) -> None:
        plug = self._plugs[plug_id]
        async with queue.lock:
            batch = list(queue.effects)
            if batch:
                try:
                    await self.applier.apply(self.site_of(plug), plug, batch)
                except Exception as exc:
                    self._failed(plug_id, queue, len(batch), exc)
                    return
                for _ in batch:  # others may have queued more meanwhile: keep those
                    queue.effects.popleft()
                queue.applied += len(batch)
            if queue.failures:
                log.info("effects.applied_after_retry", plug_id=plug_id, attempts=queue.failures)
            queue.failures = 0
            if not queue.effects and self._queues.get(plug_id) is queue:
                del self._queues[plug_id]
                del self._plugs[plug_id]

    def _failed(self, plug_id: str, queue: _Queue, count: int, exc: Exception) -> None:
        queue.failures += 1
        backoff = min(FIRST_RETRY_MS << min(queue.failures - 1, 16), MAX_RETRY_MS)
        queue.retry_at_ms = self.clock.now_ms() + backoff
        fields = {
            "plug_id": plug_id,
            "effects": count,
            "attempts": queue.failures,
            "retry_in_s": backoff / 1000,
            "error": f"{type(exc).__name__}: {exc}",
        }
        metrics.EFFECTS_PARKED.inc()
        if queue.failures == STUCK_AFTER:
            metrics.EFFECTS_STUCK.inc()
            log.error(
                "effects.stuck",
                **fields,
                waiting=[repr(e) for e in queue.effects],
                fix="this plug's session cannot be written: check the database and the logs"
                " above; the effects are kept and retried",
            )
        else:
            log.warning(
                "effects.parked",
                **fields,
                fix="retried with backoff: check that the database and the bus are reachable",
            )
