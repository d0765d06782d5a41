"""The edge of the core: a reading that cannot be physical never reaches a plug.

One NaN would make a session's energy NaN for good (no credit check fires, the bill cannot be
computed), so such readings are refused whole with a reason that names what to fix.
"""

from __future__ import annotations

import math

# Meters read a little below zero at no load; much further below is a reversed clamp or a bug.
LOWEST_POWER_W = -50.0
# Far past any socket's rating: a broken meter or a unit error, not a car.
IMPLAUSIBLE_POWER_FACTOR = 10.0
_INFINITY = math.inf


class InvalidReading(ValueError):
    """A reading that cannot be physical; the plug that refused it has not changed."""


def reading_problem(
    timestamp_ms: int, power_w: float, energy_wh: float | None, max_power_w: float
) -> str | None:
    """Why a reading cannot be physical, or ``None`` when it can."""
    if not timestamp_ms > 0:
        return f"timestamp {timestamp_ms} ms is not after 1970: set the relay manager's clock"
    if not LOWEST_POWER_W <= power_w <= IMPLAUSIBLE_POWER_FACTOR * max_power_w:
        if not math.isfinite(power_w):
            return f"power {power_w} W is not a finite number: the meter or its driver is broken"
        return (
            f"power {power_w:g} W is outside"
            f" {LOWEST_POWER_W:g}..{IMPLAUSIBLE_POWER_FACTOR * max_power_w:g} W:"
            " check the meter's wiring and the driver's units"
        )
    if energy_wh is not None and not 0.0 <= energy_wh < _INFINITY:
        return (
            f"energy counter {energy_wh} Wh is not a finite number >= 0:"
            " the meter or its driver is broken"
        )
    return None
