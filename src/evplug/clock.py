"""Clocks for the imperative shell. The core never reads one; it is handed ``now_ms``.

``ScaledClock`` runs time faster for the demo (a whole charge in seconds, every timeout scaled
with it); ``FakeClock`` only moves when a test advances it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ScaledClock:
    """Wall-clock time from the moment it is made, running ``factor`` times faster."""

    def __init__(self, factor: float) -> None:
        if factor <= 0:
            raise ValueError("a clock's speed factor must be positive")
        self.factor = factor
        self._epoch_ms = time.time_ns() // 1_000_000
        self._mono0 = time.monotonic()

    def now_ms(self) -> int:
        return self._epoch_ms + int((time.monotonic() - self._mono0) * 1000 * self.factor)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.factor)


class FakeClock:
    """Time that moves only when ``advance`` is called; sleepers wake in deadline order."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now_ms(self) -> int:
        return self._now_ms

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deadline = self._now_ms + max(int(seconds * 1000), 0)
        heapq.heappush(self._sleepers, (deadline, next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time on, waking each sleeper due and letting it run before moving further."""
        target = self._now_ms + int(seconds * 1000)
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now_ms = max(self._now_ms, deadline)
            if not future.done():
                future.set_result(None)
            await settle()
        self._now_ms = target
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let every ready task run until the loop is quiet (bounded, no wall-clock wait)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
