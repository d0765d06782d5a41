"""Scenarios where a socket could stay on or a driver be overcharged: each must end safely."""

from __future__ import annotations

import json

from evplug.core.actual import ActualState
from evplug.core.plug import Plug, SessionClosed, State, SwitchRelay

ON, OFF = ActualState.ON, ActualState.OFF

START = 1_700_000_000_000


def session_on(plug: Plug, credit_cents: int, now: int = START) -> None:
    """Enable, admit and confirm ON: the plug is SENSING_CHARGE with the relay on."""
    plug.reading(now - 2000, OFF, 0.0, None)
    plug.enable("s1", "u1", credit_cents, 30, now)
    plug.admit(now)
    plug.relay_response(plug.pending_request_id, ON, True, now)
    assert plug.state is State.SENSING_CHARGE


def test_credit_runs_out_while_a_slow_car_never_reaches_the_start_threshold() -> None:
    plug = Plug("p", "f")
    session_on(plug, credit_cents=100)
    now, effects = START, []
    for _ in range(36_000 // 2):  # ten hours of 1100 W, just under the start threshold
        now += 2000
        effects += plug.reading(now, ON, 1100.0, None)
        effects += plug.tick(now)
        if plug.state is State.ACCOUNT_REMOVAL_ISSUED_LOCALLY:
            break
    assert plug.state is State.ACCOUNT_REMOVAL_ISSUED_LOCALLY
    assert plug.end_reason == "insufficient_credit"
    assert any(isinstance(e, SwitchRelay) and not e.on for e in effects)
    assert plug.session_cost_cents <= 101


def test_a_socket_on_for_a_car_that_never_comes_is_released() -> None:
    plug = Plug("p", "f", None)
    session_on(plug, credit_cents=10_000)
    now = START
    while plug.state is not State.ACCOUNT_REMOVAL_ISSUED_LOCALLY and now < START + 3_600_000:
        now += 2000
        plug.reading(now, ON, 0.0, None)
        plug.tick(now)
    assert plug.state is State.ACCOUNT_REMOVAL_ISSUED_LOCALLY
    assert plug.end_reason == "no_car"
    assert now - START <= plug.settings.no_draw_timeout_ms + plug.settings.no_car_timeout_ms + 6000
    closed = plug.relay_response(plug.pending_request_id, OFF, True, now)
    assert [e.reason for e in closed if isinstance(e, SessionClosed)] == ["no_car"]


def test_an_unanswered_off_is_sent_again_until_the_relay_confirms() -> None:
    plug = Plug("p", "f")
    session_on(plug, credit_cents=10_000)
    plug.disable(START)
    first = plug.pending_request_id
    plug.relay_response(first, ON, False, START + 10)  # the device could not be switched
    assert plug.state is State.ACCOUNT_REMOVAL_NOT_RESPONDING
    timeout = plug.settings.off_retry_ms
    assert plug.tick(START + timeout // 2) == []
    again = plug.tick(START + timeout)
    assert [(e.on, e.request_id != first) for e in again if isinstance(e, SwitchRelay)] == [
        (False, True)
    ]
    closed = plug.relay_response(plug.pending_request_id, OFF, True, START + timeout + 50)
    assert plug.state is State.ACCOUNT_NULL
    assert [type(e) for e in closed if isinstance(e, SessionClosed)] == [SessionClosed]


def test_request_ids_never_repeat_across_a_restore_from_an_older_snapshot() -> None:
    plug = Plug("p", "f")
    plug.reading(START, OFF, 0.0, None)
    older = plug.snapshot()
    loose = plug.reading(START + 100_000, ON, 0.0, None)  # switched on by hand: sent OFF
    restored = Plug.restore(older)
    restored.reading(START + 200_000, OFF, 0.0, None)
    restored.enable("s1", "u1", 1000, 30, START + 200_000)
    on = restored.admit(START + 200_000)
    ids = [e.request_id for e in [*loose, *on] if isinstance(e, SwitchRelay)]
    assert len(ids) == 2 and len(set(ids)) == 2


def test_power_integration_follows_the_relay_clock_not_the_server_clock() -> None:
    # The site's clock is ten minutes behind the mothership's.
    skew = 10 * 60_000
    plug = Plug("p", "f")
    plug.reading(START - skew - 2000, OFF, 0.0, None)
    plug.enable("s1", "u1", 10_000, 30, START)
    plug.admit(START)
    plug.relay_response(plug.pending_request_id, ON, True, START)
    for i in range(1800):  # one hour at 2000 W, no counter
        plug.reading(START - skew + i * 2000, ON, 2000.0, None)
    assert 1990 <= plug.energy_wh <= 2010


def test_a_snapshot_survives_the_stores_json_and_an_older_one_still_restores() -> None:
    plug = Plug("p", "f")
    session_on(plug, credit_cents=1000)
    plug.reading(START + 2000, ON, 3000.0, 5.0)
    stored = json.loads(json.dumps(plug.snapshot()))
    restored = Plug.restore(stored)
    assert restored.snapshot() == plug.snapshot()
    assert restored.actual is ActualState.ON
    # Written before the relay's state was a number, and before the meter's high-water mark.
    older = {k: v for k, v in stored.items() if k not in ("billed_to_wh", "counter_ms")}
    older["actual"] = "ON"
    assert Plug.restore(older).actual is ActualState.ON
