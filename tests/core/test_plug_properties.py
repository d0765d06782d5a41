"""Properties of the plug state machine over random event sequences (hypothesis)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from evplug.core.actual import ActualState
from evplug.core.plug import (
    Effect,
    InvalidTransition,
    Plug,
    SessionClosed,
    SessionOpened,
    State,
    SwitchRelay,
)
from evplug.core.readings import InvalidReading

START_MS = 1_700_000_000_000

events = st.lists(
    st.one_of(
        st.tuples(
            st.just("reading"),
            st.integers(-20_000, 70_000),  # ms since the last event; negative: out of order
            st.sampled_from(list(ActualState)),
            st.one_of(st.floats(0, 3000), st.sampled_from([math.nan, math.inf, -1e6])),
            st.sampled_from(["up", "reset", "none", "back", "nan"]),
        ),
        st.tuples(st.just("enable"), st.integers(0, 5000)),  # credit cents
        st.tuples(st.just("credit"), st.integers(0, 5000)),
        st.tuples(st.sampled_from(["disable", "again", "admit", "commission", "done"])),
        st.tuples(
            st.just("answer"),
            st.booleans(),
            st.sampled_from([ActualState.ON, ActualState.OFF, ActualState.OVERCURRENT]),
            st.booleans(),
        ),
        st.tuples(st.just("tick"), st.integers(0, 400_000)),
        st.tuples(st.just("tech"), st.booleans()),
    ),
    max_size=120,
)


def run(
    plug: Plug,
    sequence: list[tuple],
    on_step: Callable[[dict, Sequence[Effect]], None] | None = None,
) -> list:
    """Feed the events; return every effect with the plug's state and session just after it.

    ``on_step`` is told the snapshot before each event the plug took, and the event's effects.
    """
    now = START_MS
    counter = 1_000_000.0
    sessions = 0
    seen = []
    for event in sequence:
        kind = event[0]
        step_before = plug.snapshot()
        try:
            if kind == "reading":
                _, dt, actual, power, mode = event
                now += dt
                if mode == "up" and math.isfinite(power):
                    counter += max(power, 0.0) * max(dt, 0) / 3_600_000
                elif mode == "reset":
                    counter = 0.0
                shown = {"none": None, "back": counter / 2, "nan": math.nan}.get(mode, counter)
                before = plug.snapshot()
                try:
                    effects = plug.reading(now, actual, power, shown)
                except InvalidReading:
                    assert plug.snapshot() == before
                    continue
            elif kind == "enable":
                sessions += 1
                effects = plug.enable(f"s{sessions}", "driver", event[1], 30, now)
            elif kind == "credit":
                effects = plug.credit_changed(event[1], now)
            elif kind == "disable":
                effects = plug.disable(now)
            elif kind == "again":
                effects = plug.request_again(now)
            elif kind == "admit":
                effects = plug.admit(now)
            elif kind == "commission":
                effects = plug.commission(now)
            elif kind == "done":
                effects = plug.end_commissioning(now)
            elif kind == "answer":
                _, current, actual, ok = event
                request = plug.pending_request_id if current else "stale#0"
                effects = plug.relay_response(request, actual, ok, now)
            elif kind == "tick":
                now += event[1]
                effects = plug.tick(now)
            else:
                effects = plug.technician_switch(event[1], now)
        except InvalidTransition:
            continue
        assert math.isfinite(plug.energy_wh) and plug.energy_wh >= 0
        if on_step is not None:
            on_step(step_before, effects)
        seen.extend((e, plug.state, plug.session_id) for e in effects)
    return seen


@settings(max_examples=400, deadline=None)
@given(events)
def test_relay_is_never_asked_on_for_a_plug_without_an_owner(sequence: list[tuple]) -> None:
    for effect, state, session_id in run(Plug("p", "f"), sequence):
        if isinstance(effect, SwitchRelay) and effect.on:
            assert session_id or state is State.COMMISSIONING


@settings(max_examples=400, deadline=None)
@given(events)
def test_a_session_is_billed_at_most_once_and_never_negatively(sequence: list[tuple]) -> None:
    effects = [e for e, _, _ in run(Plug("p", "f"), sequence)]
    closed = Counter(e.session_id for e in effects if isinstance(e, SessionClosed))
    opened = {e.session_id for e in effects if isinstance(e, SessionOpened)}
    assert all(n == 1 for n in closed.values())
    assert set(closed) <= opened
    for e in effects:
        if isinstance(e, SessionClosed):
            assert math.isfinite(e.energy_wh) and e.energy_wh >= 0 and e.cost_cents >= 0


@settings(max_examples=200, deadline=None)
@given(events)
def test_a_plug_restored_from_its_snapshot_behaves_the_same(sequence: list[tuple]) -> None:
    half = len(sequence) // 2
    original = Plug("p", "f")
    run(original, sequence[:half])
    restored = Plug.restore(original.snapshot())
    assert restored.snapshot() == original.snapshot()
    assert [(type(e).__name__, str(s)) for e, s, _ in run(restored, sequence[half:])] == [
        (type(e).__name__, str(s)) for e, s, _ in run(original, sequence[half:])
    ]
