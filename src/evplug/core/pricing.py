"""Prices and costs in integer minor units (cents); energy in watt-hours."""

from __future__ import annotations

DEFAULT_PRICE_CENTS_PER_KWH = 30
DEFAULT_CURRENCY = "AUD"
MAX_PRICE_CENTS_PER_KWH = 10_000


def cost_cents(energy_wh: float, price_cents_per_kwh: int) -> int:
    """What ``energy_wh`` costs, rounded half up to the cent.

    Energy is rounded to whole milliwatt-hours first so the arithmetic is exact integers.
    """
    milli_wh = round(max(energy_wh, 0.0) * 1000)
    return (milli_wh * price_cents_per_kwh + 500_000) // 1_000_000


def affordable_wh(credit_cents: int, price_cents_per_kwh: int) -> float:
    """The energy ``credit_cents`` buys: the point at which a session must stop."""
    if price_cents_per_kwh <= 0:
        return float("inf")
    return max(credit_cents, 0) * 1000 / price_cents_per_kwh
