"""Every (state, trigger) pair of the plug table, and the tables' own consistency."""

from __future__ import annotations

from pathlib import Path

import pytest

from evplug.core.actual import ActualState
from evplug.core.diagram import markdown
from evplug.core.edge_safety import StopReason
from evplug.core.plug import (
    AUTOMATIC,
    PROMPT_TRIGGERS,
    PROMPTS,
    TRANSITIONS,
    Effect,
    InvalidTransition,
    Plug,
    State,
    Transitioned,
    Trigger,
)

NOW = 1_000_000
ROOT = Path(__file__).resolve().parents[2]


def plug_in(state: State, with_session: bool = True) -> Plug:
    plug = Plug("p1", "f1")
    plug.state = state
    plug.last_reading_ms = NOW - 10
    if with_session and state not in (State.INITIALISING, State.ACCOUNT_NULL, State.COMMISSIONING):
        plug.session_id, plug.user_id = "s1", "u1"
        plug.price_cents_per_kwh, plug.credit_cents = 30, 1000
        plug.credit_wh = 1000 * 1000 / 30
        plug.pending_request_id = "p1#1"
        plug.command_issued_ms = plug.state_since_ms = NOW - 100
    return plug


def settle(state: State, trigger: Trigger) -> State:
    """Where the table leads, following automatic states to where the plug rests."""
    target = TRANSITIONS[state][trigger]
    probe = plug_in(state)
    probe.credit_cents = 1000  # what ``fire`` enables with
    while target in AUTOMATIC:
        probe.state = target
        target = TRANSITIONS[target][AUTOMATIC[target](probe)]
    return target


def fire(plug: Plug, trigger: Trigger) -> list[Effect]:
    """Drive ``trigger`` through the plug's public event API."""
    s = plug.settings
    out: list[Effect] = []
    match trigger:
        case Trigger.FIRST_READING:
            # Neither ON nor OFF, so it confirms no pending command.
            out += plug.reading(NOW, ActualState.UNKNOWN, 0.0, 0.0)
        case Trigger.ENABLE:
            out += plug.enable("s9", "u9", 1000, 30, NOW)
        case Trigger.DISABLE:
            out += plug.disable(NOW)
        case Trigger.REQUEST_AGAIN:
            out += plug.request_again(NOW)
        case Trigger.ADMITTED:
            out += plug.admit(NOW)
        case Trigger.TURN_OVER:
            out += plug.turn_over(NOW)
        case Trigger.SHED:
            out += plug.shed(NOW)
        case Trigger.RELAY_ON:
            out += plug.relay_response(plug.pending_request_id, ActualState.ON, True, NOW)
        case Trigger.RELAY_OFF:
            out += plug.relay_response(plug.pending_request_id, ActualState.OFF, True, NOW)
        case Trigger.TRIPPED:
            out += plug.reading(NOW, ActualState.OVERCURRENT, 0.0, None)
        case Trigger.UNSUPERVISED_OFF:
            out += plug.reading(NOW, ActualState.OFF, 0.0, None, StopReason.UNSUPERVISED_TOO_LONG)
        case Trigger.RELAY_FOUND_OFF:
            out += plug.reading(NOW + s.relay_settle_ms, ActualState.OFF, 0.0, None)
        case Trigger.RELAY_KEPT_OFF:
            plug.relay_restarts = s.max_relay_restarts
            out += plug.reading(NOW + s.relay_settle_ms, ActualState.OFF, 0.0, None)
        case Trigger.NO_RESPONSE:
            out += plug.tick(NOW + s.command_timeout_ms)
        case Trigger.GIVE_UP:
            out += plug.tick(NOW + s.give_up_ms)
        case Trigger.CAR_DRAWING:
            out += plug.reading(NOW, ActualState.ON, s.charge_start_w + 100, None)
        case Trigger.NO_DRAW:
            out += plug.tick(NOW + s.no_draw_timeout_ms)
        case Trigger.NO_CAR:
            out += plug.reading(NOW, ActualState.ON, 0.0, None)
            out += plug.reading(NOW + s.no_car_timeout_ms, ActualState.ON, 0.0, None)
        case Trigger.LOW_POWER_SUSTAINED:
            step = s.complete_window_ms // s.complete_min_readings
            for i in range(s.complete_min_readings + 1):
                out += plug.reading(NOW + i * step, ActualState.ON, 1.0, None)
        case Trigger.CREDIT_EXHAUSTED:
            plug.credit_wh = 0.0
            out += plug.reading(NOW, ActualState.ON, 2000.0, None)
        case Trigger.COMMISSION_START:
            out += plug.commission(NOW)
        case Trigger.COMMISSION_END:
            out += plug.end_commissioning(NOW)
        case _:
            raise AssertionError(f"{trigger} is internal: fired only by automatic states")
    return out


