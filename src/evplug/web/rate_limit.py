"""A small sliding-window rate limiter, keyed on whatever the caller names (IP, IP + email).

One process's memory: behind several web processes each counts on its own, which still bounds
guessing per process. Time comes from the clock handed in, so tests move it without sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from evplug.clock import Clock


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    per_s: float


class RateLimiter:
    def __init__(self, clock: Clock, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._hits: dict[str, deque[int]] = {}

    def hit(self, key: str, limit: Limit) -> float | None:
        """Count one attempt; None when allowed, else the seconds until the next is."""
        now = self.clock.now_ms()
        window_ms = round(limit.per_s * 1000)
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self.max_keys:
                self._forget_idle(now, window_ms)
            hits = self._hits[key] = deque()
        while hits and now - hits[0] >= window_ms:
            hits.popleft()
        if len(hits) >= limit.count:
            return max(1.0, math.ceil((hits[0] + window_ms - now) / 1000))
        hits.append(now)
        return None

    def _forget_idle(self, now: int, window_ms: int) -> None:
        # Bounded memory under a flood of new keys: drop keys with no recent attempt, then any.
        for key in [k for k, h in self._hits.items() if not h or now - h[-1] >= window_ms]:
            del self._hits[key]
        while len(self._hits) >= self.max_keys:
            del self._hits[next(iter(self._hits))]
