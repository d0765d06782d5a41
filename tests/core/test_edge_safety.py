"""The relay manager's own rules: unsupervised sessions end, an overloaded circuit sheds its
latest socket, no switching on while the mothership is silent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evplug.contracts import evplug_pb2 as pb
from evplug.core.actual import ActualState
from evplug.core.circuits import Circuit, CircuitTree
from evplug.core.edge_safety import (
    EdgeRules,
    EdgeState,
    Observed,
    StopReason,
    chain,
    heard,
    on_own,
    refuse_on,
    renewal_due,
    step,
    switched_on,
)

RULES = EdgeRules(silent_after_ms=60_000, unsupervised_max_ms=600_000, over_limit_ms=10_000)
T0 = 1_700_000_000_000
TREE = CircuitTree([Circuit("supply", 40.0), Circuit("A", 20.0, "supply"), Circuit("B", 20.0)])
ON, OFF, MIA = ActualState.ON, ActualState.OFF, ActualState.MIA


def plug(plug_id: str, circuit: str = "A", actual: ActualState = ON, amps: float = 8) -> Observed:
    return Observed(plug_id, circuit, actual, amps)


def test_reasons_carry_the_wire_numbers() -> None:
    assert {r.name: int(r) for r in StopReason} == {
        name.removeprefix("EDGE_STOP_"): number
        for name, number in pb.EdgeStop.items()
        if number != pb.EDGE_STOP_NONE
    }


def test_rules_that_cannot_hold_are_refused() -> None:
    with pytest.raises(ValueError, match="raise the maximum"):
        EdgeRules(silent_after_ms=60_000, unsupervised_max_ms=30_000, over_limit_ms=0)


def test_a_session_runs_on_unsupervised_up_to_the_maximum_then_stops() -> None:
    state = EdgeState(T0)
    plugs = [plug("p1"), plug("p2", actual=OFF, amps=0)]
    state, stops = step(state, plugs, TREE, RULES, T0 + RULES.silent_after_ms)
    assert stops == [] and on_own(state, RULES, T0 + RULES.silent_after_ms)
    state, stops = step(state, plugs, TREE, RULES, T0 + RULES.unsupervised_max_ms - 1)
    assert stops == []
    state, stops = step(state, plugs, TREE, RULES, T0 + RULES.unsupervised_max_ms)
    assert [(s.plug_id, s.reason) for s in stops] == [("p1", StopReason.UNSUPERVISED_TOO_LONG)]
    assert "silent for 600 s" in stops[0].detail


def test_no_switching_on_while_the_mothership_is_silent() -> None:
    state = EdgeState(T0)
    assert refuse_on(state, RULES, T0 + RULES.silent_after_ms - 1) is None
    why = refuse_on(state, RULES, T0 + RULES.silent_after_ms)
    assert why is not None and "uplink" in why
    assert refuse_on(heard(state, T0 + 70_000), RULES, T0 + 70_000) is None


def test_an_overloaded_circuit_loses_its_latest_socket_after_the_window() -> None:
    state = EdgeState(T0)
    state = switched_on(state, "p1", T0)
    state = switched_on(state, "p3", T0 + 2000)
    state = switched_on(state, "p2", T0 + 1000)
    plugs = [plug("p1"), plug("p2"), plug("p3"), plug("b1", "B")]  # 24 A on A's 20 A
    state, stops = step(state, plugs, TREE, RULES, T0 + 3000)
    assert stops == []
    state, stops = step(state, plugs, TREE, RULES, T0 + 3000 + RULES.over_limit_ms)
    assert [(s.plug_id, s.reason) for s in stops] == [("p3", StopReason.CIRCUIT_OVER_LIMIT)]
    assert "circuit A drew 24.0 A, over its 20 A limit" in stops[0].detail
    # The window starts again: the next one goes only if the circuit is still over then.
    state, stops = step(state, plugs[:2] + plugs[3:], TREE, RULES, T0 + 3000 + 2 * 10_000)
    assert stops == []


def test_a_parent_circuit_counts_its_children() -> None:
    tree = CircuitTree([Circuit("supply", 20.0), Circuit("A", 16.0, "supply")])
    state = switched_on(switched_on(EdgeState(T0), "a1", T0), "s1", T0 + 1)
    plugs = [plug("a1", "A", amps=12), plug("s1", "supply", amps=12)]
    state, _ = step(state, plugs, tree, RULES, T0 + 10)
    _, stops = step(state, plugs, tree, RULES, T0 + 10 + RULES.over_limit_ms)
    assert [s.plug_id for s in stops] == ["s1"]


def test_a_plug_whose_relay_went_silent_keeps_its_place() -> None:
    state = switched_on(EdgeState(T0), "p1", T0)
    state, _ = step(state, [plug("p1", actual=MIA)], TREE, RULES, T0 + 5000)
    assert state.on_since_ms == {"p1": T0}


def test_renewal_every_third_of_the_timer() -> None:
    assert renewal_due(None, 120_000, T0)
    assert not renewal_due(T0, 120_000, T0 + 39_999)
    assert renewal_due(T0, 120_000, T0 + 40_000)


# -- properties ------------------------------------------------------------------------------

CIRCUITS = ["A", "B", "supply", "unlisted"]


@st.composite
def sites(draw: st.DrawFn) -> tuple[EdgeState, list[Observed], int]:
    count = draw(st.integers(0, 8))
    plugs = [
        Observed(
            f"p{n}",
            draw(st.sampled_from(CIRCUITS)),
            draw(st.sampled_from([ON, ON, OFF, MIA])),
            draw(st.floats(0, 40)),
        )
        for n in range(count)
    ]
    since = {p.plug_id: T0 - draw(st.integers(0, 3_600_000)) for p in plugs if draw(st.booleans())}
    over = {c: T0 - draw(st.integers(0, 60_000)) for c in CIRCUITS[:3] if draw(st.booleans())}
    last_heard = T0 - draw(st.integers(0, 2 * RULES.unsupervised_max_ms))
    return EdgeState(last_heard, since, over), plugs, T0


def load(plugs: list[Observed], circuit: str) -> float:
    return sum(p.current_a for p in plugs if p.actual == ON and circuit in chain(TREE, p.circuit))


@given(sites())
def test_only_sockets_that_are_on_are_switched_off_each_once(
    site: tuple[EdgeState, list[Observed], int],
) -> None:
    state, plugs, now = site
    _, stops = step(state, plugs, TREE, RULES, now)
    stopped = [s.plug_id for s in stops]
    assert len(stopped) == len(set(stopped))
    assert set(stopped) <= {p.plug_id for p in plugs if p.actual == ON}


@given(sites())
def test_a_supervised_site_within_its_limits_is_left_alone(
    site: tuple[EdgeState, list[Observed], int],
) -> None:
    state, plugs, now = site
    if any(load(plugs, c) > TREE.limit(c) for c in TREE.circuits):
        return
    assert step(heard(state, now), plugs, TREE, RULES, now)[1] == []


@given(sites())
def test_past_the_maximum_every_socket_on_goes_off(
    site: tuple[EdgeState, list[Observed], int],
) -> None:
    state, plugs, now = site
    _, stops = step(state, plugs, TREE, RULES, now)
    unsupervised = {s.plug_id for s in stops if s.reason is StopReason.UNSUPERVISED_TOO_LONG}
    on = {p.plug_id for p in plugs if p.actual == ON}
    assert unsupervised == (on if now - state.last_heard_ms >= RULES.unsupervised_max_ms else set())


ONE = CircuitTree([Circuit("A", 20.0)])


@given(
    st.lists(st.tuples(st.floats(0, 16), st.integers(0, 3_600_000)), max_size=8),
    st.sampled_from([None, 0, RULES.over_limit_ms - 1, RULES.over_limit_ms, 60_000]),
)
def test_an_overloaded_circuit_sheds_its_latest_started_socket(
    draws: list[tuple[float, int]], over_for_ms: int | None
) -> None:
    plugs = [plug(f"p{n}", amps=amps) for n, (amps, _) in enumerate(draws)]
    since = {f"p{n}": T0 - ago for n, (_, ago) in enumerate(draws)}
    over = {} if over_for_ms is None else {"A": T0 - over_for_ms}
    after, stops = step(EdgeState(T0, since, over), plugs, ONE, RULES, T0)
    overloaded = sum(amps for amps, _ in draws) > 20
    if overloaded and over_for_ms is not None and over_for_ms >= RULES.over_limit_ms:
        latest = max(plugs, key=lambda p: (since[p.plug_id], p.plug_id))
        assert [(s.plug_id, s.reason) for s in stops] == [
            (latest.plug_id, StopReason.CIRCUIT_OVER_LIMIT)
        ]
        assert after.over_since_ms == {}  # the window starts again
    else:
        assert stops == []
        assert after.over_since_ms == ({"A": over.get("A", T0)} if overloaded else {})


@given(sites(), st.integers(0, 2 * RULES.unsupervised_max_ms))
def test_switching_on_is_refused_exactly_while_on_its_own(
    site: tuple[EdgeState, list[Observed], int], later_ms: int
) -> None:
    state, _, now = site
    refused = refuse_on(state, RULES, now + later_ms) is not None
    assert refused == (now + later_ms - state.last_heard_ms >= RULES.silent_after_ms)
