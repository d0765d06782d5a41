"""Metering, pricing and ledger rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evplug.core import ledger
from evplug.core.metering import MAX_INTEGRATION_GAP_MS, Anomaly, counter_step, integrated_wh
from evplug.core.pricing import affordable_wh, cost_cents

RATED_W = 4000.0


@given(st.lists(st.tuples(st.floats(0, 10), st.booleans()), min_size=1, max_size=200))
def test_energy_from_a_counter_with_resets_is_never_negative(
    steps: list[tuple[float, bool]],
) -> None:
    # Each step is at most what the socket delivers (10 Wh in 10 s); a reset restarts from zero.
    counter, last, billed_to, total, truth = 0.0, 0.0, 0.0, 0.0, 0.0
    for wh, reset in steps:
        counter = wh if reset else counter + wh
        truth += wh
        delta, billed_to, _, _ = counter_step(last, billed_to, counter, 3600.0, elapsed_ms=10_000)
        assert delta >= 0
        total += delta
        last = counter
    # A reset loses nothing as long as it is seen before the counter passes its old value.
    assert total <= truth + 1e-6


@pytest.mark.parametrize(
    ("last", "billed_to", "counter", "expected"),
    [
        (1500.0, 1500.0, 1501.5, (1.5, 1501.5, None, 0.0)),
        (1500.0, 1500.0, 1.5, (1.5, 1.5, Anomaly.COUNTER_RESET, 0.0)),
        (1500.0, 1500.0, 0.0, (0.0, 0.0, Anomaly.COUNTER_RESET, 0.0)),
        # A step back bills nothing, and climbing back through the range bills nothing again.
        (1500.0, 1500.0, 1477.0, (0.0, 1500.0, Anomaly.COUNTER_STEP_BACK, 0.0)),
        (1477.0, 1500.0, 1490.0, (0.0, 1500.0, None, 0.0)),
        (1490.0, 1500.0, 1502.0, (2.0, 1502.0, None, 0.0)),
        # More than the socket could deliver: the bound is billed, the rest reported.
        (1500.0, 1500.0, 1600.0, (2.0, 1600.0, Anomaly.OVER_RATED_POWER, 98.0)),
    ],
)  # 2 Wh is what 3.6 kW delivers in 2 s
def test_counter_step_tells_a_reset_from_a_step_back(
    last: float,
    billed_to: float,
    counter: float,
    expected: tuple[float, float, Anomaly | None, float],
) -> None:
    assert counter_step(last, billed_to, counter, 3600.0, 2000) == pytest.approx(expected)


def test_no_time_allows_no_energy() -> None:
    assert counter_step(10.0, 10.0, 11.0, RATED_W, 0) == (0.0, 11.0, Anomaly.OVER_RATED_POWER, 1.0)
    assert counter_step(10.0, 10.0, 0.5, RATED_W, -5000)[2] is Anomaly.COUNTER_STEP_BACK


def test_power_integration_is_trapezoidal_capped_and_ignores_long_silences() -> None:
    assert integrated_wh(2400, 2400, 3_600_000 // 60, RATED_W) == pytest.approx(40.0)
    assert integrated_wh(0, 2400, 1000, RATED_W) == pytest.approx(2400 / 2 / 3600)
    assert integrated_wh(2400, 2400, MAX_INTEGRATION_GAP_MS + 1, RATED_W) == 0.0
    assert integrated_wh(-5, -5, 1000, RATED_W) == 0.0
    assert integrated_wh(9000, 9000, 3_600_000 // 60, RATED_W) == pytest.approx(RATED_W / 60)


@pytest.mark.parametrize(
    ("wh", "price", "cents"),
    [(0, 30, 0), (1000, 30, 30), (1500, 30, 45), (16.66, 30, 0), (16.67, 30, 1), (8123.4, 30, 244)],
)
def test_cost_rounds_half_up_to_the_cent(wh: float, price: int, cents: int) -> None:
    assert cost_cents(wh, price) == cents


@given(st.floats(0, 1e6), st.integers(0, 10_000))
def test_cost_is_integer_and_never_negative(wh: float, price: int) -> None:
    cents = cost_cents(wh, price)
    assert isinstance(cents, int) and cents >= 0


def test_affordable_energy_costs_exactly_the_credit() -> None:
    assert cost_cents(affordable_wh(450, 30), 30) == 450
    assert affordable_wh(100, 0) == float("inf")


@pytest.mark.parametrize(
    ("kind", "amount"),
    [
        (ledger.EntryKind.TOP_UP, -100),
        (ledger.EntryKind.SESSION_CHARGE, 100),
        (ledger.EntryKind.ADJUSTMENT, ledger.MAX_ENTRY_CENTS + 1),
    ],
)
def test_entries_with_the_wrong_sign_or_size_are_refused(
    kind: ledger.EntryKind, amount: int
) -> None:
    with pytest.raises(ledger.LedgerError):
        key = ledger.KEY_PREFIX[kind] + "k"
        ledger.validate(ledger.Entry("u", kind, amount, key, 0, "why", "who"))


def test_fractional_cents_are_refused() -> None:
    with pytest.raises(ledger.LedgerError, match="integer"):
        ledger.validate(ledger.Entry("u", ledger.EntryKind.TOP_UP, 1.5, "k", 0))  # type: ignore[arg-type]
