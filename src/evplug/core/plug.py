"""The plug state machine: everything that decides a socket's state lives in this file.

As in h11, as much as possible is in tables: ``TRANSITIONS`` ({state: {trigger: next state}}),
``AUTOMATIC`` (states left as soon as they are entered, and the guard that picks the trigger),
``ON_ENTER`` (the effect of entering a state) and ``PROMPTS`` (what a driver may choose).
The code below turns raw events (a reading, a driver's choice, a relay's answer, the passing of
time) into triggers through small named guards, and the table does the rest.
``docs/state-machine.md`` is generated from these tables (``tools/gen_state_diagram.py``).
``END_REASONS`` names, by trigger, why a session ended.

A ``Plug`` is a sans-IO object, like h11's connection state: it never reads a clock, touches the
network or a database; time comes in as ``now_ms`` and what must happen in the world comes back
as effects. It mutates itself rather than returning a new state because a site sends a reading
per plug every two seconds and a fresh object per reading would be most of the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from evplug.core.actual import ActualState
from evplug.core.edge_safety import StopReason
from evplug.core.metering import Anomaly, counter_step, integrated_wh
from evplug.core.pricing import affordable_wh, cost_cents
from evplug.core.readings import (
    IMPLAUSIBLE_POWER_FACTOR,
    LOWEST_POWER_W,
    InvalidReading,
    reading_problem,
)


class State(StrEnum):
    INITIALISING = "INITIALISING"
    ACCOUNT_NULL = "ACCOUNT_NULL"
    ACCOUNT_ADDED = "ACCOUNT_ADDED"
    ENTERING_QUEUE = "ENTERING_QUEUE"
    IN_QUEUE = "IN_QUEUE"
    SENSING_START_REQUESTED = "SENSING_START_REQUESTED"
    SENSING_START_ISSUED_LOCALLY = "SENSING_START_ISSUED_LOCALLY"
    SENSING_START_NOT_RESPONDING = "SENSING_START_NOT_RESPONDING"
    SENSING_CHARGE = "SENSING_CHARGE"
    WAITING_FOR_PLUG_IN = "WAITING_FOR_PLUG_IN"
    CHARGING = "CHARGING"
    INSUFFICIENT_CREDIT = "INSUFFICIENT_CREDIT"
    CHARGE_COMPLETE = "CHARGE_COMPLETE"
    # Relay OFF for another car's turn or an overloaded circuit; back to the queue once off.
    LIMITING = "LIMITING"
    ACCOUNT_REMOVAL_REQUESTED = "ACCOUNT_REMOVAL_REQUESTED"
    ACCOUNT_REMOVAL_ISSUED_LOCALLY = "ACCOUNT_REMOVAL_ISSUED_LOCALLY"
    ACCOUNT_REMOVAL_NOT_RESPONDING = "ACCOUNT_REMOVAL_NOT_RESPONDING"
    COMMISSIONING = "COMMISSIONING"


class Trigger(StrEnum):
    FIRST_READING = "first reading"
    ENABLE = "driver: enable"
    DISABLE = "driver: disable"
    REQUEST_AGAIN = "driver: request again"
    SESSION_OPENED = "session opened"
    CREDIT_OK = "credit ok"
    CREDIT_LOW = "credit low"
    ADMITTED = "circuit capacity"
    # Its slot is over and a queued car needs the place: it goes to the back of the queue.
    TURN_OVER = "turn over"
    # Its circuit drew more than its limit: it goes back to the front of the queue.
    SHED = "circuit overloaded"
    COMMAND_SENT = "command sent"
    RELAY_ON = "relay on"
    RELAY_OFF = "relay off"
    # A trip switched the output off: it ends a session and confirms an OFF.
    TRIPPED = "relay tripped"
    # Off while the session wants it on (a reboot, the button): switched on again a few times.
    RELAY_FOUND_OFF = "relay found off"
    RELAY_KEPT_OFF = "relay found off too often"
    # The relay manager switched it off: the mothership had been silent too long.
    UNSUPERVISED_OFF = "relay manager: unsupervised too long"
    NO_RESPONSE = "no response"
    GIVE_UP = "no answer for too long"
    CAR_DRAWING = "power above start"
    NO_DRAW = "no draw"
    NO_CAR = "no car came"
    LOW_POWER_SUSTAINED = "low power sustained"
    CREDIT_EXHAUSTED = "credit exhausted"
    RELEASE = "release"
    COMMISSION_START = "technician: commission"
    COMMISSION_END = "technician: done"


class Prompt(StrEnum):
    ENABLE_SOCKET = "Enable Socket"
    DISABLE_SOCKET = "Disable Socket"
    REQUEST_ENABLE_AGAIN = "Request Enable Again"
    REQUEST_DISABLE_AGAIN = "Request Disable Again"


class EndReason(StrEnum):
    """Why a session ended, as its driver is told (the web turns each into a sentence)."""

    DRIVER = "driver"
    COMPLETE = "complete"
    INSUFFICIENT_CREDIT = "insufficient_credit"
    NO_CAR = "no_car"
    TRIPPED = "tripped"
    RELAY_NOT_RESPONDING = "relay_not_responding"
    RELAY_SWITCHED_OFF = "relay_switched_off"
    UNSUPERVISED_TOO_LONG = "unsupervised_too_long"


S, T = State, Trigger

# States where the driver may give up: the socket may be on, or is queued to be.
_DISABLE_FROM = (
    S.ACCOUNT_ADDED,
    S.ENTERING_QUEUE,
    S.IN_QUEUE,
    S.SENSING_START_REQUESTED,
    S.SENSING_START_ISSUED_LOCALLY,
    S.SENSING_START_NOT_RESPONDING,
    S.SENSING_CHARGE,
    S.WAITING_FOR_PLUG_IN,
    S.CHARGING,
    S.LIMITING,
)

TRANSITIONS: dict[State, dict[Trigger, State]] = {
    S.INITIALISING: {T.FIRST_READING: S.ACCOUNT_NULL, T.COMMISSION_START: S.COMMISSIONING},
    S.ACCOUNT_NULL: {T.ENABLE: S.ACCOUNT_ADDED, T.COMMISSION_START: S.COMMISSIONING},
    S.ACCOUNT_ADDED: {T.SESSION_OPENED: S.ENTERING_QUEUE},
    S.ENTERING_QUEUE: {T.CREDIT_OK: S.IN_QUEUE, T.CREDIT_LOW: S.INSUFFICIENT_CREDIT},
    S.IN_QUEUE: {T.ADMITTED: S.SENSING_START_REQUESTED},
    S.SENSING_START_REQUESTED: {T.COMMAND_SENT: S.SENSING_START_ISSUED_LOCALLY},
    S.SENSING_START_ISSUED_LOCALLY: {
        T.RELAY_ON: S.SENSING_CHARGE,
        T.NO_RESPONSE: S.SENSING_START_NOT_RESPONDING,
    },
    S.SENSING_START_NOT_RESPONDING: {
        T.REQUEST_AGAIN: S.SENSING_START_REQUESTED,
        T.RELAY_ON: S.SENSING_CHARGE,
        # Not left open forever: switched off to be safe and billed for what was metered.
        T.GIVE_UP: S.ACCOUNT_REMOVAL_REQUESTED,
    },
    S.SENSING_CHARGE: {T.CAR_DRAWING: S.CHARGING, T.NO_DRAW: S.WAITING_FOR_PLUG_IN},
    S.WAITING_FOR_PLUG_IN: {T.CAR_DRAWING: S.CHARGING, T.NO_CAR: S.ACCOUNT_REMOVAL_REQUESTED},
    S.CHARGING: {
        T.LOW_POWER_SUSTAINED: S.CHARGE_COMPLETE,
        T.CREDIT_EXHAUSTED: S.INSUFFICIENT_CREDIT,
        T.TURN_OVER: S.LIMITING,
    },
    S.LIMITING: {
        T.RELAY_OFF: S.IN_QUEUE,
        # An OFF unanswered for this long: the session ends, its relay switched off to be safe.
        T.GIVE_UP: S.ACCOUNT_REMOVAL_REQUESTED,
    },
    S.INSUFFICIENT_CREDIT: {T.RELEASE: S.ACCOUNT_REMOVAL_REQUESTED},
    S.CHARGE_COMPLETE: {T.RELEASE: S.ACCOUNT_REMOVAL_REQUESTED},
    S.ACCOUNT_REMOVAL_REQUESTED: {T.COMMAND_SENT: S.ACCOUNT_REMOVAL_ISSUED_LOCALLY},
    S.ACCOUNT_REMOVAL_ISSUED_LOCALLY: {
        T.RELAY_OFF: S.ACCOUNT_NULL,
        T.NO_RESPONSE: S.ACCOUNT_REMOVAL_NOT_RESPONDING,
    },
    S.ACCOUNT_REMOVAL_NOT_RESPONDING: {
        T.REQUEST_AGAIN: S.ACCOUNT_REMOVAL_REQUESTED,
        T.RELAY_OFF: S.ACCOUNT_NULL,
        # The session is closed; a socket found on without an owner is switched off then.
        T.GIVE_UP: S.ACCOUNT_NULL,
    },
    S.COMMISSIONING: {T.COMMISSION_END: S.ACCOUNT_NULL},
}
for _state in _DISABLE_FROM:
    TRANSITIONS[_state][T.DISABLE] = S.ACCOUNT_REMOVAL_REQUESTED
# States whose relay may be on for the session: its meter runs, its credit is checked, and a
# trip ends it (no OFF loop and no switching on again: only a new Enable switches it on).
METERED_STATES = (
    S.SENSING_START_ISSUED_LOCALLY,
    S.SENSING_START_NOT_RESPONDING,
    S.SENSING_CHARGE,
    S.WAITING_FOR_PLUG_IN,
    S.CHARGING,
    S.LIMITING,
)
for _state in METERED_STATES:
    TRANSITIONS[_state][T.CREDIT_EXHAUSTED] = S.INSUFFICIENT_CREDIT
    TRANSITIONS[_state][T.TRIPPED] = S.ACCOUNT_REMOVAL_REQUESTED
    TRANSITIONS[_state][T.UNSUPERVISED_OFF] = S.ACCOUNT_REMOVAL_REQUESTED
# A refund may empty the balance while the socket still waits for its circuit.
TRANSITIONS[S.IN_QUEUE][T.CREDIT_EXHAUSTED] = S.INSUFFICIENT_CREDIT
# An overloaded circuit sheds any plug it may have switched on.
for _state in METERED_STATES:
    if _state is not S.LIMITING:
        TRANSITIONS[_state][T.SHED] = S.LIMITING
# States whose relay the session wants on, its ON confirmed.
WANTS_ON_STATES = (S.SENSING_CHARGE, S.WAITING_FOR_PLUG_IN, S.CHARGING)
for _state in WANTS_ON_STATES:
    TRANSITIONS[_state][T.RELAY_FOUND_OFF] = S.SENSING_START_REQUESTED
    TRANSITIONS[_state][T.RELAY_KEPT_OFF] = S.ACCOUNT_REMOVAL_REQUESTED
# A tripped relay's output is off: that is the OFF the removal waits for.
for _state in (S.ACCOUNT_REMOVAL_ISSUED_LOCALLY, S.ACCOUNT_REMOVAL_NOT_RESPONDING):
    TRANSITIONS[_state][T.TRIPPED] = S.ACCOUNT_NULL

PROMPTS: dict[State, tuple[Prompt, ...]] = {
    S.ACCOUNT_NULL: (Prompt.ENABLE_SOCKET,),
    **{s: (Prompt.DISABLE_SOCKET,) for s in _DISABLE_FROM},
    S.SENSING_START_NOT_RESPONDING: (Prompt.REQUEST_ENABLE_AGAIN, Prompt.DISABLE_SOCKET),
    S.ACCOUNT_REMOVAL_NOT_RESPONDING: (Prompt.REQUEST_DISABLE_AGAIN,),
}

PROMPT_TRIGGERS: dict[Prompt, Trigger] = {
    Prompt.ENABLE_SOCKET: T.ENABLE,
    Prompt.DISABLE_SOCKET: T.DISABLE,
    Prompt.REQUEST_ENABLE_AGAIN: T.REQUEST_AGAIN,
    Prompt.REQUEST_DISABLE_AGAIN: T.REQUEST_AGAIN,
}

# The effect of entering a state, named for the diagram.
ON_ENTER: dict[State, str] = {
    S.ACCOUNT_ADDED: "open session",
    S.SENSING_START_REQUESTED: "relay ON",
    S.LIMITING: "relay OFF",
    S.ACCOUNT_REMOVAL_REQUESTED: "relay OFF",
    S.ACCOUNT_NULL: "close and bill session",
}

# States whose relay is on or being switched on: they hold circuit capacity.
DRAWING_STATES = frozenset(
    {
        S.SENSING_START_REQUESTED,
        S.SENSING_START_ISSUED_LOCALLY,
        S.SENSING_START_NOT_RESPONDING,
        S.SENSING_CHARGE,
        S.WAITING_FOR_PLUG_IN,
        S.CHARGING,
        S.INSUFFICIENT_CREDIT,
        S.CHARGE_COMPLETE,
        S.LIMITING,
        S.ACCOUNT_REMOVAL_REQUESTED,
        S.ACCOUNT_REMOVAL_ISSUED_LOCALLY,
        S.ACCOUNT_REMOVAL_NOT_RESPONDING,
    }
)
# States that need the passing of time (``Plug.tick``) to move on.
TIMED_STATES = frozenset(
    {
        S.SENSING_START_ISSUED_LOCALLY,
        S.ACCOUNT_REMOVAL_ISSUED_LOCALLY,
        # An OFF that went unanswered is sent again until the relay confirms it.
        S.ACCOUNT_REMOVAL_NOT_RESPONDING,
        # A relay silent for too long is given up on.
        S.SENSING_START_NOT_RESPONDING,
        S.SENSING_CHARGE,
        # An OFF for another's turn is sent again until the relay confirms it.
        S.LIMITING,
    }
)

# Why a session ended, by the trigger that began its end; the first one a session meets wins.
END_REASONS: dict[Trigger, EndReason] = {
    T.DISABLE: EndReason.DRIVER,
    T.CREDIT_LOW: EndReason.INSUFFICIENT_CREDIT,
    T.CREDIT_EXHAUSTED: EndReason.INSUFFICIENT_CREDIT,
    T.LOW_POWER_SUSTAINED: EndReason.COMPLETE,
    T.NO_CAR: EndReason.NO_CAR,
    T.TRIPPED: EndReason.TRIPPED,
    T.GIVE_UP: EndReason.RELAY_NOT_RESPONDING,
    T.RELAY_KEPT_OFF: EndReason.RELAY_SWITCHED_OFF,
    T.UNSUPERVISED_OFF: EndReason.UNSUPERVISED_TOO_LONG,
}


class InvalidTransition(ValueError):
    """An event the plug's current state does not accept (e.g. Enable on a busy socket)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Thresholds and timeouts; the defaults are the original system's numbers."""

    charge_start_w: float = 1150.0  # 5 A at 230 V
    complete_below_w: float = 10.0
    complete_window_ms: int = 120_000  # 60 readings, 2 s apart
    complete_min_readings: int = 20
    command_timeout_ms: int = 60_000
    no_draw_timeout_ms: int = 120_000
    # A socket drawing nothing this long in WAITING_FOR_PLUG_IN is released, so it is not left
    # live on the account of a driver who walked away (for the next car to use).
    no_car_timeout_ms: int = 30 * 60_000
    min_start_credit_cents: int = 1
    # A 16 A socket at up to 250 V: no interval bills more than this could have delivered.
    max_power_w: float = 4000.0
    # Readings are stamped when a poll ends, not when the device measured: slack per interval.
    reading_jitter_ms: int = 1000
    # A relay clock further behind than this has stepped back (a restart, NTP): re-baselined.
    clock_step_ms: int = 10_000
    # An unanswered OFF is sent again this often: a socket left on is a driver's money.
    off_retry_ms: int = 10_000
    # A relay silent this long after NOT_RESPONDING: the session ends without its answer.
    give_up_ms: int = 5 * 60_000
    # A relay reading OFF this long after a command is off, not yet to be switched on.
    relay_settle_ms: int = 10_000
    # Times a session's relay found off is switched on again before the session ends.
    max_relay_restarts: int = 3


@dataclass(frozen=True, slots=True)
class SwitchRelay:
    plug_id: str
    request_id: str
    on: bool
    issued_ms: int


@dataclass(frozen=True, slots=True)
class SessionOpened:
    session_id: str
    plug_id: str
    user_id: str
    started_ms: int
    price_cents_per_kwh: int


@dataclass(frozen=True, slots=True)
class SessionClosed:
    session_id: str
    plug_id: str
    user_id: str
    started_ms: int
    ended_ms: int
    energy_wh: float
    cost_cents: int
    price_cents_per_kwh: int
    reason: str


@dataclass(frozen=True, slots=True)
class MeterAnomaly:
    """The meter distrusted a reading; ``discarded_wh`` is energy it showed but was not billed."""

    plug_id: str
    kind: str
    discarded_wh: float
    at_ms: int


@dataclass(frozen=True, slots=True)
class Transitioned:
    plug_id: str
    from_state: State
    to_state: State
    trigger: Trigger
    at_ms: int
    session_id: str


Effect = SwitchRelay | SessionOpened | SessionClosed | Transitioned | MeterAnomaly
NO_EFFECTS: tuple[Effect, ...] = ()
_INFINITY = math.inf

ON, OFF, MIA, OVERCURRENT = (
    ActualState.ON,
    ActualState.OFF,
    ActualState.MIA,
    ActualState.OVERCURRENT,
)


class Plug:
    """One socket: its state, its open session and the meter running for it."""

    __slots__ = (
        "plug_id",
        "fuze_id",
        "state",
        "settings",
        "last_reading_ms",
        "stale_ms",
        "actual",
        "power_w",
        "last_counter_wh",
        "billed_to_wh",
        "counter_ms",
        "commands_sent",
        "pending_request_id",
        "command_issued_ms",
        "state_since_ms",
        "queued_at_ms",
        "admitted_ms",
        "session_id",
        "user_id",
        "session_started_ms",
        "price_cents_per_kwh",
        "credit_cents",
        "credit_wh",
        "energy_wh",
        "provisional_wh",
        "low_since_ms",
        "low_count",
        "relay_restarts",
        "turns",
        "end_reason",
    )

    # What the store keeps; settings come from configuration and credit_wh is derived.
    SNAPSHOT_FIELDS: ClassVar[tuple[str, ...]] = tuple(
        f for f in __slots__ if f not in ("settings", "credit_wh")
    )
    # What a plug changes without an effect: its meter and relay as readings come, and its
    # credit. Every other change comes with effects, whose batch saves the whole snapshot, so
    # between batches a checkpoint saves only these (``meter``).
    METER_FIELDS: ClassVar[tuple[str, ...]] = (
        "last_reading_ms",
        "stale_ms",
        "actual",
        "power_w",
        "last_counter_wh",
        "billed_to_wh",
        "counter_ms",
        "energy_wh",
        "provisional_wh",
        "low_since_ms",
        "low_count",
        "credit_cents",
    )

    def __init__(self, plug_id: str, fuze_id: str = "", settings: Settings | None = None) -> None:
        self.plug_id = plug_id
        self.fuze_id = fuze_id
        self.state = S.INITIALISING
        self.settings = settings or DEFAULT_SETTINGS
        self.last_reading_ms = -1
        self.stale_ms = -1  # a reading far behind the newest, waiting for a second to confirm
        self.actual = ActualState.UNKNOWN
        self.power_w = 0.0
        # The relay's counter: its last value, the highest billed, and when it was read.
        self.last_counter_wh: float | None = None
        self.billed_to_wh: float | None = None
        self.counter_ms = 0
        self.commands_sent = 0
        self.pending_request_id = ""
        self.command_issued_ms = 0
        self.state_since_ms = 0
        self.queued_at_ms = 0
        self.admitted_ms = 0  # when the circuit last let it on: its turn runs from then
        self._clear_session()

    def _clear_session(self) -> None:
        self.session_id = ""
        self.user_id = ""
        self.session_started_ms = 0
        self.price_cents_per_kwh = 0
        self.credit_cents = 0
        self.credit_wh = 0.0
        self.energy_wh = 0.0
        self.provisional_wh = 0.0  # integrated since the last counter reading, which replaces it
        self.low_since_ms = -1
        self.low_count = 0
        self.relay_restarts = 0
        self.turns = 0  # turns this session's car has had and handed over
        self.end_reason = ""

    # -- queries -------------------------------------------------------------------------------

    @property
    def prompts(self) -> tuple[Prompt, ...]:
        return PROMPTS.get(self.state, ())

    @property
    def has_session(self) -> bool:
        return bool(self.session_id)

    @property
    def session_cost_cents(self) -> int:
        return cost_cents(self.energy_wh, self.price_cents_per_kwh)

    # -- events --------------------------------------------------------------------------------

    def reading(
        self,
        timestamp_ms: int,
        actual: ActualState,
        power_w: float,
        energy_wh: float | None,
        edge_stop: StopReason | None = None,
        redelivered: bool = False,
    ) -> tuple[Effect, ...] | list[Effect]:
        """A reading from the relay, stamped by the relay's clock; ``edge_stop`` when the relay
        manager switched the socket off by itself just before taking it; ``redelivered`` when
        the bus delivers it again (its first delivery was not acked in time).

        A reading that cannot be physical raises ``InvalidReading`` and changes nothing. One
        stamped at or before the newest seen is a duplicate, a late delivery or a clock that
        stepped back (``_behind``).
        """
        # The physical case tested here, in one expression: a call per reading costs more.
        # reading_problem says what is wrong with the rest.
        if not (
            timestamp_ms > 0
            and LOWEST_POWER_W <= power_w <= IMPLAUSIBLE_POWER_FACTOR * self.settings.max_power_w
            and (energy_wh is None or 0.0 <= energy_wh < _INFINITY)
        ):
            problem = reading_problem(timestamp_ms, power_w, energy_wh, self.settings.max_power_w)
            raise InvalidReading(f"{self.plug_id}: {problem}")
        stepped = None
        if timestamp_ms <= self.last_reading_ms:
            stepped = self._behind(timestamp_ms, redelivered)
            if stepped is None:
                return NO_EFFECTS
        elif self.stale_ms >= 0:
            self.stale_ms = -1
        previous_ms = self.last_reading_ms
        previous_w = self.power_w
        self.last_reading_ms = timestamp_ms
        self.actual = actual
        if actual == MIA:
            # No news is not low power: a silent device must not end a session.
            return NO_EFFECTS if stepped is None else [stepped]
        self.power_w = power_w
        state = self.state
        metered = None
        if state in _METERED:
            if energy_wh is not None:
                metered = self._count(timestamp_ms, energy_wh)
            elif previous_ms >= 0:
                metered = self._integrate(timestamp_ms, previous_ms, previous_w, power_w)
        elif energy_wh is not None:
            self._follow_counter(timestamp_ms, energy_wh)
        effects = self._decide(state, timestamp_ms, actual, power_w, edge_stop)
        if stepped is None and metered is None:
            return effects
        return [e for e in (stepped, metered) if e is not None] + list(effects)

    def _decide(
        self,
        state: State,
        now_ms: int,
        actual: ActualState,
        power_w: float,
        edge_stop: StopReason | None = None,
    ) -> tuple[Effect, ...] | list[Effect]:
        if edge_stop is not None and (stopped := self._stopped_at_edge(edge_stop, now_ms)):
            return stopped
        if actual == OVERCURRENT:
            if now_ms >= self.command_issued_ms and state in _TRIPPABLE:
                return self._fire(T.TRIPPED, now_ms)
        elif (
            actual == OFF
            and state in _WANTS_ON
            and now_ms >= self.command_issued_ms + self.settings.relay_settle_ms
        ):
            if self.relay_restarts >= self.settings.max_relay_restarts:
                return self._fire(T.RELAY_KEPT_OFF, now_ms)
            self.relay_restarts += 1
            return self._fire(T.RELAY_FOUND_OFF, now_ms)
        if self.session_id and self.energy_wh >= self.credit_wh and state in _CREDIT_CHECKED:
            return self._fire(T.CREDIT_EXHAUSTED, now_ms)
        if state is _CHARGING:
            if power_w < self.settings.complete_below_w:
                if self.low_since_ms < 0:
                    self.low_since_ms = now_ms
                    self.low_count = 1
                else:
                    self.low_count += 1
                if (
                    now_ms - self.low_since_ms >= self.settings.complete_window_ms
                    and self.low_count >= self.settings.complete_min_readings
                ):
                    return self._fire(T.LOW_POWER_SUSTAINED, now_ms)
            else:
                self.low_since_ms = -1
                self.low_count = 0
            return NO_EFFECTS
        if state is _SENSING_CHARGE or state is _WAITING_FOR_PLUG_IN:
            # A car back for another turn may be near full, drawing less than a car starting.
            start_w = self.settings.complete_below_w if self.turns else self.settings.charge_start_w
            if power_w > start_w:
                return self._fire(T.CAR_DRAWING, now_ms)
            if state is _WAITING_FOR_PLUG_IN:
                # A slow car still draws something; only a socket drawing nothing is given up.
                if power_w >= self.settings.complete_below_w:
                    self.low_since_ms = -1
                elif self.low_since_ms < 0:
                    self.low_since_ms = now_ms
                elif now_ms - self.low_since_ms >= self.settings.no_car_timeout_ms:
                    return self._fire(T.NO_CAR, now_ms)
            return NO_EFFECTS
        if state is _ACCOUNT_NULL or state is _INITIALISING:
            return self._idle_reading(now_ms, actual)
        # A reading taken after the last command shows its outcome, even if the answer was lost.
        if now_ms >= self.command_issued_ms:
            if actual == ON and state in _AWAITING_ON:
                return self._fire(T.RELAY_ON, now_ms)
            if actual == OFF and state in _AWAITING_OFF:
                return self._fire(T.RELAY_OFF, now_ms)
        return NO_EFFECTS

    def _idle_reading(self, now_ms: int, actual: ActualState) -> tuple[Effect, ...] | list[Effect]:
        first = self.state is _INITIALISING
        # Nobody owns this socket, so it must not give away power: switch it off (once a
        # timeout, not at every reading while the command is on its way).
        loose = actual == ON and now_ms >= self.command_issued_ms + self.settings.command_timeout_ms
        if not (first or loose):
            return NO_EFFECTS  # the common case: an idle socket, off
        effects = self._fire(T.FIRST_READING, now_ms) if first else []
        if loose:
            effects.append(self._command(on=False, now_ms=now_ms))
        return effects

    def _behind(self, timestamp_ms: int, redelivered: bool) -> MeterAnomaly | None:
        """A reading stamped at or before the newest seen: ``None`` drops it.

        Within ``clock_step_ms`` it is a redelivery, a late chunk or a wobbling clock: dropped,
        and nothing is lost, since the next reading's counter covers its energy. So is a reading
        the bus delivers again, however far behind: it comes back an ack wait or more after it
        was first taken in, so a backlog of them (older counters, OFF from before the relay
        went on) would otherwise look like a relay whose clock stepped back. Further behind,
        twice in a row and in order, the relay's clock has stepped back: every relay time the
        plug holds moves back with it, so state decisions resume at once, and the step counts as
        no time (this reading is taken as simultaneous with the newest). A single straggler
        among current readings never moves the clock.
        """
        if redelivered or self.last_reading_ms - timestamp_ms <= self.settings.clock_step_ms:
            return None
        first_ms = self.stale_ms
        if not 0 <= first_ms < timestamp_ms:
            self.stale_ms = timestamp_ms
            return None
        shift = self.last_reading_ms - timestamp_ms
        self.last_reading_ms = timestamp_ms
        self.stale_ms = -1
        self.counter_ms -= shift
        self.command_issued_ms -= shift
        if self.low_since_ms >= 0:
            self.low_since_ms -= shift
        return MeterAnomaly(self.plug_id, Anomaly.CLOCK_STEP_BACK, 0.0, timestamp_ms)

    def _follow_counter(self, now_ms: int, counter_wh: float) -> None:
        """Outside a session's metering the counter is only followed, resets and all."""
        self.last_counter_wh = self.billed_to_wh = counter_wh
        self.counter_ms = now_ms

    def _count(self, now_ms: int, counter_wh: float) -> MeterAnomaly | None:
        """Bill what the counter shows since its last reading, replacing any integrated estimate."""
        last_wh, billed_to_wh = self.last_counter_wh, self.billed_to_wh
        if last_wh is None or billed_to_wh is None:
            self._follow_counter(now_ms, counter_wh)
            return None
        s = self.settings
        wh, self.billed_to_wh, anomaly, discarded_wh = counter_step(
            last_wh,
            billed_to_wh,
            counter_wh,
            s.max_power_w,
            now_ms - self.counter_ms + s.reading_jitter_ms,
        )
        self.last_counter_wh = counter_wh
        self.counter_ms = now_ms
        if self.provisional_wh:
            energy_wh = self.energy_wh + wh - self.provisional_wh
            self.energy_wh = energy_wh if energy_wh > 0.0 else 0.0
            self.provisional_wh = 0.0
        else:
            self.energy_wh += wh
        if anomaly is None:
            return None
        return MeterAnomaly(self.plug_id, anomaly, discarded_wh, now_ms)

    def _integrate(
        self, now_ms: int, previous_ms: int, previous_w: float, power_w: float
    ) -> MeterAnomaly | None:
        """Estimate an interval without a counter from its power, at most the rated power."""
        max_w = self.settings.max_power_w
        elapsed_ms = now_ms - previous_ms
        wh = integrated_wh(previous_w, power_w, elapsed_ms, max_w)
        self.energy_wh += wh
        self.provisional_wh += wh
        if previous_w <= max_w and power_w <= max_w:
            return None
        discarded_wh = integrated_wh(previous_w, power_w, elapsed_ms, math.inf) - wh
        if discarded_wh <= 0.0:
            return None  # a gap too long to integrate at all
        return MeterAnomaly(self.plug_id, Anomaly.OVER_RATED_POWER, discarded_wh, now_ms)

    def enable(
        self,
        session_id: str,
        user_id: str,
        credit_cents: int,
        price_cents_per_kwh: int,
        now_ms: int,
    ) -> list[Effect]:
        """The driver asks for power. ``credit_cents`` is the balance available to this session."""
        self._require(T.ENABLE)
        self.session_id = session_id
        self.user_id = user_id
        self.session_started_ms = now_ms
        self.price_cents_per_kwh = price_cents_per_kwh
        self.credit_cents = credit_cents
        self.credit_wh = affordable_wh(credit_cents, price_cents_per_kwh)
        self.energy_wh = 0.0
        return self._fire(T.ENABLE, now_ms)

    def credit_changed(self, credit_cents: int, now_ms: int) -> list[Effect]:
        """The driver's balance changed (a top-up, a refund) while this plug holds their session.

        The session's limit follows it: a top-up lets it run on, and a balance the metered
        energy has already used up ends it as a credit running out would.
        """
        if not isinstance(credit_cents, int) or isinstance(credit_cents, bool):
            raise TypeError(f"credit must be a whole number of cents, not {credit_cents!r}")
        if not self.session_id:
            return []
        self.credit_cents = credit_cents
        self.credit_wh = affordable_wh(credit_cents, self.price_cents_per_kwh)
        if self.energy_wh >= self.credit_wh and self.state in _CREDIT_CHECKED:
            return self._fire(T.CREDIT_EXHAUSTED, now_ms)
        return []

    def disable(self, now_ms: int) -> list[Effect]:
        self._require(T.DISABLE)
        return self._fire(T.DISABLE, now_ms)

    def request_again(self, now_ms: int) -> list[Effect]:
        self._require(T.REQUEST_AGAIN)
        return self._fire(T.REQUEST_AGAIN, now_ms)

    def choose(self, prompt: Prompt, now_ms: int, **enable_args: Any) -> list[Effect]:
        """A driver's choice of one of the state's prompts."""
        if prompt not in self.prompts:
            raise InvalidTransition(f"{prompt} is not offered in {self.state}")
        trigger = PROMPT_TRIGGERS[prompt]
        if trigger is T.ENABLE:
            return self.enable(now_ms=now_ms, **enable_args)
        if trigger is T.DISABLE:
            return self.disable(now_ms)
        return self.request_again(now_ms)

    def admit(self, now_ms: int) -> list[Effect]:
        """The circuit has room for this plug."""
        self._require(T.ADMITTED)
        self.admitted_ms = now_ms
        return self._fire(T.ADMITTED, now_ms)

    def turn_over(self, now_ms: int) -> list[Effect]:
        """Its turn is over while others wait: off, and to the back of the queue."""
        self._require(T.TURN_OVER)
        self.queued_at_ms = now_ms
        self.turns += 1
        return self._fire(T.TURN_OVER, now_ms)

    def shed(self, now_ms: int) -> list[Effect]:
        """Its circuit is overloaded: off, and back in the queue where it stood before."""
        self._require(T.SHED)
        self.turns += 1
        return self._fire(T.SHED, now_ms)

    def _stopped_at_edge(self, reason: StopReason, now_ms: int) -> list[Effect]:
        """The relay manager switched this socket off by itself: a session it ran unsupervised
        for too long ends; one on an overloaded circuit is shed, back to the queue, as if the
        mothership had shed it. In any other state it changes nothing."""
        trigger = T.UNSUPERVISED_OFF if reason is StopReason.UNSUPERVISED_TOO_LONG else T.SHED
        if trigger not in TRANSITIONS[self.state]:
            return []
        if trigger is T.SHED:
            return self.shed(now_ms)
        return self._fire(trigger, now_ms)

    def relay_response(
        self, request_id: str, actual: ActualState, ok: bool, now_ms: int
    ) -> list[Effect]:
        """The relay manager's answer to a command; answers to superseded commands are ignored."""
        if request_id != self.pending_request_id:
            return []
        state = self.state
        if not ok:
            # The relay manager could not switch it: no need to wait out the timeout.
            if T.NO_RESPONSE in TRANSITIONS[state]:
                return self._fire(T.NO_RESPONSE, now_ms)
            return []
        if actual == OVERCURRENT and state in _TRIPPABLE:
            return self._fire(T.TRIPPED, now_ms)
        if actual == ON and state in _AWAITING_ON:
            return self._fire(T.RELAY_ON, now_ms)
        if actual == OFF and state in _AWAITING_OFF:
            return self._fire(T.RELAY_OFF, now_ms)
        return []

    def tick(self, now_ms: int) -> list[Effect]:
        """The passing of time: unanswered commands, a car that never starts drawing."""
        state = self.state
        s = self.settings
        waited = now_ms - self.state_since_ms
        if state is S.SENSING_START_ISSUED_LOCALLY:
            if waited >= s.command_timeout_ms:
                return self._fire(T.NO_RESPONSE, now_ms)
        elif state is S.ACCOUNT_REMOVAL_ISSUED_LOCALLY:
            if waited >= s.off_retry_ms:
                return self._fire(T.NO_RESPONSE, now_ms)
        elif state is S.SENSING_CHARGE:
            if waited >= s.no_draw_timeout_ms:
                return self._fire(T.NO_DRAW, now_ms)
        elif state in _GIVEN_UP_ON:
            if waited >= s.give_up_ms:
                return self._fire(T.GIVE_UP, now_ms)
            if state in _AWAITING_OFF and now_ms - self.command_issued_ms >= s.off_retry_ms:
                return [self._command(on=False, now_ms=now_ms)]
        return []

    def commission(self, now_ms: int) -> list[Effect]:
        self._require(T.COMMISSION_START)
        return self._fire(T.COMMISSION_START, now_ms)

    def end_commissioning(self, now_ms: int) -> list[Effect]:
        self._require(T.COMMISSION_END)
        effects = self._fire(T.COMMISSION_END, now_ms)
        effects.append(self._command(on=False, now_ms=now_ms))
        return effects

    def technician_switch(self, on: bool, now_ms: int) -> list[Effect]:
        """A technician testing the socket; only while the site is being commissioned."""
        if self.state is not S.COMMISSIONING:
            raise InvalidTransition(f"switching by hand needs COMMISSIONING, not {self.state}")
        return [self._command(on=on, now_ms=now_ms)]

    # -- the machinery -------------------------------------------------------------------------

    def _require(self, trigger: Trigger) -> None:
        if trigger not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"{self.plug_id}: {trigger!s} is not allowed in {self.state}")

    def _fire(self, trigger: Trigger, now_ms: int) -> list[Effect]:
        effects: list[Effect] = []
        while True:
            source = self.state
            target = TRANSITIONS[source][trigger]
            if self.session_id and not self.end_reason:
                self.end_reason = END_REASONS.get(trigger, "")
            self.state = target
            self.state_since_ms = now_ms
            effects.append(
                Transitioned(self.plug_id, source, target, trigger, now_ms, self.session_id)
            )
            self._enter(target, now_ms, effects)
            guard = AUTOMATIC.get(target)
            if guard is None:
                return effects
            trigger = guard(self)

    def _enter(self, state: State, now_ms: int, effects: list[Effect]) -> None:
        if state is S.ACCOUNT_ADDED:
            effects.append(
                SessionOpened(
                    self.session_id,
                    self.plug_id,
                    self.user_id,
                    self.session_started_ms,
                    self.price_cents_per_kwh,
                )
            )
        elif state is S.ENTERING_QUEUE:
            self.queued_at_ms = now_ms
        elif state is S.WAITING_FOR_PLUG_IN or state is S.CHARGING:
            # Each counts its own stretch of low power from the moment it is entered.
            self.low_since_ms = -1
            self.low_count = 0
        elif state is S.SENSING_START_REQUESTED:
            effects.append(self._command(on=True, now_ms=now_ms))
        elif state is S.ACCOUNT_REMOVAL_REQUESTED or state is S.LIMITING:
            effects.append(self._command(on=False, now_ms=now_ms))
        elif state is S.ACCOUNT_NULL and self.session_id:
            effects.append(
                SessionClosed(
                    self.session_id,
                    self.plug_id,
                    self.user_id,
                    self.session_started_ms,
                    now_ms,
                    self.energy_wh,
                    self.session_cost_cents,
                    self.price_cents_per_kwh,
                    self.end_reason,
                )
            )
            self._clear_session()

    def _command(self, on: bool, now_ms: int) -> SwitchRelay:
        self.commands_sent += 1
        # The time makes ids unique across restarts, where a counter restored from an older
        # snapshot could repeat one that the bus would then drop as a duplicate.
        self.pending_request_id = f"{self.plug_id}#{self.commands_sent}@{now_ms}"
        self.command_issued_ms = now_ms
        return SwitchRelay(self.plug_id, self.pending_request_id, on, now_ms)

    # -- persistence ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return _snapshot_of(self)

    def meter(self) -> dict[str, Any]:
        """The part of the snapshot that changes without an effect (``METER_FIELDS``)."""
        return _meter_of(self)

    @classmethod
    def restore(cls, snapshot: dict[str, Any], settings: Settings | None = None) -> Plug:
        """The plug a snapshot was taken of; a field an older snapshot lacks is a new plug's."""
        plug = cls.__new__(cls)  # every field is set here: no __init__ to overwrite
        try:
            _set_fields(plug, snapshot)
        except KeyError:  # an older snapshot, from before some fields were added
            if "plug_id" not in snapshot:
                raise ValueError(
                    f"a plug snapshot needs its plug_id, not only {sorted(snapshot)}"
                ) from None
            _set_fields(plug, _NEW_PLUG | snapshot)
        plug.settings = settings or DEFAULT_SETTINGS
        plug.state = _restored_state(plug.state)
        plug.actual = _restored_actual(plug.actual)
        # Derived as a session sets it (0 without one, as _clear_session leaves it).
        plug.credit_wh = (
            affordable_wh(plug.credit_cents, plug.price_cents_per_kwh) if plug.session_id else 0.0
        )
        return plug


