"""Each plug's effects, applied in batches and in order; what cannot be applied yet waits.

The plug has already moved on in memory when its effects are applied, so an effect the store or
the bus cannot take now (the database restarting, the broker away) must wait and be retried:
dropping it would lose a bill or leave a socket on. Effects wait per plug, in order, and leave the
queue only once applied. One drain at a time takes every waiting plug's effects (up to
``max_batch_plugs`` plugs) into one batch, so batches never overlap and a plug's effects are
applied in the order it produced them, whoever produced them (a reading, a driver's action, a
tick). A plug whose effects keep failing is retried with a growing backoff and reported, so it
never holds up the other plugs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from evplug import metrics
from evplug.clock import Clock
from evplug.core.plug import Effect, Plug
from evplug.mothership.effects import EffectApplier
from evplug.store.effect_batches import PlugWrite

log = structlog.get_logger(__name__)

FIRST_RETRY_MS = 1_000
MAX_RETRY_MS = 60_000
# Failed attempts in a row after which a plug's effects are reported as stuck.
STUCK_AFTER = 5
# Plugs whose effects go into one transaction, at most: a burst is written in a few of these.
MAX_BATCH_PLUGS = 2_000


@dataclass(eq=False, slots=True)
class _Queue:
    plug: Plug
    effects: deque[Effect] = field(default_factory=deque)
    # Who waits for their effects: (their last effect's number, told once an attempt covered it).
    waiters: list[tuple[int, asyncio.Future[bool]]] = field(default_factory=list)
    queued: int = 0  # effects ever queued, and ever applied
    applied: int = 0
    failures: int = 0
    retry_at_ms: int = 0


class PendingEffects:
    def __init__(
        self,
        applier: EffectApplier,
        clock: Clock,
        site_of: Callable[[Plug], str],
        max_batch_plugs: int = MAX_BATCH_PLUGS,
    ) -> None:
        self.applier = applier
        self.clock = clock
        self.site_of = site_of
        self.max_batch_plugs = max_batch_plugs
        self._queues: dict[str, _Queue] = {}
        self._ready: dict[str, None] = {}  # plugs for the next batch, in the order they came
        self._drain_task: asyncio.Task[None] | None = None

    def waiting(self, plug_id: str) -> int:
        """How many of this plug's effects wait to be applied."""
        queue = self._queues.get(plug_id)
        return len(queue.effects) if queue else 0

    def waiting_plugs(self) -> int:
        """How many plugs have effects waiting to be applied."""
        return len(self._queues)

    def stuck(self, plug_id: str) -> bool:
        queue = self._queues.get(plug_id)
        return queue is not None and queue.failures >= STUCK_AFTER

    def submit(self, plug: Plug, effects: Iterable[Effect]) -> asyncio.Future[bool]:
        """Queue ``effects`` behind any of the plug's that wait, for the next batch.

        The future tells, once an attempt covered these effects, whether they (and all queued
        before them) are applied, or the plug is stuck: then the message that caused them may be
        acked. False when the attempt failed, or at once when the plug is in its backoff (its
        turn comes in ``retry_due``).
        """
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(plug.plug_id)
        if queue is None:
            queue = self._queues[plug.plug_id] = _Queue(plug)
        before = len(queue.effects)
        queue.effects.extend(effects)  # before any await: the plug's order is the queue's
        queue.queued += len(queue.effects) - before
        if not queue.effects:
            del self._queues[plug.plug_id]
            done.set_result(True)
        elif queue.failures and self.clock.now_ms() < queue.retry_at_ms:
            done.set_result(queue.failures >= STUCK_AFTER)
        else:
            queue.waiters.append((queue.queued, done))
            self._ready[plug.plug_id] = None
            self._start_drain()
        return done

    async def apply(self, plug: Plug, effects: Iterable[Effect]) -> bool:
        """``submit``, and wait for the attempt."""
        return await self.submit(plug, effects)

    async def retry_due(self) -> None:
        """Retry every plug whose backoff has run out; one plug's failure stops no other."""
        now = self.clock.now_ms()
        for plug_id, queue in self._queues.items():
            if queue.failures and queue.retry_at_ms <= now:
                self._ready[plug_id] = None
        self._start_drain()
        await self.idle()

    async def idle(self) -> None:
        """Return once nothing is ready to be applied (what waits for its backoff still waits)."""
        while self._drain_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._drain_task)

    def _start_drain(self) -> None:
        if self._ready and self._drain_task is None:
            self._drain_task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._ready:
                ids = list(self._ready)[: self.max_batch_plugs]
                for plug_id in ids:
                    del self._ready[plug_id]
                queues = [self._queues[p] for p in ids if p in self._queues]
                try:
                    await self._attempt(queues)
                except Exception as exc:  # a bug: what the attempt had not settled is retried
                    log.exception("effects.attempt_failed")
                    for queue in queues:
                        if queue.effects:
                            self._failed(queue, len(queue.effects), exc)
        finally:
            self._drain_task = None
            self._start_drain()  # what came in while the last attempt was failing

    async def _attempt(self, queues: list[_Queue]) -> None:
        async with self.applier.lock:
            # Effects and snapshot taken together: the snapshot never runs ahead of the effects
            # written with it, nor lags behind a snapshot written before it.
            batch = [PlugWrite(q.plug.plug_id, list(q.effects), q.plug.snapshot()) for q in queues]
            refused, balances = await self.applier.write(batch)
        # Every plug's commands in flight together: on a broker each publish waits for its ack,
        # and a burst of plugs waiting in turn would hold the next batch back. A plug whose
        # effects the store refused sends nothing.
        errors: list[Exception | None] = [refused.get(write.plug_id) for write in batch]
        going = [n for n, error in enumerate(errors) if error is None]
        sent = await self.applier.send(
            [(self.site_of(queues[n].plug), batch[n].effects) for n in going]
        )
        for n, error in zip(going, sent, strict=True):
            errors[n] = error
        for queue, write, error in zip(queues, batch, errors, strict=True):
            if error is not None:
                self._failed(queue, len(write.effects), error)
                continue
            for _ in write.effects:  # others may have queued more meanwhile: keep those
                queue.effects.popleft()
            queue.applied += len(write.effects)
            if queue.failures:
                log.info(
                    "effects.applied_after_retry", plug_id=write.plug_id, attempts=queue.failures
                )
            queue.failures = 0
            self._tell(queue, lambda mine, q=queue: mine <= q.applied, True)
            try:
                self.applier.applied(write.effects, balances)
            except Exception:  # they are applied: a listener's failure must not apply them again
                log.exception("effects.listener_failed", plug_id=write.plug_id)
            if not queue.effects and self._queues.get(write.plug_id) is queue:
                del self._queues[write.plug_id]

    @staticmethod
    def _tell(queue: _Queue, covered: Callable[[int], bool], result: bool) -> None:
        still = []
        for mine, done in queue.waiters:
            if not covered(mine):
                still.append((mine, done))
            elif not done.done():
                done.set_result(result)
        queue.waiters = still

    def _failed(self, queue: _Queue, count: int, exc: Exception) -> None:
        queue.failures += 1
        backoff = min(FIRST_RETRY_MS << min(queue.failures - 1, 16), MAX_RETRY_MS)
        queue.retry_at_ms = self.clock.now_ms() + backoff
        self._ready.pop(queue.plug.plug_id, None)  # what it queued meanwhile waits with it
        self._tell(queue, lambda mine: True, queue.failures >= STUCK_AFTER)
        fields = {
            "plug_id": queue.plug.plug_id,
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
