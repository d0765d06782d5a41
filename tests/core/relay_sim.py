"""A plug and the relay it reads, on the relay's clock, for scenario tests of the plug's rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from evplug.core.actual import ActualState
from evplug.core.plug import Effect, Plug, SessionClosed, State, SwitchRelay

START = 1_700_000_000_000
ON, OFF, MIA, TRIP = ActualState.ON, ActualState.OFF, ActualState.MIA, ActualState.OVERCURRENT
SHOWN = object()  # read(counter_wh=SHOWN): the device's true counter
Reading = tuple[int, ActualState, float, float | None]


def rated_wh(max_power_w: float, elapsed_ms: float) -> float:
    """What a socket of ``max_power_w`` can deliver in ``elapsed_ms``."""
    return max_power_w * elapsed_ms / 3_600_000


@dataclass
class Relay:
    """Readings ``dt_ms`` apart, the device's counter following the power it reports."""

    plug: Plug = field(default_factory=lambda: Plug("p", "f"))
    now_ms: int = START
    counter_wh: float | None = 1_000.0  # None: a device without a counter
    offset_ms: int = 0  # how far the relay's clock is off
    delivered_wh: float = 0.0
    effects: list[Effect] = field(default_factory=list)
    fed: list[Reading] = field(default_factory=list)

    def read(
        self,
        power_w: float = 0.0,
        actual: ActualState = ON,
        dt_ms: int = 2000,
        counter_wh: object = SHOWN,
    ) -> list[Effect]:
        """One poll ``dt_ms`` after the last, stamped by the relay's clock."""
        self.now_ms += dt_ms
        self.delivered_wh += power_w * dt_ms / 3_600_000
        if self.counter_wh is not None:
            self.counter_wh += power_w * dt_ms / 3_600_000
        shown = self.counter_wh if counter_wh is SHOWN else counter_wh
        reading = (self.now_ms + self.offset_ms, actual, power_w, shown)
        self.fed.append(reading)  # type: ignore[arg-type]
        return self.replay(reading)  # type: ignore[arg-type]

    def replay(self, reading: Reading, redelivered: bool = False) -> list[Effect]:
        """Deliver a reading (again; ``redelivered`` when the bus says so)."""
        return self._keep(self.plug.reading(*reading, redelivered=redelivered))

    def answer(self, actual: ActualState, ok: bool = True) -> list[Effect]:
        return self._keep(
            self.plug.relay_response(self.plug.pending_request_id, actual, ok, self.now_ms)
        )

    def tick(self, dt_ms: int) -> list[Effect]:
        self.now_ms += dt_ms
        return self._keep(self.plug.tick(self.now_ms))

    def request(self, credit_cents: int = 10_000, price_cents_per_kwh: int = 30) -> None:
        """Enable and admit: the relay is asked to switch on."""
        self.read(0.0, OFF)
        self._keep(self.plug.enable("s1", "u1", credit_cents, price_cents_per_kwh, self.now_ms))
        self._keep(self.plug.admit(self.now_ms))

    def start(self, credit_cents: int = 10_000, price_cents_per_kwh: int = 30) -> None:
        """Enable, admit and confirm ON: the plug is SENSING_CHARGE with the relay on."""
        self.request(credit_cents, price_cents_per_kwh)
        self.answer(ON)
        assert self.plug.state is State.SENSING_CHARGE

    def charge(self, power_w: float = 3000.0, readings: int = 30) -> None:
        """The car draws ``power_w`` for ``readings`` polls; the plug is CHARGING after."""
        for _ in range(readings):
            self.read(power_w)
        assert self.plug.state is State.CHARGING

    def _keep(self, effects: tuple[Effect, ...] | list[Effect]) -> list[Effect]:
        self.effects += effects
        return list(effects)

    @property
    def closed(self) -> list[SessionClosed]:
        return [e for e in self.effects if isinstance(e, SessionClosed)]

    @property
    def commands(self) -> list[bool]:
        """Every switch asked for, True for on."""
        return [e.on for e in self.effects if isinstance(e, SwitchRelay)]
