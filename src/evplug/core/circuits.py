"""Circuits and the rules of sharing them: who may switch on, who yields, who is shed.

A site is a tree of circuits, each with a current limit: the site's supply, sub-circuits under it,
a multi-channel relay's shared breaker under those. Every plug hangs off one circuit, and what it
draws counts against every limit up its chain. A smart plug is on or off, so sharing is taking
turns. Each rule here is a function of the plugs' state and ``now_ms``: the mothership gathers
the inputs and carries out the answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

DEFAULT_CIRCUIT_LIMIT_A = 32.0
# What a car is assumed to draw until its socket has been seen charging (a 10 A granny lead).
DEFAULT_PLUG_ALLOWANCE_A = 10.0
NOMINAL_VOLTS = 230.0
# The fuze id of a site's supply: circuits the site file puts under nothing else are under it.
SITE_SUPPLY = "supply"
_SLACK_A = 1e-9  # float sums of amperes: 10 + 10 must fit under 20


class CircuitError(ValueError):
    """A circuit tree that cannot be: an unknown parent, a loop, a limit that is not positive."""


@dataclass(frozen=True, slots=True)
class Circuit:
    id: str
    limit_a: float
    parent: str | None = None


class CircuitTree:
    """Circuits by id, each with its chain up to the supply (itself first)."""

    def __init__(self, circuits: Iterable[Circuit]) -> None:
        self.circuits = {c.id: c for c in circuits}
        for c in self.circuits.values():
            if not (math.isfinite(c.limit_a) and c.limit_a > 0):
                raise CircuitError(f"circuit {c.id!r}: limit must be a positive number of A")
            if c.parent is not None and c.parent not in self.circuits:
                raise CircuitError(
                    f"circuit {c.id!r}: parent {c.parent!r} is not a circuit: add it or drop"
                    " the parent"
                )
        self._chains = {c: self._walk(c) for c in self.circuits}

    def _walk(self, circuit_id: str) -> tuple[str, ...]:
        chain = [circuit_id]
        parent = self.circuits[circuit_id].parent
        while parent is not None:
            if parent in chain:
                raise CircuitError(f"circuit {circuit_id!r}: its parents loop back ({parent!r})")
            chain.append(parent)
            parent = self.circuits[parent].parent
        return tuple(chain)

    def chain(self, circuit_id: str) -> tuple[str, ...]:
        try:
            return self._chains[circuit_id]
        except KeyError:
            raise CircuitError(f"no circuit {circuit_id!r}") from None

    def limit(self, circuit_id: str) -> float:
        return self.circuits[circuit_id].limit_a

    def fits_alone(self, circuit_id: str, amps: float) -> bool:
        """Whether a plug drawing ``amps`` could ever switch on here, with all else off."""
        return all(amps <= self.limit(c) + _SLACK_A for c in self.chain(circuit_id))


@dataclass(frozen=True, slots=True)
class Holder:
    """A plug whose relay is on or being switched on: it holds capacity."""

    plug_id: str
    circuit: str
    load_a: float  # what it counts against the limits now
    admitted_ms: int
    # Only a car that is charging takes turns: one still switching on has had no turn yet.
    charging: bool = True
    # Already switching off (full, out of credit, yielding): it neither yields nor is shed, and
    # the rules that switch others off count it gone, while admission still counts its current.
    leaving: bool = False


@dataclass(frozen=True, slots=True)
class Waiter:
    """A plug in the queue."""

    plug_id: str
    circuit: str
    expected_a: float
    queued_ms: int


@dataclass(frozen=True, slots=True)
class Outlook:
    """Where a queued plug stands: 1 is next; ``eta_ms`` is None when it can never fit."""

    position: int
    eta_ms: int | None

    @property
    def eta_min(self) -> int | None:
        """Whole minutes, rounded up: what a driver reads, steady from one second to the next."""
        return None if self.eta_ms is None else -(-self.eta_ms // 60_000)


def holding_a(expected_a: float, measured_a: float, switching_on: bool) -> float:
    """A car switching on holds what it is expected to draw; any other counts what it draws.

    So a socket whose car has not started yet is not taken for empty, and a charging car drawing
    much less than expected lets the next one in.
    """
    return max(expected_a, measured_a) if switching_on else measured_a


def learned_a(known_a: float | None, measured_a: float, default_a: float) -> float:
    """A socket's expected draw: the most it has been seen drawing while charging."""
    return max(known_a or 0.0, measured_a) if measured_a > 0 else (known_a or default_a)


def loads(tree: CircuitTree, holders: Iterable[Holder]) -> dict[str, float]:
    """The current counted against each circuit: its own plugs' and its sub-circuits'."""
    used = dict.fromkeys(tree.circuits, 0.0)
    for h in holders:
        for c in tree.chain(h.circuit):
            used[c] += h.load_a
    return used


def _too_full(
    tree: CircuitTree, used: Mapping[str, float], chain: Sequence[str], amps: float
) -> set[str]:
    return {c for c in chain if used[c] + amps > tree.limit(c) + _SLACK_A}


def _add(used: dict[str, float], chain: Iterable[str], amps: float) -> None:
    for c in chain:
        used[c] += amps


def _in_order(waiters: Iterable[Waiter]) -> list[Waiter]:
    return sorted(waiters, key=lambda w: (w.queued_ms, w.plug_id))


