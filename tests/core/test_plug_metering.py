"""What a session is billed: never more than the relay's counter and its rated power allow,
never counted twice, never from a reading that cannot be physical."""

from __future__ import annotations

import math

import pytest

from evplug.core.metering import Anomaly
from evplug.core.plug import MeterAnomaly
from evplug.core.readings import InvalidReading
from tests.core.relay_sim import OFF, ON, Relay, rated_wh

LIFETIME_WH = 1_235_000.0  # a relay that has delivered 1,235 kWh before this session


def anomalies(relay: Relay) -> list[str]:
    return [e.kind for e in relay.effects if isinstance(e, MeterAnomaly)]


def one_interval_wh(relay: Relay) -> float:
    s = relay.plug.settings
    return rated_wh(s.max_power_w, 2000 + s.reading_jitter_ms)


@pytest.mark.parametrize(
    ("shown_wh", "kinds", "slack"),
    [
        # An older total restored from flash: a step back, billed nothing.
        (LIFETIME_WH - 23.0, [Anomaly.COUNTER_STEP_BACK], False),
        (LIFETIME_WH / 2, [Anomaly.COUNTER_STEP_BACK], False),
        # A stray zero looks like a reset; the true total after it is bounded by the rating.
        (0.0, [Anomaly.COUNTER_RESET, Anomaly.OVER_RATED_POWER], True),
    ],
)
def test_a_counter_stepping_back_never_bills_its_lifetime(
    shown_wh: float, kinds: list[str], slack: bool
) -> None:
    relay = Relay(counter_wh=LIFETIME_WH)
    relay.start()
    relay.charge(1800.0, readings=20)
    relay.read(1800.0, counter_wh=shown_wh)
    for _ in range(5):
        relay.read(1800.0)
    allowed = relay.delivered_wh + (one_interval_wh(relay) if slack else 0.0)
    assert 0 < relay.plug.energy_wh <= allowed + 1e-9
    assert anomalies(relay) == kinds


def test_climbing_back_through_a_stepped_back_range_bills_it_once() -> None:
    relay = Relay(counter_wh=LIFETIME_WH)
    relay.start()
    relay.charge(1800.0, readings=20)
    billed = relay.plug.energy_wh
    assert relay.counter_wh is not None
    relay.counter_wh -= 10.0  # the device restored an older total and counts on from it
    for _ in range(40):  # 40 Wh more: 10 of them climb back to where billing stood
        relay.read(1800.0)
    assert relay.plug.energy_wh == pytest.approx(billed + 30.0, abs=1e-6)


def test_a_counter_reset_bills_what_was_counted_since() -> None:
    relay = Relay()
    relay.start()
    relay.charge(3000.0, readings=20)
    relay.counter_wh = 0.0  # the device rebooted
    relay.charge(3000.0, readings=20)
    assert relay.plug.energy_wh == pytest.approx(relay.delivered_wh)
    assert anomalies(relay) == [Anomaly.COUNTER_RESET]


def test_no_interval_bills_more_than_the_socket_could_deliver() -> None:
    relay = Relay()
    relay.start()
    relay.charge(3000.0, readings=20)
    billed = relay.plug.energy_wh
    assert relay.counter_wh is not None
    relay.read(3000.0, counter_wh=relay.counter_wh + 500.0)  # 500 Wh more in two seconds
    assert relay.plug.energy_wh - billed == pytest.approx(one_interval_wh(relay))
    [anomaly] = [e for e in relay.effects if isinstance(e, MeterAnomaly)]
    assert anomaly.kind == Anomaly.OVER_RATED_POWER
    assert anomaly.discarded_wh == pytest.approx(500.0 - one_interval_wh(relay))


def test_power_without_a_counter_is_integrated_at_most_at_the_rated_power() -> None:
    relay = Relay(counter_wh=None)
    relay.start()
    relay.charge(9000.0, readings=30)  # a meter reading far above what a 16 A socket gives
    assert relay.plug.energy_wh == pytest.approx(4000.0 * 60 / 3600, rel=0.05)
    assert set(anomalies(relay)) == {Anomaly.OVER_RATED_POWER}


def test_a_reading_without_its_counter_is_not_counted_again_by_the_next() -> None:
    relay = Relay()
    relay.start()
    relay.charge(2400.0, readings=10)
    counter, billed = relay.counter_wh, relay.plug.energy_wh
    relay.read(2400.0, counter_wh=None)  # integrated: an estimate...
    relay.read(2400.0)  # ...that the counter replaces
    assert relay.counter_wh is not None and counter is not None
    assert relay.plug.energy_wh - billed == pytest.approx(relay.counter_wh - counter)


@pytest.mark.parametrize(
    ("power_w", "counter_wh"),
    [
        (math.nan, 1100.0),
        (math.inf, 1100.0),
        (3000.0, math.nan),
        (3000.0, math.inf),
        (3000.0, -1.0),
        (1e9, 1100.0),
    ],
)
def test_an_impossible_reading_is_refused_whole_and_the_session_carries_on(
    power_w: float, counter_wh: float
) -> None:
    relay = Relay()
    relay.start()
    relay.charge(3000.0)
    before = relay.plug.snapshot()
    with pytest.raises(InvalidReading, match=r"^p: "):
        relay.plug.reading(relay.now_ms + 2000, ON, power_w, counter_wh)
    assert relay.plug.snapshot() == before
    relay.charge(3000.0)
    relay.effects += relay.plug.disable(relay.now_ms)
    relay.answer(OFF)
    [closed] = relay.closed
    assert math.isfinite(closed.energy_wh)
    assert closed.energy_wh == pytest.approx(relay.delivered_wh)
    assert closed.cost_cents > 0
