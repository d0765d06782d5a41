"""Checkpoints: the meters of plugs with an open session, saved as they move between transitions.

Transitions save their plug's whole snapshot with their batch; between them, a session's meter
moves with every reading, and a credit change moves its credit, without an effect to carry them.
That is all that moves without one (``Plug.METER_FIELDS``), so every ``checkpoint_s`` only the
meters are saved, over the last whole snapshot, for the plugs that changed since their last
checkpoint. They are saved a chunk at a time, each chunk one statement in one short transaction:
the effects lock is held for one chunk, never for the whole checkpoint, so the batches that carry
drivers' actions wait at most one chunk.
"""

from __future__ import annotations

from evplug.clock import Clock
from evplug.mothership.effects import EffectApplier
from evplug.mothership.pending import PendingEffects
from evplug.mothership.registry import PlugRegistry
from evplug.store.repository import Repository

# Plugs saved per statement and transaction: what a driver's action may wait behind (a few
# milliseconds on SQLite). Fewer, larger chunks cost less in all; 1,000 keeps Enable's p99 under
# 100 ms while checkpoints run back to back (`bench/scale.py`).
CHUNK_PLUGS = 1000


class Checkpoints:
    def __init__(
        self,
        registry: PlugRegistry,
        pending: PendingEffects,
        applier: EffectApplier,
        repo: Repository,
        clock: Clock,
        chunk_plugs: int = CHUNK_PLUGS,
    ) -> None:
        self.registry = registry
        self.pending = pending
        self.applier = applier
        self.repo = repo
        self.clock = clock
        self.chunk_plugs = chunk_plugs
        self._saved_reading_ms: dict[str, int] = {}  # plug in session -> at its last checkpoint
        self._touched: set[str] = set()  # plugs stepped by other than a reading since then

    def touched(self, plug_id: str) -> None:
        """A plug changed by other than a reading (a credit change, a driver, a tick)."""
        self._touched.add(plug_id)

    async def run(self) -> int:
        """Save the meter of every plug in session that changed since its last checkpoint; how
        many were."""
        plugs, saved, waiting = self.registry.plugs, self._saved_reading_ms, self.pending.waiting
        touched, self._touched = self._touched, set()
        in_session = self.registry.plugs_in_session()
        changed = [
            p for p in in_session if p in touched or saved.get(p) != plugs[p].last_reading_ms
        ]
        self._saved_reading_ms = {p: saved[p] for p in in_session if p in saved}
        written = 0
        for start in range(0, len(changed), self.chunk_plugs):
            async with self.applier.lock:
                # Taken under the lock: no batch lands between a meter and its write. A plug
                # whose effects wait is saved with them, never ahead of them.
                meters = {
                    p: plugs[p].meter()
                    for p in changed[start : start + self.chunk_plugs]
                    if p in plugs and not waiting(p)
                }
                try:
                    await self.repo.sites.save_meters(meters, self.clock.now_ms())
                except Exception:
                    self._touched.update(meters)  # the next one tries
                    raise
            for plug_id, meter in meters.items():  # as saved: readings may come during the write
                self._saved_reading_ms[plug_id] = meter["last_reading_ms"]
            written += len(meters)
        return written