EXTERNAL = [t for t in Trigger if t not in {
    Trigger.SESSION_OPENED, Trigger.CREDIT_OK, Trigger.CREDIT_LOW, Trigger.COMMAND_SENT,
    Trigger.RELEASE,
}]  # fmt: skip
GUARDED = {Trigger.FIRST_READING, Trigger.RELAY_ON, Trigger.RELAY_OFF, Trigger.NO_RESPONSE,
           Trigger.CAR_DRAWING, Trigger.NO_DRAW, Trigger.NO_CAR, Trigger.LOW_POWER_SUSTAINED,
           Trigger.CREDIT_EXHAUSTED, Trigger.TRIPPED, Trigger.RELAY_FOUND_OFF,
           Trigger.RELAY_KEPT_OFF, Trigger.GIVE_UP, Trigger.UNSUPERVISED_OFF}  # fmt: skip


RESTING = [s for s in State if s not in AUTOMATIC]


@pytest.mark.parametrize("state", RESTING, ids=str)
@pytest.mark.parametrize("trigger", EXTERNAL, ids=str)
def test_every_state_and_event(state: State, trigger: Trigger) -> None:
    plug = plug_in(state)
    if trigger in TRANSITIONS[state]:
        fire(plug, trigger)
        assert plug.state is settle(state, trigger)
    elif trigger in GUARDED:
        # Readings, answers and time never raise. The same raw event may mean another trigger
        # here (a reading in INITIALISING is the first reading), but only one of this state's.
        effects = fire(plug, trigger)
        moves = [e for e in effects if isinstance(e, Transitioned)]
        assert all(m.trigger is not trigger for m in moves)
        assert not moves or moves[0].trigger in TRANSITIONS[state]
    else:
        with pytest.raises(InvalidTransition):
            fire(plug, trigger)
        assert plug.state is state


@pytest.mark.parametrize("state", list(AUTOMATIC), ids=str)
def test_automatic_states_always_leave_by_their_own_table(state: State) -> None:
    # No event ever finds a plug in these states: the guard picks the way out at once.
    for credit in (0, 1000):
        plug = plug_in(state)
        plug.credit_cents = credit
        assert AUTOMATIC[state](plug) in TRANSITIONS[state]


def test_every_state_is_reachable_and_has_a_way_out() -> None:
    reachable = {State.INITIALISING}
    frontier = [State.INITIALISING]
    while frontier:
        for target in TRANSITIONS[frontier.pop()].values():
            if target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(State)
    assert all(TRANSITIONS[s] for s in State)


def test_every_prompt_leads_somewhere_from_its_state() -> None:
    for state, prompts in PROMPTS.items():
        for prompt in prompts:
            assert PROMPT_TRIGGERS[prompt] in TRANSITIONS[state], (state, prompt)


def test_original_prompts_are_offered() -> None:
    assert [str(p) for p in PROMPTS[State.ACCOUNT_NULL]] == ["Enable Socket"]
    for state in (State.ACCOUNT_ADDED, State.IN_QUEUE, State.SENSING_CHARGE, State.CHARGING):
        assert "Disable Socket" in PROMPTS[state]
    assert "Request Enable Again" in PROMPTS[State.SENSING_START_NOT_RESPONDING]
    assert "Request Disable Again" in PROMPTS[State.ACCOUNT_REMOVAL_NOT_RESPONDING]


def test_diagram_in_docs_is_generated_from_the_table() -> None:
    assert (ROOT / "docs" / "state-machine.md").read_text(encoding="utf-8") == markdown(), (
        "docs/state-machine.md is stale: run `make diagram`"
    )