def _restored_state(value: str) -> State:
    try:
        return _STATES[value]
    except (KeyError, TypeError):
        raise ValueError(f"{value!r} is not a plug state: one of {', '.join(State)}") from None


def _restored_actual(value: int | str) -> ActualState:
    """Snapshots store the number; older ones the name ("" before the first reading)."""
    try:
        return _ACTUALS[value]
    except (KeyError, TypeError):
        raise ValueError(f"{value!r} is not a relay state: one of {list(_ACTUALS)}") from None


def _credit_guard(plug: Plug) -> Trigger:
    return (
        T.CREDIT_OK if plug.credit_cents >= plug.settings.min_start_credit_cents else T.CREDIT_LOW
    )


AUTOMATIC = {
    S.ACCOUNT_ADDED: lambda plug: T.SESSION_OPENED,
    S.ENTERING_QUEUE: _credit_guard,
    S.SENSING_START_REQUESTED: lambda plug: T.COMMAND_SENT,
    S.CHARGE_COMPLETE: lambda plug: T.RELEASE,
    S.INSUFFICIENT_CREDIT: lambda plug: T.RELEASE,
    S.ACCOUNT_REMOVAL_REQUESTED: lambda plug: T.COMMAND_SENT,
}

_AWAITING_ON = frozenset({S.SENSING_START_ISSUED_LOCALLY, S.SENSING_START_NOT_RESPONDING})
_AWAITING_OFF = frozenset(
    {S.ACCOUNT_REMOVAL_ISSUED_LOCALLY, S.ACCOUNT_REMOVAL_NOT_RESPONDING, S.LIMITING}
)
_GIVEN_UP_ON = frozenset(s for s, edges in TRANSITIONS.items() if T.GIVE_UP in edges)
# Looking a member up on its enum class costs ~200 ns on Python 3.11: the per-reading path
# compares against these instead.
_CHARGING, _SENSING_CHARGE, _WAITING_FOR_PLUG_IN = (
    S.CHARGING,
    S.SENSING_CHARGE,
    S.WAITING_FOR_PLUG_IN,
)
_ACCOUNT_NULL, _INITIALISING = S.ACCOUNT_NULL, S.INITIALISING
_METERED = frozenset(METERED_STATES)
_WANTS_ON = frozenset(WANTS_ON_STATES)
_CREDIT_CHECKED = frozenset(s for s, edges in TRANSITIONS.items() if T.CREDIT_EXHAUSTED in edges)
_TRIPPABLE = frozenset(s for s, edges in TRANSITIONS.items() if T.TRIPPED in edges)

