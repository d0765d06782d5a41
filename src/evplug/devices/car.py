"""A believable EV on a socket: the load behind every simulated plug and emulated relay.

About 10 A at about 240 V while charging, tapering as the battery fills, then a trickle of a
few watts once full. Time is passed in; the model itself never reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

NOMINAL_V = 240.0


@dataclass(slots=True)
class Car:
    need_wh: float = 8_000.0
    max_current_a: float = 10.0
    taper_from: float = 0.8  # share of need_wh after which the current tapers
    trickle_w: float = 3.0
    delivered_wh: float = 0.0

    @property
    def full(self) -> bool:
        return self.delivered_wh >= self.need_wh

    def take(self, offered_wh: float) -> float:
        """What the car takes of ``offered_wh`` (an interval at its last power): all of it, but
        a car that fills up on the way takes only what it lacked. A long interval (a caller
        that stalled, in sped-up time minutes of it) must not overfill the battery."""
        if not self.full:
            offered_wh = min(offered_wh, self.need_wh - self.delivered_wh)
        self.delivered_wh += offered_wh
        return offered_wh

    def current_a(self, voltage_v: float) -> float:
        if self.full:
            return self.trickle_w / voltage_v
        share = self.delivered_wh / self.need_wh
        if share < self.taper_from:
            return self.max_current_a
        # Linear taper to 10% of the maximum current at the end.
        left = (1 - share) / (1 - self.taper_from)
        return self.max_current_a * (0.1 + 0.9 * left)


@dataclass(slots=True)
class Socket:
    """One relay channel with its meter, and the car that may be plugged into it."""

    car: Car | None = None
    relay_on: bool = False
    energy_wh: float = 0.0  # monotonic, like the device's counter; only a reboot resets it
    power_w: float = 0.0
    current_a: float = 0.0
    voltage_v: float = NOMINAL_V
    power_factor: float = 0.0
    overcurrent: bool = False
    _last_ms: int | None = field(default=None, repr=False)

    def advance(self, now_ms: int) -> None:
        """Run the load up to ``now_ms``: energy flows at the power of the last interval, and the
        counter counts what the car took of it."""
        if self._last_ms is not None and now_ms > self._last_ms:
            wh = self.power_w * (now_ms - self._last_ms) / 3_600_000
            if self.car is not None and self.relay_on:
                wh = self.car.take(wh)
            self.energy_wh += wh
        self._last_ms = now_ms if self._last_ms is None else max(self._last_ms, now_ms)
        # Mains wobbles a little; deterministic so tests can replay it.
        self.voltage_v = NOMINAL_V + 2.0 * math.sin(now_ms / 7_000)
        if self.relay_on and self.car is not None and not self.overcurrent:
            self.current_a = self.car.current_a(self.voltage_v)
            self.power_factor = 0.99 if not self.car.full else 0.5
            self.power_w = self.voltage_v * self.current_a * self.power_factor
        else:
            self.current_a = self.power_w = self.power_factor = 0.0

    def switch(self, on: bool, now_ms: int) -> None:
        self.advance(now_ms)
        self.relay_on = on
        self.advance(now_ms)

    def reboot(self, now_ms: int) -> None:
        """A power cycle: the counter starts again from zero and the relay comes up off."""
        self.advance(now_ms)
        self.energy_wh = 0.0
        self.relay_on = False
        self.advance(now_ms)
