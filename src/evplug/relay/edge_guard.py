"""The relay manager's own authority over its relays (rules in ``core.edge_safety``).

After every poll it checks the site on its own: a mothership silent too long ends the sessions
running unsupervised, a circuit over its limit loses its latest socket. Each socket it switches
off is read again at once and that reading, marked with why (``Reading.edge_stop``), goes into
the outbox, so the mothership learns it whenever the uplink is back.

How it knows the mothership is there: the site's telemetry goes out every poll and the broker
acks each chunk, so an ack is a heartbeat that costs nothing. The broker stores an acked chunk
for the mothership, which bills from it, and the mothership's commands come back the same way;
a commands' ``issued_ms`` and an announcement's ack count too. A mothership process that is down
behind a live broker is not seen from here: it is the server's to restart, and what it missed
waits for it in the broker.

Dead-man switch: a device with an auto-off timer (``TimedDriver``) is switched on with that
timer, and the timer is renewed while the socket reads ON, so a relay whose Pi died turns itself
off within ``dead_man_s``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import structlog

from evplug import metrics
from evplug.clock import Clock
from evplug.core import edge_safety
from evplug.core.actual import ActualState
from evplug.core.circuits import SITE_SUPPLY, Circuit, CircuitTree
from evplug.core.edge_safety import EdgeRules, EdgeState, Observed, Stop
from evplug.devices.base import ChannelReading, DeviceError, Driver, TimedDriver
from evplug.settings import RelaySettings

if TYPE_CHECKING:
    from evplug.relay.manager import RelayManager

log = structlog.get_logger(__name__)
_DEFAULTS = RelaySettings()
_KEPT_STOPS = 20  # the latest, for the status page
# A timer is renewed every third of it, so it must outlast this many polls.
_POLLS_PER_TIMER = 3


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def rules_of(relay: RelaySettings) -> EdgeRules:
    return EdgeRules(
        _ms(relay.mothership_silent_s), _ms(relay.unsupervised_max_s), _ms(relay.over_limit_s)
    )


_DEFAULT_RULES = rules_of(_DEFAULTS)


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    rules: EdgeRules = _DEFAULT_RULES
    # The site file's circuits; a fuze it does not list gets ``default_limit_a`` (as the
    # mothership does), under the site's supply if the file gives one.
    circuits: tuple[Circuit, ...] = ()
    default_limit_a: float | None = None  # None: fuzes the file does not list are not checked
    dead_man_s: float | None = _DEFAULTS.dead_man_s  # None: no relay timers are set

    @classmethod
    def from_settings(
        cls, relay: RelaySettings, circuits: Iterable[Circuit], default_limit_a: float
    ) -> EdgeConfig:
        return cls(rules_of(relay), tuple(circuits), default_limit_a, relay.dead_man_s)


@dataclass(slots=True)
class _Renewals:
    """When each socket's relay timer was last set, by plug id."""

    at_ms: dict[str, int] = field(default_factory=dict)
    failures: int = 0


