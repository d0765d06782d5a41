"""Session energy from the relay's own counter, with a power-integration fallback, never more
than the socket could have delivered.

A counter is cumulative. When the device restarts it drops to near zero and counts again: a
reset, and what it shows is energy since. It can also step back without a restart (a glitch,
an older total restored from flash, a stray zero): a drop to more than the socket could have
delivered since the previous reading is such a step back. It bills nothing, and the range it
stepped back over is not billed again when the counter climbs back through it. No interval
bills more than the socket's rated power could deliver in it; the excess is reported.
Integrated power is an estimate that the next counter reading replaces.
"""

from __future__ import annotations

from enum import StrEnum

MS_PER_HOUR = 3_600_000
# Integrating power across a longer silence would invent energy we never saw.
MAX_INTEGRATION_GAP_MS = 5 * 60 * 1000


class Anomaly(StrEnum):
    """What the meter did not believe, for the shell to count and log."""

    COUNTER_STEP_BACK = "counter_step_back"
    COUNTER_RESET = "counter_reset"
    OVER_RATED_POWER = "over_rated_power"
    CLOCK_STEP_BACK = "clock_step_back"


def counter_step(
    last_wh: float, billed_to_wh: float, counter_wh: float, max_power_w: float, elapsed_ms: int
) -> tuple[float, float, Anomaly | None, float]:
    """One counter reading: (energy to bill, counter billed up to now, anomaly, energy discarded).

    ``last_wh`` is the previous reading's counter, ``billed_to_wh`` (never below it) the highest
    counter value billed; a socket of ``max_power_w`` could have delivered for ``elapsed_ms``
    (slack included) since.
    """
    possible_wh = max_power_w * elapsed_ms / MS_PER_HOUR if elapsed_ms > 0 else 0.0
    if counter_wh < last_wh:
        if counter_wh <= possible_wh:
            return counter_wh, counter_wh, Anomaly.COUNTER_RESET, 0.0
        return 0.0, billed_to_wh, Anomaly.COUNTER_STEP_BACK, 0.0
    new_wh = counter_wh - billed_to_wh
    if new_wh <= 0.0:
        # Climbing back through a range it stepped back over: that range is billed already.
        return 0.0, billed_to_wh, None, 0.0
    if new_wh <= possible_wh:
        return new_wh, counter_wh, None, 0.0
    return possible_wh, counter_wh, Anomaly.OVER_RATED_POWER, new_wh - possible_wh


def integrated_wh(
    previous_power_w: float, power_w: float, elapsed_ms: int, max_power_w: float
) -> float:
    """Trapezoidal energy over one reading interval, each end capped at the rated power."""
    if elapsed_ms <= 0 or elapsed_ms > MAX_INTEGRATION_GAP_MS:
        return 0.0
    start_w = min(max(previous_power_w, 0.0), max_power_w)
    end_w = min(max(power_w, 0.0), max_power_w)
    return (start_w + end_w) / 2 * elapsed_ms / MS_PER_HOUR