DEFAULT_SETTINGS = Settings()


# snapshot(), meter() and restore's stores are compiled from the field names once, as dataclasses
# compile their __init__: a dict display and attribute stores run several times faster than
# loops over the names, and checkpoints and starts handle tens of thousands of plugs at a time.
def _compiled(name: str, source: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    return namespace[name]


def _dict_of(fields: tuple[str, ...]) -> Any:
    pairs = ", ".join(f"{f!r}: plug.{f}" for f in fields)
    return _compiled("dict_of", f"def dict_of(plug):\n    return {{{pairs}}}\n")


_snapshot_of = _dict_of(Plug.SNAPSHOT_FIELDS)
_meter_of = _dict_of(Plug.METER_FIELDS)
_set_fields = _compiled(
    "set_fields",
    "def set_fields(plug, snapshot):\n"
    + "".join(f"    plug.{f} = snapshot[{f!r}]\n" for f in Plug.SNAPSHOT_FIELDS),
)
# What a restore gives a field its snapshot lacks (plug_id is required).
_NEW_PLUG = {k: v for k, v in Plug("").snapshot().items() if k != "plug_id"}
# Lookups a restore makes instead of calling the enum (several times slower).
_STATES: dict[str, State] = {s.value: s for s in State}
_ACTUALS: dict[int | str, ActualState] = {
    **{a.value: a for a in ActualState},
    **{a.name: a for a in ActualState},
    "": ActualState.UNKNOWN,
}