class EdgeGuard:
    def __init__(self, config: EdgeConfig, clock: Clock, poll_interval_s: float) -> None:
        shortest_s = _POLLS_PER_TIMER * poll_interval_s
        if config.dead_man_s is not None and config.dead_man_s < shortest_s:
            log.warning(
                "relay.dead_man_raised",
                configured_s=config.dead_man_s,
                used_s=shortest_s,
                fix=f"relay timers must outlast {_POLLS_PER_TIMER} polls: poll more often or"
                " raise relay.dead_man_s",
            )
            config = replace(config, dead_man_s=shortest_s)
        self.config = config
        self.clock = clock
        self.state = EdgeState(clock.now_ms())
        self.stops: deque[Stop] = deque(maxlen=_KEPT_STOPS)
        self.refused = 0
        self.renewals = _Renewals()
        self._acks_seen = 0
        self._tree = CircuitTree(config.circuits)
        # Commands and the checks after a poll switch the same relays: one at a time, and a
        # socket switched while a poll ran is left alone until a poll has read it again.
        self._lock = asyncio.Lock()
        self._switches = 0
        self._switched: dict[str, int] = {}  # plug id -> the switch count when it was switched
        self._before_poll = 0

    # -- the mothership ----------------------------------------------------------------------

    def heard(self, at_ms: int | None = None) -> None:
        """The mothership (or the broker on its behalf) was there at ``at_ms`` (default now)."""
        now = self.clock.now_ms()
        self.state = edge_safety.heard(self.state, now if at_ms is None else min(at_ms, now))

    @property
    def on_own(self) -> bool:
        return edge_safety.on_own(self.state, self.config.rules, self.clock.now_ms())

    @property
    def silent_s(self) -> float:
        return (self.clock.now_ms() - self.state.last_heard_ms) / 1000

    def refusal(self, plug_id: str, on: bool) -> str | None:
        """Why switching ``plug_id`` on must be refused now; ``None`` when it may go ahead."""
        why = (
            edge_safety.refuse_on(self.state, self.config.rules, self.clock.now_ms())
            if on
            else None
        )
        if why is not None:
            self.refused += 1
            metrics.RELAY_ON_REFUSED.inc()
            log.warning("relay.on_refused", plug_id=plug_id, reason=why)
        return why

    # -- switching ---------------------------------------------------------------------------

    def has_timer(self, driver: Driver) -> bool:
        return self.config.dead_man_s is not None and isinstance(driver, TimedDriver)

    async def switch(self, driver: Driver, channel: int, plug_id: str, on: bool) -> ActualState:
        """Switch one socket; ON with the relay's auto-off timer where it has one."""
        async with self._lock:
            return await self._switch(driver, channel, plug_id, on)

    async def _switch(self, driver: Driver, channel: int, plug_id: str, on: bool) -> ActualState:
        self._switches += 1
        self._switched[plug_id] = self._switches
        now = self.clock.now_ms()
        if on and self.config.dead_man_s is not None and isinstance(driver, TimedDriver):
            actual = await driver.switch_on_for(channel, self.config.dead_man_s)
            self.renewals.at_ms[plug_id] = now
        else:
            actual = await driver.switch(channel, on)
            self.renewals.at_ms.pop(plug_id, None)
        if on and actual == ActualState.ON:
            self.state = edge_safety.switched_on(self.state, plug_id, now)
        return actual

    # -- after each poll ---------------------------------------------------------------------

    def before_poll(self) -> None:
        self._before_poll = self._switches

    async def after_poll(self, relay: RelayManager) -> list[Stop]:
        """Carry out the rules on the latest readings, then renew the timers of sockets on."""
        async with self._lock:
            return await self._after_poll(relay)

    async def _after_poll(self, relay: RelayManager) -> list[Stop]:
        if relay.outbox.acked != self._acks_seen:
            self._acks_seen = relay.outbox.acked
            self.heard()
        observed = [
            Observed(plug_id, channel.fuze_id, ActualState(reading.actual_state), reading.current_a)
            for plug_id, channel in relay.channels.items()
            if (reading := relay.latest.get(plug_id)) is not None
            and self._switched.get(plug_id, 0) <= self._before_poll  # else read before it switched
        ]
        self._know(o.circuit for o in observed)
        now = self.clock.now_ms()
        self.state, stops = edge_safety.step(
            self.state, observed, self._tree, self.config.rules, now
        )
        for stop in stops:
            await self._carry_out(relay, stop)
        stopped = {s.plug_id for s in stops}
        await self._renew(relay, [o for o in observed if o.plug_id not in stopped], now)
        return stops

    def _know(self, fuzes: Iterable[str]) -> None:
        """Give fuzes the site file does not list the default limit, as the mothership does."""
        if self.config.default_limit_a is None:
            return
        new = {f for f in fuzes if f not in self._tree.circuits}
        if new:
            parent = SITE_SUPPLY if SITE_SUPPLY in self._tree.circuits else None
            added = [Circuit(f, self.config.default_limit_a, parent) for f in sorted(new)]
            self._tree = CircuitTree([*self._tree.circuits.values(), *added])

    async def _carry_out(self, relay: RelayManager, stop: Stop) -> None:
        channel = relay.channels[stop.plug_id]
        metrics.RELAY_EDGE_STOPS.labels(reason=stop.reason.name.lower()).inc()
        log.warning(
            "relay.edge_stop", plug_id=stop.plug_id, reason=stop.reason.name, why=stop.detail
        )
        try:
            actual = await self._switch(channel.driver, channel.channel, stop.plug_id, on=False)
        except DeviceError as exc:
            log.error(
                "relay.edge_stop_failed",
                plug_id=stop.plug_id,
                error=str(exc),
                fix="tried again after the next poll; if it never answers, switch it off by hand",
            )
            return
        self.stops.append(stop)
        try:
            # The counter as it stopped: the mothership bills the session up to here.
            fresh = [r for r in await channel.driver.read() if r.channel == channel.channel]
        except DeviceError as exc:
            log.warning("relay.edge_stop_unread", plug_id=stop.plug_id, error=str(exc))
            fresh = []
        last = relay.latest[stop.plug_id]
        reading = (
            fresh[0]
            if fresh
            else ChannelReading(
                channel.channel,
                actual,
                0.0,
                last.voltage_v,
                0.0,
                0.0,
                last.energy_wh if last.HasField("energy_wh") else None,
            )
        )
        relay.publish_edge_stop(channel.info, reading, stop.reason)

    async def _renew(self, relay: RelayManager, observed: list[Observed], now: int) -> None:
        if self.config.dead_man_s is None:
            return
        timer_ms = _ms(self.config.dead_man_s)
        on = {o.plug_id for o in observed if o.actual == ActualState.ON}
        for plug_id in [p for p in self.renewals.at_ms if p not in on]:
            del self.renewals.at_ms[plug_id]
        for plug_id in sorted(on):
            channel = relay.channels[plug_id]
            if not isinstance(channel.driver, TimedDriver) or not edge_safety.renewal_due(
                self.renewals.at_ms.get(plug_id), timer_ms, now
            ):
                continue
            try:
                await channel.driver.switch_on_for(channel.channel, self.config.dead_man_s)
            except DeviceError as exc:
                self.renewals.failures += 1
                metrics.RELAY_TIMER_RENEWAL_FAILURES.inc()
                log.warning(
                    "relay.timer_not_renewed",
                    plug_id=plug_id,
                    error=str(exc),
                    fix="tried again after the next poll; the relay switches itself off if it"
                    " keeps failing",
                )
                continue
            self.renewals.at_ms[plug_id] = now
