"""The relay's clock can step back, run ahead or deliver late: a plug is never blinded by it,
and nothing is billed twice."""

from __future__ import annotations

import random

import pytest

from evplug.core.metering import Anomaly
from evplug.core.plug import MeterAnomaly, Plug, State
from tests.core.relay_sim import OFF, ON, Relay

HOUR_MS = 3_600_000


@pytest.mark.parametrize("counter_wh", [1000.0, None], ids=["counter", "no counter"])
def test_a_relay_clock_that_steps_back_an_hour_keeps_metering(counter_wh: float | None) -> None:
    relay = Relay(counter_wh=counter_wh)
    relay.start()
    relay.charge(2000.0, readings=30)
    relay.offset_ms = -HOUR_MS  # the relay manager restarted with its clock an hour behind
    relay.charge(2000.0, readings=1800)  # an hour at 2 kW
    # The step and the reading that showed it are no time; the first interval ramped from 0 W.
    lost = 2.5 * 2000.0 * 2000 / HOUR_MS
    assert relay.delivered_wh - lost <= relay.plug.energy_wh <= relay.delivered_wh + 1e-6
    assert Anomaly.CLOCK_STEP_BACK in [e.kind for e in relay.effects if isinstance(e, MeterAnomaly)]


def test_credit_runs_out_on_time_after_the_clock_stepped_back() -> None:
    relay = Relay()
    relay.start(credit_cents=30)  # 1 kWh
    relay.charge(2000.0, readings=30)
    relay.offset_ms = -HOUR_MS
    while relay.plug.state is State.CHARGING and relay.delivered_wh < 2000:
        relay.read(2000.0)
    assert relay.plug.state is State.ACCOUNT_REMOVAL_ISSUED_LOCALLY
    assert relay.plug.end_reason == "insufficient_credit"
    assert 1000 <= relay.delivered_wh <= 1003


def test_one_reading_from_five_minutes_ahead_blinds_the_plug_for_two_readings_at_most() -> None:
    relay = Relay()
    relay.start()
    relay.offset_ms = 5 * 60_000
    relay.read(0.0)
    relay.offset_ms = 0
    relay.read(3000.0)
    relay.read(3000.0)
    assert relay.plug.state is State.CHARGING


@pytest.mark.parametrize("counter_wh", [1000.0, None], ids=["counter", "no counter"])
def test_redelivered_and_reordered_readings_bill_nothing_twice(counter_wh: float | None) -> None:
    relay = Relay(counter_wh=counter_wh)
    relay.start()
    relay.charge(3000.0, readings=60)
    relay.read(0.0)  # the car is done: nothing more is delivered from here
    billed = relay.plug.energy_wh
    for reading in list(relay.fed):  # each old chunk delivered again, between current ones
        relay.replay(reading)
        relay.read(0.0)
    recent = relay.fed[-4:]
    random.Random(7).shuffle(recent)
    for reading in recent:  # the last few again, out of order
        relay.replay(reading)
    assert relay.plug.energy_wh == billed


def test_a_run_of_readings_redelivered_late_bills_nothing_twice_with_a_counter() -> None:
    relay = Relay()
    relay.start()
    relay.charge(3000.0, readings=60)
    for reading in list(relay.fed[-30:]):  # a backlog redelivered in one go, a minute late
        relay.replay(reading)
    relay.charge(3000.0, readings=10)
    assert relay.plug.energy_wh == pytest.approx(relay.delivered_wh)


def test_a_backlog_the_bus_delivers_again_is_repeats_however_far_behind() -> None:
    relay = Relay(counter_wh=0.0)  # a new relay: its counter near zero, as after a reset
    relay.request()
    relay.read(0.0, OFF)  # the ON on its way: OFF, the counter at zero
    relay.answer(ON)
    relay.charge(2400.0, readings=20)
    held = [getattr(relay.plug, f) for f in Plug.SNAPSHOT_FIELDS]
    for reading in list(relay.fed):  # not acked within the bus's ack wait: all come again
        assert relay.replay(reading, redelivered=True) == []
    assert [getattr(relay.plug, f) for f in Plug.SNAPSHOT_FIELDS] == held
    relay.charge(2400.0, readings=5)
    assert relay.plug.energy_wh == pytest.approx(relay.delivered_wh)
    assert relay.commands == [True]
