"""The circuit rules: admission over a tree of limits, turns, shedding, the queue's outlook."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evplug.core.circuits import (
    Circuit,
    CircuitError,
    CircuitTree,
    Holder,
    Outlook,
    Waiter,
    admit,
    holding_a,
    learned_a,
    loads,
    overloaded,
    queue_outlook,
    turns_over,
)

SLOT = 1_800_000
STAGGER = 3_000
SIM_SLOT = 60_000  # short turns keep the simulations quick

# A garage: a 40 A supply, two 20 A sub-circuits; a 4-channel relay's breaker under one of them.
GARAGE = CircuitTree(
    [
        Circuit("site", 40),
        Circuit("east", 20, "site"),
        Circuit("west", 20, "site"),
        Circuit("relay", 16, "west"),
    ]
)


def waiter(plug_id: str, circuit: str = "east", amps: float = 10, at: int = 0) -> Waiter:
    return Waiter(plug_id, circuit, amps, at)


def holder(plug_id: str, circuit: str = "east", amps: float = 10, at: int = 0) -> Holder:
    return Holder(plug_id, circuit, amps, at)


def test_a_plug_draws_against_every_limit_up_its_chain() -> None:
    assert GARAGE.chain("relay") == ("relay", "west", "site")
    assert loads(GARAGE, [holder("a", "relay", 6)]) == {
        "site": 6,
        "east": 0,
        "west": 6,
        "relay": 6,
    }


@pytest.mark.parametrize(
    ("circuits", "problem"),
    [
        ([Circuit("a", 10, "b")], "parent 'b' is not a circuit"),
        ([Circuit("a", 10, "b"), Circuit("b", 10, "a")], "loop"),
        ([Circuit("a", 0)], "positive"),
    ],
)
def test_a_tree_that_cannot_be_is_refused(circuits: list[Circuit], problem: str) -> None:
    with pytest.raises(CircuitError, match=problem):
        CircuitTree(circuits)


def test_admits_first_come_first_served_within_every_limit() -> None:
    queue = [waiter("c", at=30), waiter("a", at=10), waiter("b", at=20)]
    assert admit(GARAGE, [], queue, 0, {}, 0) == ["a", "b"]
    # The measured current of a plug that is on counts.
    assert admit(GARAGE, [holder("x", "east", 3)], queue, 0, {}, 0) == ["a"]
    # The supply is the bottleneck: 12 A on the west leaves room for two cars, not three.
    west = [holder("x", "relay", 12)]
    assert admit(GARAGE, west, [*queue, waiter("d", "west", at=40)], 0, {}, 0) == ["a", "b"]


def test_nobody_overtakes_where_the_queue_is_stuck_but_others_go_on() -> None:
    # "big" does not fit under the relay's breaker yet; "small" behind it on the same breaker
    # would, but waits its turn; a plug on the east side goes on.
    queue = [waiter("big", "relay", 10, 1), waiter("small", "relay", 4, 2), waiter("e", at=3)]
    assert admit(GARAGE, [holder("x", "relay", 8)], queue, 0, {}, 0) == ["e"]


def test_a_plug_too_big_for_its_circuit_blocks_nobody() -> None:
    queue = [waiter("huge", "relay", 17, 1), waiter("small", "relay", 4, 2)]
    assert admit(GARAGE, [], queue, 0, {}, 0) == ["small"]


def test_switch_ons_on_one_circuit_are_staggered() -> None:
    queue = [waiter("a", at=1), waiter("b", at=2)]
    assert admit(GARAGE, [], queue, 10_000, {}, STAGGER) == ["a"]
    assert admit(GARAGE, [holder("a")], queue[1:], 12_000, {"east": 10_000}, STAGGER) == []
    assert admit(GARAGE, [holder("a")], queue[1:], 13_000, {"east": 10_000}, STAGGER) == ["b"]


def test_a_car_drawing_less_than_expected_lets_the_next_in() -> None:
    assert holding_a(expected_a=10, measured_a=0.5, switching_on=False) == 0.5
    assert holding_a(expected_a=10, measured_a=0.0, switching_on=True) == 10
    assert admit(GARAGE, [holder("slow", amps=1)], [waiter("b", amps=10)], 0, {}, 0) == ["b"]


def test_the_expected_draw_is_learned_from_charging() -> None:
    assert learned_a(None, 0.0, 10) == 10
    assert learned_a(None, 6.5, 10) == 6.5
    assert learned_a(6.5, 6.0, 10) == 6.5


def test_a_car_whose_slot_is_over_yields_to_the_queue() -> None:
    on = [holder("old", at=0), holder("new", at=SLOT // 2)]
    queue = [waiter("w", at=1)]
    assert turns_over(GARAGE, on, queue, SLOT - 1, SLOT) == []
    assert turns_over(GARAGE, on, queue, SLOT, SLOT) == ["old"]
    # A car already switching off counts gone: nobody else yields for the same waiting plug.
    going = [Holder("old", "east", 10, 0, leaving=True), on[1]]
    assert turns_over(GARAGE, going, queue, SLOT, SLOT) == []
    # Nobody waits, or the waiting plug fits: nobody yields.
    assert turns_over(GARAGE, on, [], 2 * SLOT, SLOT) == []
    assert turns_over(GARAGE, on[:1], queue, 2 * SLOT, SLOT) == []


def test_cars_still_switching_on_never_yield() -> None:
    on = [Holder("a", "east", 10, 0, charging=False), Holder("b", "east", 10, 0, charging=False)]
    assert turns_over(GARAGE, on, [waiter("w", at=1)], 2 * SLOT, SLOT) == []


def test_the_most_recently_admitted_plug_is_shed_after_the_window() -> None:
    measured = [holder("a", amps=11, at=1), holder("b", amps=11, at=2)]
    since, shed = overloaded(GARAGE, measured, {}, 100, 5_000)
    assert (since, shed) == ({"east": 100}, [])
    since, shed = overloaded(GARAGE, measured, since, 5_100, 5_000)
    assert (since, shed) == ({"east": 5_100}, ["b"])
    # Back under its limit: the circuit's window is forgotten.
    assert overloaded(GARAGE, measured[:1], since, 6_000, 5_000) == ({}, [])


def test_the_queue_outlook_counts_slots_and_draws() -> None:
    on = [holder("a", at=0), holder("b", at=600_000)]
    queue = [waiter("w1", at=1), waiter("w2", at=2), waiter("w3", "relay", 20, 3)]
    assert queue_outlook(GARAGE, on, queue, 300_000, SLOT) == {
        "w1": Outlook(1, SLOT - 300_000),
        "w2": Outlook(2, SLOT + 600_000 - 300_000),
        "w3": Outlook(3, None),  # more than its breaker allows: never
    }
    # Drivers read whole minutes, rounded up.
    assert [Outlook(1, ms).eta_min for ms in (0, 1, 60_000, 60_001, None)] == [0, 1, 1, 2, None]


# -- properties over random sites ----------------------------------------------------------------


@st.composite
def sites(draw: st.DrawFn) -> tuple[CircuitTree, list[Waiter]]:
    """A supply with sub-circuits nested up to three deep, and plugs that each fit alone."""
    circuits = [Circuit("c0", draw(st.sampled_from([16.0, 20.0, 32.0, 40.0, 63.0])))]
    for n in range(1, draw(st.integers(0, 4)) + 1):
        parent = draw(st.sampled_from(circuits))
        limit = draw(st.floats(6.0, parent.limit_a))
        circuits.append(Circuit(f"c{n}", limit, parent.id))
    tree = CircuitTree(circuits)
    plugs = []
    for n in range(draw(st.integers(1, 10))):
        circuit = draw(st.sampled_from(circuits))
        smallest = min(tree.limit(c) for c in tree.chain(circuit.id))
        amps = draw(st.floats(1.0, smallest))
        plugs.append(Waiter(f"p{n}", circuit.id, amps, draw(st.integers(0, 5)) * 1000))
    return tree, plugs


@dataclass
class Simulation:
    """The rules alone, on a clock of one-second steps; a car draws what it was expected to."""

    tree: CircuitTree
    rotate: bool
    now: int = 0
    on: dict[str, Holder] = field(default_factory=dict)
    queue: dict[str, Waiter] = field(default_factory=dict)
    last_on: dict[str, int] = field(default_factory=dict)
    admissions: list[str] = field(default_factory=list)
    longest_wait: dict[str, tuple[int, int]] = field(default_factory=dict)  # wait, queue length

    def request(self, w: Waiter) -> None:
        self.queue[w.plug_id] = Waiter(w.plug_id, w.circuit, w.expected_a, self.now)

    def step(self) -> None:
        if self.rotate:
            for plug_id in turns_over(
                self.tree, list(self.on.values()), list(self.queue.values()), self.now, SIM_SLOT
            ):
                h = self.on.pop(plug_id)
                self.queue[plug_id] = Waiter(plug_id, h.circuit, h.load_a, self.now)
        queued = list(self.queue.values())
        for plug_id in admit(
            self.tree, list(self.on.values()), queued, self.now, self.last_on, STAGGER
        ):
            assert plug_id not in self.on, "admitted twice"
            w = self.queue.pop(plug_id)
            self.on[plug_id] = Holder(plug_id, w.circuit, w.expected_a, self.now)
            self.last_on.update(dict.fromkeys(self.tree.chain(w.circuit), self.now))
            self.admissions.append(plug_id)
            waited = self.now - w.queued_ms
            if waited > self.longest_wait.get(plug_id, (-1, 0))[0]:
                self.longest_wait[plug_id] = (waited, len(queued))
        for circuit, used in loads(self.tree, self.on.values()).items():
            assert used <= self.tree.limit(circuit) + 1e-6, f"{circuit} over its limit"
        self.now += 1000


@given(sites(), st.data())
@settings(max_examples=150, deadline=None)
def test_admitted_draw_never_exceeds_any_limit(
    site: tuple[CircuitTree, list[Waiter]], data: st.DataObject
) -> None:
    tree, plugs = site
    # Some plugs are on already, drawing their measured current (at most what fits).
    on: list[Holder] = []
    for w in plugs[: data.draw(st.integers(0, len(plugs)))]:
        free = min(tree.limit(c) - loads(tree, on)[c] for c in tree.chain(w.circuit))
        on.append(Holder(w.plug_id, w.circuit, data.draw(st.floats(0, max(free, 0))), 0))
    queue = plugs[len(on) :]
    admitted = admit(tree, on, queue, 10_000, {}, STAGGER)
    assert len(set(admitted)) == len(admitted)
    by_id = {w.plug_id: w for w in queue}
    now_on = on + [Holder(p, by_id[p].circuit, by_id[p].expected_a, 10_000) for p in admitted]
    for circuit, used in loads(tree, now_on).items():
        assert used <= tree.limit(circuit) + 1e-6


@given(sites(), st.lists(st.integers(1, 120), min_size=10, max_size=10))
@settings(max_examples=100, deadline=None)
def test_every_queued_plug_is_admitted_once_capacity_frees(
    site: tuple[CircuitTree, list[Waiter]], minutes: list[int]
) -> None:
    tree, plugs = site
    sim = Simulation(tree, rotate=False)
    for w in plugs:
        sim.request(w)
    charge_ms = {w.plug_id: minutes[n] * 60_000 for n, w in enumerate(plugs)}
    while (sim.queue or sim.on) and sim.now < 24 * 3600_000:
        for plug_id, h in list(sim.on.items()):
            if sim.now - h.admitted_ms >= charge_ms[plug_id]:  # the car is full
                del sim.on[plug_id]
        sim.step()
    assert sorted(sim.admissions) == sorted(w.plug_id for w in plugs)
    # First come, first served where they share every circuit.
    if len(tree.circuits) == 1:
        assert sim.admissions == [w.plug_id for w in sorted(plugs, key=lambda w: w.plug_id)]


@given(sites())
@settings(max_examples=100, deadline=None)
def test_with_rotation_no_plug_waits_longer_than_the_queue_takes_turns(
    site: tuple[CircuitTree, list[Waiter]],
) -> None:
    tree, plugs = site
    sim = Simulation(tree, rotate=True)
    for w in plugs:
        sim.request(w)
    # Cars that never fill up: only taking turns moves the queue.
    while sim.now < 12 * SIM_SLOT:
        sim.step()
    for plug_id, (waited, queue_length) in sim.longest_wait.items():
        assert waited <= queue_length * (SIM_SLOT + STAGGER), (plug_id, waited, queue_length)
    assert set(sim.longest_wait) == {w.plug_id for w in plugs}
