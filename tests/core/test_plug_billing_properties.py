"""Billing against the truth: a simulated relay and car behind a plug, under random faults.

The relay carries out the plug's commands (in order, when the sequence says so, answering or
not), trips, reboots (its counter restarts), and its readings come with glitches: counters
stepping back or missing, NaN, an out-of-order or redelivered reading, a backlog the bus
delivers again (repeats that change nothing), a clock that steps back.
Whatever happens, each session is billed exactly once, never negatively or NaN, and never more
than the relay delivered while it was the session's, except for intervals the counter could not
vouch for, each bounded by what the socket's rated power could deliver in it.

Redelivered readings come from the relay's current clock: one stamped before the clock stepped
back, redelivered after the plug re-baselined, would look like a jump forward in time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import example, given, settings
from hypothesis import strategies as st

from evplug.core.actual import ActualState
from evplug.core.plug import (
    TRANSITIONS,
    Effect,
    EndReason,
    InvalidTransition,
    Plug,
    SessionClosed,
    SessionOpened,
    State,
    SwitchRelay,
    Transitioned,
    Trigger,
)
from evplug.core.readings import InvalidReading
from tests.core.relay_sim import rated_wh

START_MS = 1_700_000_000_000
LIFETIME_WH = 1_000_000.0  # what the relay counted before: billing it whole is the old bug
GLITCHES = ["none", "none", "none", "missing", "zero", "back", "nan", "mia"]

faults = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.integers(500, 70_000), st.sampled_from(GLITCHES)),
        st.tuples(st.just("redeliver"), st.integers(1, 40)),
        st.tuples(st.just("backlog"), st.integers(2, 40)),
        st.tuples(st.just("clock_back"), st.integers(11_000, 2 * 3_600_000)),
        st.tuples(st.just("car"), st.floats(0, 4000)),
        st.tuples(st.sampled_from(["trip", "reboot", "disable", "again", "admit"])),
        st.tuples(st.just("carry_out"), st.booleans(), st.booleans()),  # ok, answered
        st.tuples(st.just("enable"), st.integers(0, 3000)),
        st.tuples(st.just("credit"), st.integers(0, 3000)),
        st.tuples(st.just("tick"), st.integers(0, 400_000)),
    ),
    max_size=150,
)


@dataclass
class Session:
    delivered_at_start_wh: float
    slack_wh: float = 0.0  # intervals the counter did not vouch for, at the rated power
    tail_wh: float = 0.0  # estimated intervals not yet replaced by a counter reading
    closed: list[SessionClosed] = field(default_factory=list)


@dataclass
class World:
    plug: Plug = field(default_factory=lambda: Plug("p", "f"))
    now_ms: int = START_MS  # the true time, and the mothership's clock
    offset_ms: int = 0  # how far the relay's clock is behind
    relay_on: bool = False
    tripped: bool = False
    draw_w: float = 0.0
    delivered_wh: float = 0.0
    counter_wh: float = LIFETIME_WH
    pending: list[SwitchRelay] = field(default_factory=list)
    fed: list[tuple[int, ActualState, float, float | None]] = field(default_factory=list)
    epoch: int = 0  # readings fed since the relay's clock last stepped back
    sessions: dict[str, Session] = field(default_factory=dict)
    log: list[tuple[Effect, str]] = field(default_factory=list)
    glitch_before: bool = False  # the last counter the plug took in was a glitch
    taken_ms: int = START_MS  # when the plug last took a reading in (not dropped as late)

    # -- the world -----------------------------------------------------------------------------

    def wait(self, dt_ms: int) -> None:
        wh = (self.draw_w if self.relay_on else 0.0) * dt_ms / 3_600_000
        self.delivered_wh += wh
        self.counter_wh += wh
        self.now_ms += dt_ms

    def actual(self) -> ActualState:
        if self.tripped:
            return ActualState.OVERCURRENT
        return ActualState.ON if self.relay_on else ActualState.OFF

    def read(self, dt_ms: int, glitch: str) -> None:
        self.wait(dt_ms)
        power = self.draw_w if self.relay_on else 0.0
        shown: float | None = {
            "missing": None,
            "zero": 0.0,
            "back": self.counter_wh / 2,
            "nan": math.nan,
        }.get(glitch, self.counter_wh)
        actual = ActualState.MIA if glitch == "mia" else self.actual()
        reading = (self.now_ms - self.offset_ms, actual, power, shown)
        try:
            self.feed(reading)
        except InvalidReading:
            return
        self.fed.append(reading)
        self.epoch += 1
        if self.plug.last_reading_ms == reading[0]:  # taken in, not dropped as late
            self.account(glitch)

    def account(self, glitch: str) -> None:
        """What the counter cannot vouch for in the open session, at the rated power.

        A reading glitched to near zero is a reset to the plug, so the next one may bill up to
        what the socket could deliver since; an estimate without a counter is bounded likewise
        until a counter reading replaces it.
        """
        s = self.plug.settings
        interval_wh = rated_wh(s.max_power_w, self.now_ms - self.taken_ms + s.reading_jitter_ms)
        self.taken_ms = self.now_ms
        session = self.sessions.get(self.plug.session_id)
        if session is not None:
            if self.glitch_before:
                session.slack_wh += interval_wh
            if glitch == "missing":
                session.tail_wh += interval_wh
            elif glitch != "mia":
                session.tail_wh = 0.0
        # Without a counter (missing, mia) the next counter reading is still measured from the
        # last one the plug had, glitched or not.
        if glitch not in ("mia", "missing"):
            self.glitch_before = glitch in ("zero", "back")

    def carry_out(self, ok: bool, answered: bool) -> None:
        if not self.pending:
            return
        command = self.pending.pop(0)
        if ok:
            self.relay_on = command.on
            if command.on:
                self.tripped = False  # switching on clears the trip
        if answered:
            self.apply(self.plug.relay_response(command.request_id, self.actual(), ok, self.now_ms))

    def backlog(self, n: int) -> None:
        """The bus delivers the last ``n`` readings again, in order (their acks came too late):
        repeats, which change nothing, however far behind they are."""
        held = [getattr(self.plug, f) for f in Plug.SNAPSHOT_FIELDS]
        for reading in self.fed[-min(n, self.epoch) :] if self.epoch else []:
            assert self.plug.reading(*reading, redelivered=True) == ()
        assert [getattr(self.plug, f) for f in Plug.SNAPSHOT_FIELDS] == held

    # -- the plug ------------------------------------------------------------------------------

    def feed(self, reading: tuple[int, ActualState, float, float | None]) -> None:
        self.apply(self.plug.reading(*reading))

    def apply(self, effects: tuple[Effect, ...] | list[Effect]) -> None:
        for effect in effects:
            self.log.append((effect, self.plug.session_id))
            if isinstance(effect, SwitchRelay):
                self.pending.append(effect)
            elif isinstance(effect, SessionOpened):
                self.sessions[effect.session_id] = Session(self.delivered_wh)
            elif isinstance(effect, SessionClosed):
                session = self.sessions[effect.session_id]
                session.closed.append(effect)
                session.slack_wh += session.tail_wh
                delivered = self.delivered_wh - session.delivered_at_start_wh
                assert effect.energy_wh <= delivered + session.slack_wh + 1e-6, (
                    effect,
                    delivered,
                    session.slack_wh,
                )
        assert math.isfinite(self.plug.energy_wh) and self.plug.energy_wh >= 0

    def event(self, event: tuple) -> None:
        kind, *args = event
        now = self.now_ms
        if kind == "read":
            self.read(*args)
        elif kind == "redeliver":
            if self.epoch:
                self.feed(self.fed[-min(args[0], self.epoch)])
            self.read(2000, "none")  # a straggler among current readings
        elif kind == "backlog":
            self.backlog(args[0])
        elif kind == "clock_back":
            self.offset_ms += args[0]
            self.epoch = 0
        elif kind == "car":
            self.draw_w = args[0]
        elif kind == "trip":
            if self.relay_on:
                self.relay_on, self.tripped = False, True
        elif kind == "reboot":
            self.relay_on = self.tripped = False
            self.counter_wh = 0.0
        elif kind == "carry_out":
            self.carry_out(*args)
        elif kind == "enable":
            # The last session's OFF has been carried out: the relay is off and the meter idle.
            if not self.pending and not self.relay_on:
                sid = f"s{len(self.sessions) + 1}"
                self.apply(self.plug.enable(sid, "driver", args[0], 30, now))
        elif kind == "credit":
            self.apply(self.plug.credit_changed(args[0], now))
        elif kind == "disable":
            self.apply(self.plug.disable(now))
        elif kind == "again":
            self.apply(self.plug.request_again(now))
        elif kind == "admit":
            self.apply(self.plug.admit(now))
        elif kind == "tick":
            self.wait(args[0])
            self.apply(self.plug.tick(self.now_ms))

    def finish(self) -> None:
        """The driver gives up, the relay answers everything, time passes."""
        if Trigger.DISABLE in TRANSITIONS[self.plug.state]:
            self.apply(self.plug.disable(self.now_ms))
        for _ in range(10):
            while self.pending:
                self.carry_out(ok=True, answered=True)
            self.read(2000, "none")
            self.read(2000, "none")
            self.wait(self.plug.settings.give_up_ms)
            self.apply(self.plug.tick(self.now_ms))


def play(sequence: list[tuple]) -> World:
    world = World()
    world.read(2000, "none")
    for event in sequence:
        try:
            world.event(event)
        except InvalidTransition:
            continue
    world.finish()
    return world


@settings(max_examples=500, deadline=None)
@given(faults)
# A counter reset, then a reading without a counter: the next counter is bounded from the reset.
@example(
    [
        ("enable", 1),
        ("admit",),
        ("read", 500, "zero"),
        ("read", 500, "missing"),
        ("read", 500, "none"),
    ]
)
def test_every_session_ends_billed_once_and_never_beyond_what_was_delivered(
    sequence: list[tuple],
) -> None:
    world = play(sequence)
    assert world.plug.state is State.ACCOUNT_NULL and not world.plug.session_id
    for session in world.sessions.values():
        [closed] = session.closed  # every session closed, exactly once
        assert closed.reason in set(EndReason)
        assert math.isfinite(closed.energy_wh) and closed.energy_wh >= 0
        assert closed.cost_cents >= 0


@settings(max_examples=300, deadline=None)
@given(faults)
def test_a_session_whose_relay_tripped_never_switches_it_on_again(sequence: list[tuple]) -> None:
    tripped: set[str] = set()
    for effect, session_id in play(sequence).log:
        if isinstance(effect, Transitioned) and effect.trigger is Trigger.TRIPPED:
            tripped.add(effect.session_id)
        elif isinstance(effect, SwitchRelay) and effect.on:
            assert session_id not in tripped
