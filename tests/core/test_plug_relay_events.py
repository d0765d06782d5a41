"""A relay that trips, reboots, hangs or never answers, and a balance that changes mid-session:
every session still ends, billed once, with a reason its driver is told."""

from __future__ import annotations

import pytest

from evplug.core.plug import EndReason, Plug, Prompt, State
from tests.core.relay_sim import MIA, OFF, ON, START, TRIP, Relay


def test_a_trip_mid_charge_ends_the_session_billed_without_an_off_loop() -> None:
    relay = Relay()
    relay.start()
    relay.charge(3000.0, readings=30)
    metered = relay.plug.energy_wh
    relay.read(0.0, TRIP)  # Shelly: output off, errors ["overpower"]
    assert relay.commands == [True, False]  # one OFF, so a late ON can never undo the trip
    relay.read(0.0, TRIP)  # a tripped output is off: that confirms the OFF
    assert relay.plug.state is State.ACCOUNT_NULL
    [closed] = relay.closed
    assert closed.reason == EndReason.TRIPPED
    assert closed.energy_wh == pytest.approx(metered)
    for _ in range(1800):  # an hour of a tripped relay and the passing of time
        relay.read(0.0, TRIP)
        relay.tick(0)
    assert relay.commands == [True, False]  # no OFF loop, and never switched on again
    assert relay.plug.prompts == (Prompt.ENABLE_SOCKET,)  # only a new Enable may


def test_a_relay_that_trips_as_it_switches_on_ends_the_session() -> None:
    relay = Relay()
    relay.request()
    relay.answer(TRIP)  # read back after Switch.Set on: tripped at once
    assert relay.plug.state is State.ACCOUNT_REMOVAL_ISSUED_LOCALLY
    relay.answer(TRIP)  # the OFF's answer: still tripped, so off
    assert [(c.reason, c.energy_wh) for c in relay.closed] == [(EndReason.TRIPPED, 0.0)]
    relay.tick(10 * 60_000)
    assert relay.commands == [True, False]


def test_a_trip_while_the_off_is_on_its_way_confirms_it() -> None:
    relay = Relay()
    relay.start()
    relay.charge()
    relay.plug.disable(relay.now_ms)
    relay.read(0.0, TRIP)
    assert [c.reason for c in relay.closed] == [EndReason.DRIVER]
    assert relay.plug.state is State.ACCOUNT_NULL


def test_a_relay_that_never_answers_the_on_ends_the_session_after_a_while() -> None:
    relay = Relay()
    relay.request()
    relay.answer(ON, ok=False)  # the device is unreachable
    assert relay.plug.state is State.SENSING_START_NOT_RESPONDING
    give_up = relay.plug.settings.give_up_ms
    for _ in range(give_up // 2000 - 1):
        relay.read(0.0, MIA)
        relay.tick(0)
    assert relay.plug.state is State.SENSING_START_NOT_RESPONDING
    relay.tick(2000)
    assert relay.commands == [True, False]  # OFF, to be safe
    relay.answer(OFF)
    assert [c.reason for c in relay.closed] == [EndReason.RELAY_NOT_RESPONDING]
    assert relay.plug.state is State.ACCOUNT_NULL


def test_an_off_never_answered_closes_the_session_and_a_socket_found_on_is_switched_off() -> None:
    relay = Relay()
    relay.start()
    relay.charge()
    relay.plug.disable(relay.now_ms)
    for _ in range(relay.plug.settings.give_up_ms // 1000 + 60):
        relay.answer(OFF, ok=False)  # every OFF fails: the device hangs
        relay.tick(1000)
    assert [c.reason for c in relay.closed] == [EndReason.DRIVER]
    assert relay.plug.state is State.ACCOUNT_NULL
    sent = len(relay.commands)
    relay.tick(60_000)
    relay.read(3000.0, ON)  # back, and still on: nobody owns it now
    assert relay.commands[sent:] == [False]


def test_a_relay_that_reboots_mid_charge_is_switched_on_again_a_few_times() -> None:
    relay = Relay()
    relay.start()
    relay.charge()
    restarts = relay.plug.settings.max_relay_restarts
    for _ in range(restarts):
        relay.read(0.0, MIA)  # rebooting
        relay.read(0.0, OFF)  # back, its output off
        assert relay.plug.state is State.SENSING_START_ISSUED_LOCALLY
        assert relay.commands[-1] is True
        relay.answer(ON)
        relay.charge()
    metered = relay.plug.energy_wh
    relay.read(0.0, OFF)  # once too often: the session ends, and its driver is told why
    assert relay.commands[-1] is False
    relay.answer(OFF)
    [closed] = relay.closed
    assert (closed.reason, closed.energy_wh) == (EndReason.RELAY_SWITCHED_OFF, metered)


def test_a_reading_from_before_the_on_took_effect_is_not_a_reboot() -> None:
    relay = Relay()
    relay.start()
    relay.read(0.0, OFF)  # polled as the ON was carried out
    assert relay.plug.state is State.SENSING_CHARGE
    assert relay.commands == [True]


def test_an_unanswered_off_is_sent_again_soon_and_nothing_after_disable_is_billed() -> None:
    relay = Relay()
    relay.start()
    relay.charge(3000.0)
    relay.plug.disable(relay.now_ms)
    at_disable = relay.plug.energy_wh
    relay.answer(OFF, ok=False)  # the device hangs
    for _ in range(30):  # it still reads (on) for a minute while it hangs
        relay.read(3000.0)
        relay.tick(0)
    assert relay.commands.count(False) >= 60_000 // relay.plug.settings.off_retry_ms
    relay.answer(OFF)
    [closed] = relay.closed
    assert closed.energy_wh == pytest.approx(at_disable)


def test_a_top_up_mid_session_raises_the_credit_limit() -> None:
    relay = Relay()
    relay.start(credit_cents=3)  # 100 Wh at 30 c/kWh
    relay.charge(3000.0, readings=30)  # 50 Wh
    assert relay.plug.credit_changed(103, relay.now_ms) == []  # a dollar more
    relay.charge(3000.0, readings=60)  # 150 Wh in all
    assert relay.plug.state is State.CHARGING
    assert relay.plug.credit_wh == pytest.approx(103 * 1000 / 30)


def test_a_balance_already_used_up_by_the_session_ends_it() -> None:
    relay = Relay()
    relay.start(credit_cents=100)
    relay.charge(3000.0, readings=30)  # 50 Wh, 1.5 cents
    relay.effects += relay.plug.credit_changed(1, relay.now_ms)  # a refund left 1 cent: 33 Wh
    assert relay.commands == [True, False]
    relay.answer(OFF)
    assert [c.reason for c in relay.closed] == [EndReason.INSUFFICIENT_CREDIT]


def test_a_credit_change_without_a_session_changes_nothing() -> None:
    plug = Plug("p", "f")
    plug.reading(START, OFF, 0.0, None)
    before = plug.snapshot()
    assert plug.credit_changed(500, START) == []
    assert plug.snapshot() == before


def test_credit_must_be_whole_cents() -> None:
    relay = Relay()
    relay.start()
    before = relay.plug.snapshot()
    with pytest.raises(TypeError, match="whole number of cents"):
        relay.plug.credit_changed(1.5, relay.now_ms)  # type: ignore[arg-type]
    assert relay.plug.snapshot() == before
