"""A socket the relay manager switched off by itself: its reading says why, and the session
ends (unsupervised too long) or goes back to the queue (its circuit overloaded), never switched
on again as if the relay had rebooted."""

from __future__ import annotations

import pytest

from evplug.core.edge_safety import StopReason
from evplug.core.plug import EndReason, State
from tests.core.relay_sim import OFF, Relay


def stopped(relay: Relay, reason: StopReason, delivered_wh: float) -> None:
    """The reading the relay manager sends as it switches off: the counter as it stopped."""
    assert relay.counter_wh is not None
    relay.now_ms += 500
    relay.counter_wh += delivered_wh
    relay.effects += relay.plug.reading(relay.now_ms, OFF, 0.0, relay.counter_wh, reason)


def test_a_session_stopped_for_running_unsupervised_too_long_ends_billed_to_the_stop() -> None:
    relay = Relay()
    relay.start()
    relay.charge(3000.0, readings=30)
    metered = relay.plug.energy_wh
    stopped(relay, StopReason.UNSUPERVISED_TOO_LONG, delivered_wh=0.4)
    assert relay.commands == [True, False]  # the OFF that closes it, never an ON again
    relay.answer(OFF)
    [closed] = relay.closed
    assert closed.reason == EndReason.UNSUPERVISED_TOO_LONG == "unsupervised_too_long"
    assert closed.energy_wh == pytest.approx(metered + 0.4)
    assert relay.plug.state is State.ACCOUNT_NULL


def test_a_socket_shed_by_its_overloaded_circuit_goes_back_to_the_queue() -> None:
    relay = Relay()
    relay.start()
    relay.charge(3000.0, readings=10)
    stopped(relay, StopReason.CIRCUIT_OVER_LIMIT, delivered_wh=0.4)
    assert relay.plug.state is State.LIMITING
    assert relay.commands == [True, False]
    relay.read(0.0, OFF)
    assert relay.plug.state is State.IN_QUEUE and relay.closed == []


def test_a_socket_without_a_session_is_not_affected() -> None:
    relay = Relay()
    relay.read(0.0, OFF)
    stopped(relay, StopReason.UNSUPERVISED_TOO_LONG, delivered_wh=0.0)
    assert relay.plug.state is State.ACCOUNT_NULL and relay.commands == []