def admit(
    tree: CircuitTree,
    holders: Sequence[Holder],
    waiters: Sequence[Waiter],
    now_ms: int,
    last_on_ms: Mapping[str, int],
    stagger_ms: int,
) -> list[str]:
    """The queued plugs to switch on now, in queue order.

    A plug is admitted when its expected draw fits under every limit up its chain. Nobody
    overtakes where the queue is stuck: a plug that does not fit closes the circuits it does not
    fit under to everyone behind it. A circuit switched on less than ``stagger_ms`` ago (here or
    under it) takes no other switch-on yet, so inrush currents do not add up. A plug that could
    never fit, even alone, is passed over rather than block everyone.
    """
    used = loads(tree, holders)
    last = dict(last_on_ms)
    closed: set[str] = set()
    admitted: list[str] = []
    for w in _in_order(waiters):
        chain = tree.chain(w.circuit)
        if closed.intersection(chain) or not tree.fits_alone(w.circuit, w.expected_a):
            continue
        full = _too_full(tree, used, chain, w.expected_a)
        recent = {c for c in chain if c in last and now_ms - last[c] < stagger_ms}
        if full or recent:
            closed |= full | recent
            continue
        _add(used, chain, w.expected_a)
        last.update(dict.fromkeys(chain, now_ms))
        admitted.append(w.plug_id)
    return admitted


def turns_over(
    tree: CircuitTree,
    holders: Sequence[Holder],
    waiters: Sequence[Waiter],
    now_ms: int,
    slot_ms: int,
) -> list[str]:
    """Charging plugs whose slot is over and whose place a queued plug needs: they yield.

    For each plug in queue order that does not fit, the cars sharing a full circuit with it whose
    slot has run out yield, the longest charging first, just enough to make room. If even all of
    them would not make room yet, none yields for it (switching off a car for nothing) and the
    circuits it waits on stay closed to the plugs behind it.
    """
    staying = [h for h in holders if not h.leaving]
    used = loads(tree, staying)
    expired = sorted(
        (h for h in staying if h.charging and now_ms - h.admitted_ms >= slot_ms),
        key=lambda h: (h.admitted_ms, h.plug_id),
    )
    yielding: list[Holder] = []
    closed: set[str] = set()
    for w in _in_order(waiters):
        chain = tree.chain(w.circuit)
        if closed.intersection(chain) or not tree.fits_alone(w.circuit, w.expected_a):
            continue
        full = _too_full(tree, used, chain, w.expected_a)
        trial = dict(used)
        chosen: list[Holder] = []
        for h in expired:
            if not full or h in yielding or not full.intersection(tree.chain(h.circuit)):
                continue
            _add(trial, tree.chain(h.circuit), -h.load_a)
            chosen.append(h)
            full = _too_full(tree, trial, chain, w.expected_a)
        if full:
            closed |= full
            continue
        used = trial
        _add(used, chain, w.expected_a)
        yielding += chosen
    return [h.plug_id for h in yielding]


def overloaded(
    tree: CircuitTree,
    measured: Sequence[Holder],
    over_since_ms: Mapping[str, int],
    now_ms: int,
    window_ms: int,
) -> tuple[dict[str, int], list[str]]:
    """Plugs to switch off because a circuit has drawn more than its limit for ``window_ms``.

    ``measured`` holds each plug that is on with the current it draws. On each circuit over its
    limit that long, the most recently admitted plug under it is shed, and the circuit's window
    starts again (the next is shed only if it is still over then). Returns when each circuit went
    over (for the next call) and the plugs to shed, deepest circuits first.
    """
    used = loads(tree, measured)
    since: dict[str, int] = {}
    shed: list[Holder] = []
    for circuit in sorted(tree.circuits, key=lambda c: -len(tree.chain(c))):
        if used[circuit] <= tree.limit(circuit) + _SLACK_A:
            continue
        start = over_since_ms.get(circuit, now_ms)
        since[circuit] = start
        if now_ms - start < window_ms:
            continue
        under = [
            h
            for h in measured
            if circuit in tree.chain(h.circuit) and not h.leaving and h not in shed
        ]
        if not under:
            continue
        latest = max(under, key=lambda h: (h.admitted_ms, h.plug_id))
        shed.append(latest)
        _add(used, tree.chain(latest.circuit), -latest.load_a)
        since[circuit] = now_ms
    return since, [h.plug_id for h in shed]


def queue_outlook(
    tree: CircuitTree,
    holders: Sequence[Holder],
    waiters: Sequence[Waiter],
    now_ms: int,
    slot_ms: int,
) -> dict[str, Outlook]:
    """Each queued plug's place in its site's queue and when its turn should come.

    Plays the queue forward: plugs on now free their place when their slot ends, each queued
    plug in order takes the first moment it fits (never before the plug ahead of it) and holds
    it for a slot. An estimate: a car that is full leaves earlier.
    """
    # (start, end, amps, chain) of every turn, the ones under way first.
    turns = [
        (
            now_ms,
            now_ms if h.leaving else max(now_ms, h.admitted_ms + slot_ms),
            h.load_a,
            tree.chain(h.circuit),
        )
        for h in holders
    ]
    positions: dict[str, int] = {}
    outlook: dict[str, Outlook] = {}
    earliest = now_ms
    for w in _in_order(waiters):
        chain = tree.chain(w.circuit)
        site = chain[-1]
        positions[site] = positions.get(site, 0) + 1
        start = None
        if tree.fits_alone(w.circuit, w.expected_a):
            for t in sorted({earliest, *(end for _, end, _, _ in turns if end > earliest)}):
                used = dict.fromkeys(chain, 0.0)
                for _, end, amps, other in turns:
                    if end > t:
                        _add(used, (c for c in other if c in used), amps)
                if not _too_full(tree, used, chain, w.expected_a):
                    start = t
                    break
        if start is None:
            outlook[w.plug_id] = Outlook(positions[site], None)
            continue
        earliest = start
        turns.append((start, start + slot_ms, w.expected_a, chain))
        outlook[w.plug_id] = Outlook(positions[site], start - now_ms)
    return outlook
