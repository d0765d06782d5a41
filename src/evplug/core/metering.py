"""Session energy from the relay's own counter, with a power-integration fallback.

Counters are cumulative and only ever go up, except when the device reboots or is reset:
then the new value is energy since the reset, so it is added whole. Energy is never negative.
"""

from __future__ import annotations

# Integrating power across a longer silence would invent energy we never saw.
MAX_INTEGRATION_GAP_MS = 5 * 60 * 1000


def counter_delta_wh(previous_wh: float, current_wh: float) -> float:
    """Energy between two counter values; a drop means the counter restarted from zero."""
    if current_wh >= previous_wh:
        return current_wh - previous_wh
    return max(current_wh, 0.0)


def integrated_wh(previous_power_w: float, power_w: float, elapsed_ms: int) -> float:
    """Trapezoidal energy over one reading interval, for devices without a counter."""
    if elapsed_ms <= 0 or elapsed_ms > MAX_INTEGRATION_GAP_MS:
        return 0.0
    mean_w = (max(previous_power_w, 0.0) + max(power_w, 0.0)) / 2
    return mean_w * elapsed_ms / 3_600_000
