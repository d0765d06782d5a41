"""What a relay manager decides on its own authority, with or without the mothership.

Two rules, both functions of the latest readings, the circuits' limits and ``now_ms``:

- A mothership not heard from for ``silent_after_ms`` leaves the site on its own: no socket is
  switched on, and the sockets that are on keep going until ``unsupervised_max_ms`` after the
  mothership was last heard (nobody checks a driver's credit meanwhile), then go off.
- A circuit measured above its limit for ``over_limit_ms`` loses its most recently started
  socket, whoever supervises the site. One socket at a time: the next reading tells whether
  that was enough.

The relay manager carries out the ``Stop``s and tells the mothership each one's reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum

from evplug.core.actual import ActualState
from evplug.core.circuits import CircuitTree

_SLACK_A = 1e-9  # float sums of amperes: 10 + 10 is not over 20


class StopReason(IntEnum):
    """The numbers are the wire contract's (``EdgeStop``); a test holds them equal."""

    UNSUPERVISED_TOO_LONG = 1
    CIRCUIT_OVER_LIMIT = 2


@dataclass(frozen=True, slots=True)
class EdgeRules:
    silent_after_ms: int
    unsupervised_max_ms: int
    over_limit_ms: int

    def __post_init__(self) -> None:
        if min(self.silent_after_ms, self.over_limit_ms) < 0:
            raise ValueError("edge safety durations must not be negative")
        if self.unsupervised_max_ms < self.silent_after_ms:
            raise ValueError(
                f"unsupervised_max_ms ({self.unsupervised_max_ms}) must be at least"
                f" silent_after_ms ({self.silent_after_ms}): raise the maximum"
            )


@dataclass(frozen=True, slots=True)
class Observed:
    """A plug's latest reading, as far as these rules care."""

    plug_id: str
    circuit: str
    actual: ActualState
    current_a: float


@dataclass(frozen=True, slots=True)
class Stop:
    plug_id: str
    reason: StopReason
    detail: str  # a sentence for the log and the mothership


@dataclass(frozen=True, slots=True)
class EdgeState:
    last_heard_ms: int
    # When each socket seen on was first seen on (or switched on here): who started last.
    on_since_ms: Mapping[str, int] = field(default_factory=dict)
    # When each circuit was first measured over its limit, in the current stretch.
    over_since_ms: Mapping[str, int] = field(default_factory=dict)


def heard(state: EdgeState, now_ms: int) -> EdgeState:
    """The mothership (or the broker on its behalf) answered at ``now_ms``."""
    return replace(state, last_heard_ms=max(state.last_heard_ms, now_ms))


def on_own(state: EdgeState, rules: EdgeRules, now_ms: int) -> bool:
    return now_ms - state.last_heard_ms >= rules.silent_after_ms


def refuse_on(state: EdgeState, rules: EdgeRules, now_ms: int) -> str | None:
    """Why a socket may not be switched on now, or ``None`` when it may."""
    if not on_own(state, rules, now_ms):
        return None
    silent_s = (now_ms - state.last_heard_ms) / 1000
    return (
        f"refused: the mothership has not been heard from for {silent_s:.0f} s, so no session"
        " starts until it is back (check the site's uplink and the broker)"
    )


def switched_on(state: EdgeState, plug_id: str, now_ms: int) -> EdgeState:
    """A socket this relay manager just switched on started now, whatever it read before."""
    return replace(state, on_since_ms={**state.on_since_ms, plug_id: now_ms})


def chain(tree: CircuitTree, circuit: str) -> tuple[str, ...]:
    """The circuits a plug's current counts against; one without a limit counts nowhere."""
    return tree.chain(circuit) if circuit in tree.circuits else ()


def step(
    state: EdgeState,
    plugs: Sequence[Observed],
    tree: CircuitTree,
    rules: EdgeRules,
    now_ms: int,
) -> tuple[EdgeState, list[Stop]]:
    """The sockets to switch off now, and the state to carry to the next step.

    A plug that did not answer (MIA), or is not in ``plugs`` this time, keeps its start time:
    it may be on still.
    """
    seen = {p.plug_id for p in plugs}
    on_since = {plug: ms for plug, ms in state.on_since_ms.items() if plug not in seen}
    on_since |= {
        p.plug_id: state.on_since_ms.get(p.plug_id, now_ms)
        for p in plugs
        if p.actual == ActualState.ON
        or (p.actual == ActualState.MIA and p.plug_id in state.on_since_ms)
    }
    on = [p for p in plugs if p.actual == ActualState.ON]
    stops: list[Stop] = []
    if now_ms - state.last_heard_ms >= rules.unsupervised_max_ms:
        silent_s = (now_ms - state.last_heard_ms) // 1000
        detail = (
            f"switched off by the relay manager: the mothership was silent for {silent_s} s,"
            f" past the {rules.unsupervised_max_ms // 1000} s a session may run unsupervised"
        )
        stops = [Stop(p.plug_id, StopReason.UNSUPERVISED_TOO_LONG, detail) for p in on]
    over_since: dict[str, int] = {}
    for circuit in sorted({c for p in on for c in chain(tree, p.circuit)}):
        stopping = {s.plug_id for s in stops}
        under = [p for p in on if circuit in chain(tree, p.circuit) and p.plug_id not in stopping]
        load_a = sum(p.current_a for p in under)
        limit_a = tree.limit(circuit)
        if load_a <= limit_a + _SLACK_A:
            continue
        since = state.over_since_ms.get(circuit, now_ms)
        if now_ms - since < rules.over_limit_ms:
            over_since[circuit] = since
            continue
        # Over for long enough: the latest to start goes; counting starts again after it.
        latest = max(under, key=lambda p: (on_since[p.plug_id], p.plug_id))
        detail = (
            f"switched off by the relay manager: circuit {circuit} drew {load_a:.1f} A, over its"
            f" {limit_a:g} A limit for {(now_ms - since) / 1000:.0f} s; this socket started last"
        )
        stops.append(Stop(latest.plug_id, StopReason.CIRCUIT_OVER_LIMIT, detail))
    for s in stops:
        on_since.pop(s.plug_id, None)
    return EdgeState(state.last_heard_ms, on_since, over_since), stops


def renewal_due(renewed_ms: int | None, timer_ms: int, now_ms: int) -> bool:
    """A relay's auto-off timer is renewed once a third of it has run: two renewals in a row
    may fail before the relay turns itself off."""
    return renewed_ms is None or now_ms - renewed_ms >= timer_ms // 3
