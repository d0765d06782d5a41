"""A plug taking turns: off for another car or an overloaded circuit, then back in the queue."""

from __future__ import annotations

from evplug.core.actual import ActualState
from evplug.core.plug import Plug, State, SwitchRelay

T0 = 1_700_000_000_000


def charging_plug() -> Plug:
    """A plug whose session queued at T0, was admitted at T0 + 1 s and is charging at 10 A."""
    plug = Plug("p1", "f1")
    plug.reading(T0 - 1000, ActualState.OFF, 0.0, 0.0)
    plug.enable("s1", "u1", 5_000, 30, T0)
    plug.admit(T0 + 1000)
    plug.relay_response(plug.pending_request_id, ActualState.ON, True, T0 + 1500)
    plug.reading(T0 + 2000, ActualState.ON, 2300.0, 0.0)
    assert plug.state is State.CHARGING
    return plug


def switch_off_confirmed(plug: Plug, at_ms: int) -> None:
    effects = plug.reading(at_ms, ActualState.OFF, 0.0, 10.0)
    assert plug.state is State.IN_QUEUE, effects


def test_a_turn_over_switches_off_and_queues_at_the_back() -> None:
    plug = charging_plug()
    effects = plug.turn_over(T0 + 60_000)
    assert plug.state is State.LIMITING
    assert [e.on for e in effects if isinstance(e, SwitchRelay)] == [False]
    switch_off_confirmed(plug, T0 + 61_000)
    assert plug.queued_at_ms == T0 + 60_000 and plug.session_id == "s1"
    assert plug.energy_wh > 0  # metered up to the OFF, the session still open


def test_a_shed_plug_keeps_its_place_at_the_front() -> None:
    plug = charging_plug()
    plug.shed(T0 + 60_000)
    switch_off_confirmed(plug, T0 + 61_000)
    assert plug.queued_at_ms == T0


def test_an_unanswered_off_is_sent_again_then_given_up() -> None:
    plug = charging_plug()
    plug.turn_over(T0 + 60_000)
    retry = plug.tick(T0 + 60_000 + plug.settings.off_retry_ms)
    assert [e.on for e in retry if isinstance(e, SwitchRelay)] == [False]
    plug.tick(T0 + 60_000 + plug.settings.give_up_ms)
    assert plug.state is State.ACCOUNT_REMOVAL_ISSUED_LOCALLY
    assert plug.end_reason == "relay_not_responding"


def test_a_car_back_for_another_turn_charges_even_drawing_little() -> None:
    plug = charging_plug()
    plug.turn_over(T0 + 60_000)
    switch_off_confirmed(plug, T0 + 61_000)
    plug.admit(T0 + 120_000)
    plug.relay_response(plug.pending_request_id, ActualState.ON, True, T0 + 121_000)
    plug.reading(T0 + 122_000, ActualState.ON, 460.0, 20.0)  # 2 A: tapering near full
    assert plug.state is State.CHARGING


def test_a_driver_may_leave_while_the_relay_goes_off() -> None:
    plug = charging_plug()
    plug.turn_over(T0 + 60_000)
    plug.disable(T0 + 60_500)
    assert plug.state is State.ACCOUNT_REMOVAL_ISSUED_LOCALLY
