"""The plug state machine: everything that decides a socket's state lives in this file.

As in h11, as much as possible is in tables: ``TRANSITIONS`` ({state: {trigger: next state}}),
``AUTOMATIC`` (states left as soon as they are entered, and the guard that picks the trigger),
``ON_ENTER`` (the effect of entering a state) and ``PROMPTS`` (what a driver may choose).
The code below turns raw events (a reading, a driver's choice, a relay's answer, the passing of
time) into triggers through small named guards, and the table does the rest.
``docs/state-machine.md`` is generated from these tables (``tools/gen_state_diagram.py``).

A ``Plug`` is a sans-IO object, like h11's connection state: it never reads a clock, touches the
network or a database; time comes in as ``now_ms`` and what must happen in the world comes back
as effects. It mutates itself rather than returning a new state because a site sends a reading
per plug every two seconds and a fresh object per reading would be most of the cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from evplug.core.actual import ActualState
from evplug.core.metering import counter_delta_wh, integrated_wh
from evplug.core.pricing import affordable_wh, cost_cents


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
    COMMAND_SENT = "command sent"
    RELAY_ON = "relay on"
    RELAY_OFF = "relay off"
    NO_RESPONSE = "no response"
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
    },
    S.SENSING_CHARGE: {T.CAR_DRAWING: S.CHARGING, T.NO_DRAW: S.WAITING_FOR_PLUG_IN},
    S.WAITING_FOR_PLUG_IN: {T.CAR_DRAWING: S.CHARGING, T.NO_CAR: S.ACCOUNT_REMOVAL_REQUESTED},
    S.CHARGING: {
        T.LOW_POWER_SUSTAINED: S.CHARGE_COMPLETE,
        T.CREDIT_EXHAUSTED: S.INSUFFICIENT_CREDIT,
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
    },
    S.COMMISSIONING: {T.COMMISSION_END: S.ACCOUNT_NULL},
}
for _state in _DISABLE_FROM:
    TRANSITIONS[_state][T.DISABLE] = S.ACCOUNT_REMOVAL_REQUESTED
# States whose relay may be on while the session's meter runs: the credit is checked in each.
METERED_STATES = (
    S.SENSING_START_NOT_RESPONDING,
    S.SENSING_CHARGE,
    S.WAITING_FOR_PLUG_IN,
    S.CHARGING,
)
for _state in METERED_STATES:
    TRANSITIONS[_state][T.CREDIT_EXHAUSTED] = S.INSUFFICIENT_CREDIT

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
        S.SENSING_CHARGE,
    }
)

# Why a session ended, by the state that started its removal.
_END_REASONS = {
    S.CHARGE_COMPLETE: "complete",
    S.INSUFFICIENT_CREDIT: "insufficient_credit",
    S.WAITING_FOR_PLUG_IN: "no_car",
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
class Transitioned:
    plug_id: str
    from_state: State
    to_state: State
    trigger: Trigger
    at_ms: int
    session_id: str


Effect = SwitchRelay | SessionOpened | SessionClosed | Transitioned
NO_EFFECTS: tuple[Effect, ...] = ()

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
        "actual",
        "power_w",
        "commands_sent",
        "pending_request_id",
        "command_issued_ms",
        "state_since_ms",
        "queued_at_ms",
        "session_id",
        "user_id",
        "session_started_ms",
        "metered_from_ms",
        "price_cents_per_kwh",
        "credit_cents",
        "credit_wh",
        "energy_wh",
        "last_counter_wh",
        "low_since_ms",
        "low_count",
        "end_reason",
    )

    # What the store keeps; settings come from configuration and credit_wh is derived.
    SNAPSHOT_FIELDS: ClassVar[tuple[str, ...]] = tuple(
        f for f in __slots__ if f not in ("settings", "credit_wh")
    )

    def __init__(self, plug_id: str, fuze_id: str = "", settings: Settings | None = None) -> None:
        self.plug_id = plug_id
        self.fuze_id = fuze_id
        self.state = S.INITIALISING
        self.settings = settings or DEFAULT_SETTINGS
        self.last_reading_ms = -1
        self.actual = ActualState.UNKNOWN
        self.power_w = 0.0
        self.commands_sent = 0
        self.pending_request_id = ""
        self.command_issued_ms = 0
        self.state_since_ms = 0
        self.queued_at_ms = 0
        self._clear_session()

    def _clear_session(self) -> None:
        self.session_id = ""
        self.user_id = ""
        self.session_started_ms = 0
        self.metered_from_ms = 0
        self.price_cents_per_kwh = 0
        self.credit_cents = 0
        self.credit_wh = 0.0
        self.energy_wh = 0.0
        self.last_counter_wh: float | None = None
        self.low_since_ms = -1
        self.low_count = 0
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
    ) -> tuple[Effect, ...] | list[Effect]:
        """A reading from the relay. Stale or repeated readings (redelivery) are ignored."""
        if timestamp_ms <= self.last_reading_ms:
            return NO_EFFECTS
        previous_ms = self.last_reading_ms
        previous_w = self.power_w
        self.last_reading_ms = timestamp_ms
        self.actual = actual
        if actual == MIA:
            # No news is not low power: a silent device must not end a session.
            return NO_EFFECTS
        self.power_w = power_w
        state = self.state
        if self.session_id:
            self._meter(timestamp_ms, previous_ms, previous_w, power_w, energy_wh)
        elif energy_wh is not None:
            self.last_counter_wh = energy_wh

        if self.session_id and self.energy_wh >= self.credit_wh and state in _CREDIT_CHECKED:
            return self._fire(T.CREDIT_EXHAUSTED, timestamp_ms)
        if state is S.CHARGING:
            if power_w < self.settings.complete_below_w:
                if self.low_since_ms < 0:
                    self.low_since_ms = timestamp_ms
                    self.low_count = 1
                else:
                    self.low_count += 1
                if (
                    timestamp_ms - self.low_since_ms >= self.settings.complete_window_ms
                    and self.low_count >= self.settings.complete_min_readings
                ):
                    return self._fire(T.LOW_POWER_SUSTAINED, timestamp_ms)
            else:
                self.low_since_ms = -1
                self.low_count = 0
            return NO_EFFECTS
        if state is S.SENSING_CHARGE or state is S.WAITING_FOR_PLUG_IN:
            if power_w > self.settings.charge_start_w:
                return self._fire(T.CAR_DRAWING, timestamp_ms)
            if state is S.WAITING_FOR_PLUG_IN:
                # A slow car still draws something; only a socket drawing nothing is given up.
                if power_w >= self.settings.complete_below_w:
                    self.low_since_ms = -1
                elif self.low_since_ms < 0:
                    self.low_since_ms = timestamp_ms
                elif timestamp_ms - self.low_since_ms >= self.settings.no_car_timeout_ms:
                    return self._fire(T.NO_CAR, timestamp_ms)
            return NO_EFFECTS
        if state is S.ACCOUNT_NULL or state is S.INITIALISING:
            return self._idle_reading(timestamp_ms, actual)
        # A reading taken after the command confirms it even if the answer itself was lost.
        if timestamp_ms >= self.command_issued_ms:
            if actual == ON and state in _AWAITING_ON:
                return self._fire(T.RELAY_ON, timestamp_ms)
            if actual == OFF and state in _AWAITING_OFF:
                return self._fire(T.RELAY_OFF, timestamp_ms)
        return NO_EFFECTS

    def _idle_reading(self, now_ms: int, actual: ActualState) -> tuple[Effect, ...] | list[Effect]:
        first = self.state is S.INITIALISING
        # Nobody owns this socket, so it must not give away power: switch it off (once a
        # timeout, not at every reading while the command is on its way).
        loose = actual == ON and now_ms >= self.command_issued_ms + self.settings.command_timeout_ms
        if not (first or loose):
            return NO_EFFECTS  # the common case: an idle socket, off
        effects = self._fire(T.FIRST_READING, now_ms) if first else []
        if loose:
            effects.append(self._command(on=False, now_ms=now_ms))
        return effects

    def _meter(
        self,
        now_ms: int,
        previous_ms: int,
        previous_w: float,
        power_w: float,
        energy_wh: float | None,
    ) -> None:
        if energy_wh is not None:
            if self.last_counter_wh is not None:
                self.energy_wh += counter_delta_wh(self.last_counter_wh, energy_wh)
            self.last_counter_wh = energy_wh
        elif previous_ms >= self.metered_from_ms:
            self.energy_wh += integrated_wh(previous_w, power_w, now_ms - previous_ms)

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
        # On the relay's clock, not ours: integrate only intervals that began in the session.
        self.metered_from_ms = self.last_reading_ms
        self.price_cents_per_kwh = price_cents_per_kwh
        self.credit_cents = credit_cents
        self.credit_wh = affordable_wh(credit_cents, price_cents_per_kwh)
        self.energy_wh = 0.0
        return self._fire(T.ENABLE, now_ms)

    def disable(self, now_ms: int) -> list[Effect]:
        self._require(T.DISABLE)
        self.end_reason = "driver"
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
        return self._fire(T.ADMITTED, now_ms)

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
        if actual == ON and state in _AWAITING_ON:
            return self._fire(T.RELAY_ON, now_ms)
        if actual == OFF and state in _AWAITING_OFF:
            return self._fire(T.RELAY_OFF, now_ms)
        return []

    def tick(self, now_ms: int) -> list[Effect]:
        """The passing of time: command timeouts and a car that never starts drawing."""
        state = self.state
        waited = now_ms - self.state_since_ms
        if state in _AWAITING_ANSWER and waited >= self.settings.command_timeout_ms:
            return self._fire(T.NO_RESPONSE, now_ms)
        if state is S.SENSING_CHARGE and waited >= self.settings.no_draw_timeout_ms:
            return self._fire(T.NO_DRAW, now_ms)
        if (
            state is S.ACCOUNT_REMOVAL_NOT_RESPONDING
            and now_ms - self.command_issued_ms >= self.settings.command_timeout_ms
        ):
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
            self.state = target
            self.state_since_ms = now_ms
            effects.append(
                Transitioned(self.plug_id, source, target, trigger, now_ms, self.session_id)
            )
            self._enter(target, source, now_ms, effects)
            guard = AUTOMATIC.get(target)
            if guard is None:
                return effects
            trigger = guard(self)

    def _enter(self, state: State, source: State, now_ms: int, effects: list[Effect]) -> None:
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
        elif state is S.IN_QUEUE:
            self.queued_at_ms = now_ms
        elif state is S.WAITING_FOR_PLUG_IN or state is S.CHARGING:
            # Each counts its own stretch of low power from the moment it is entered.
            self.low_since_ms = -1
            self.low_count = 0
        elif state is S.SENSING_START_REQUESTED:
            effects.append(self._command(on=True, now_ms=now_ms))
        elif state is S.ACCOUNT_REMOVAL_REQUESTED:
            self.end_reason = self.end_reason or _END_REASONS.get(source, "driver")
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
                    self.end_reason or "driver",
                )
            )
            counter = self.last_counter_wh
            self._clear_session()
            self.last_counter_wh = counter

    def _command(self, on: bool, now_ms: int) -> SwitchRelay:
        self.commands_sent += 1
        # The time makes ids unique across restarts, where a counter restored from an older
        # snapshot could repeat one that the bus would then drop as a duplicate.
        self.pending_request_id = f"{self.plug_id}#{self.commands_sent}@{now_ms}"
        self.command_issued_ms = now_ms
        return SwitchRelay(self.plug_id, self.pending_request_id, on, now_ms)

    # -- persistence ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.SNAPSHOT_FIELDS}

    @classmethod
    def restore(cls, snapshot: dict[str, Any], settings: Settings | None = None) -> Plug:
        plug = cls(snapshot["plug_id"], snapshot.get("fuze_id", ""), settings)
        for name in cls.SNAPSHOT_FIELDS:
            if name in snapshot:
                setattr(plug, name, snapshot[name])
        plug.state = State(plug.state)
        plug.actual = _restored_actual(plug.actual)
        plug.credit_wh = affordable_wh(plug.credit_cents, plug.price_cents_per_kwh)
        return plug


def _restored_actual(value: int | str) -> ActualState:
    """Snapshots store the number; older ones the name ("" before the first reading)."""
    if isinstance(value, str):
        return ActualState[value] if value else ActualState.UNKNOWN
    return ActualState(value)


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
_AWAITING_OFF = frozenset({S.ACCOUNT_REMOVAL_ISSUED_LOCALLY, S.ACCOUNT_REMOVAL_NOT_RESPONDING})
_AWAITING_ANSWER = frozenset({S.SENSING_START_ISSUED_LOCALLY, S.ACCOUNT_REMOVAL_ISSUED_LOCALLY})
_CREDIT_CHECKED = frozenset(METERED_STATES)

DEFAULT_SETTINGS = Settings()
