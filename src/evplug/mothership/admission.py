"""Load management: the circuit rules of ``core.circuits`` applied to the plugs in memory.

Each site is looked at on its own (its circuits are a tree of their own): plugs on an overloaded
circuit are shed, cars whose turn is over yield to the queue, queued plugs switch on where they
fit. This part gathers the inputs (states, measured current, learned draws, when each circuit
last switched a plug on) and applies what the rules decide; it decides nothing itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from evplug.clock import Clock
from evplug.core import circuits
from evplug.core.circuits import Holder, Outlook, Waiter
from evplug.core.plug import DRAWING_STATES, Effect, Plug, State
from evplug.mothership.registry import PlugRegistry

Apply = Callable[[Plug, list[Effect]], Awaitable[object]]

# Relay on, or being switched on, with no car seen drawing yet: its expected draw is held.
_SWITCHING_ON = frozenset(
    {
        State.SENSING_START_REQUESTED,
        State.SENSING_START_ISSUED_LOCALLY,
        State.SENSING_START_NOT_RESPONDING,
        State.SENSING_CHARGE,
        State.WAITING_FOR_PLUG_IN,
    }
)
# Being switched off: gone as far as switching others off is concerned.
_LEAVING = DRAWING_STATES - _SWITCHING_ON - {State.CHARGING}


@dataclass(frozen=True, slots=True)
class LoadSettings:
    default_draw_a: float = circuits.DEFAULT_PLUG_ALLOWANCE_A
    slot_ms: int = 30 * 60_000
    stagger_ms: int = 3_000
    overcurrent_window_ms: int = 5_000
    volts: float = circuits.NOMINAL_VOLTS


class CircuitAdmission:
    def __init__(
        self, registry: PlugRegistry, clock: Clock, apply: Apply, settings: LoadSettings
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.apply = apply
        self.settings = settings
        self.learned_a: dict[str, float] = {}  # plug -> the most its car drew while charging
        self._last_on_ms: dict[str, int] = {}  # circuit -> when it last switched a plug on
        self._over_since_ms: dict[str, int] = {}  # circuit -> since when it is over its limit

    # -- inputs ------------------------------------------------------------------------------

    def expected_a(self, plug: Plug) -> float:
        return self.learned_a.get(plug.plug_id, self.settings.default_draw_a)

    def measured_a(self, plug: Plug) -> float:
        """The current its relay measured; from its power where the relay measures none."""
        return self.registry.current_a.get(plug.plug_id) or plug.power_w / self.settings.volts

    def _holders(self, plugs: Iterable[Plug], measured: bool = False) -> list[Holder]:
        return [
            Holder(
                p.plug_id,
                self.registry.circuit_of(p),
                self.measured_a(p)
                if measured
                else circuits.holding_a(
                    self.expected_a(p), self.measured_a(p), p.state in _SWITCHING_ON
                ),
                p.admitted_ms,
                charging=p.state is State.CHARGING,
                leaving=p.state in _LEAVING,
            )
            for p in plugs
            if p.state in DRAWING_STATES
        ]

    def _waiters(self, plugs: Iterable[Plug]) -> list[Waiter]:
        return [
            Waiter(p.plug_id, self.registry.circuit_of(p), self.expected_a(p), p.queued_at_ms)
            for p in plugs
            if p.state is State.IN_QUEUE
        ]

    def _site(self, site_id: str) -> list[Plug]:
        return list(self.registry.site_plugs[site_id].values())

    # -- the rules, applied ------------------------------------------------------------------

    def learn(self, plugs: Iterable[Plug]) -> None:
        """What each charging car draws becomes what its socket is expected to draw."""
        default = self.settings.default_draw_a
        for p in plugs:
            if p.state is State.CHARGING:
                known = self.learned_a.get(p.plug_id)
                self.learned_a[p.plug_id] = circuits.learned_a(known, self.measured_a(p), default)

    async def manage(self, site_id: str) -> None:
        """Shed what overloads a circuit, let cars whose turn is over yield, admit the queue."""
        plugs = self._site(site_id)
        self.learn(plugs)
        tree, now = self.registry.tree(), self.clock.now_ms()
        s = self.settings
        since, shed = circuits.overloaded(
            tree,
            self._holders(plugs, measured=True),
            self._over_since_ms,
            now,
            s.overcurrent_window_ms,
        )
        site_circuits = {self.registry.circuit_of(p) for p in plugs}
        for circuit in site_circuits:
            for c in tree.chain(circuit):
                self._over_since_ms.pop(c, None)
        self._over_since_ms.update(since)
        for plug_id in shed:
            plug = self.registry.plugs[plug_id]
            await self.apply(plug, plug.shed(now))
        waiters = self._waiters(plugs)
        if waiters:
            for plug_id in circuits.turns_over(tree, self._holders(plugs), waiters, now, s.slot_ms):
                plug = self.registry.plugs[plug_id]
                await self.apply(plug, plug.turn_over(now))
        await self.admit(site_id)

    async def admit(self, site_id: str) -> None:
        """Switch on the site's queued plugs that fit, in queue order."""
        plugs = self._site(site_id)
        waiters = self._waiters(plugs)
        if not waiters:
            return
        tree, now = self.registry.tree(), self.clock.now_ms()
        admitted = circuits.admit(
            tree, self._holders(plugs), waiters, now, self._last_on_ms, self.settings.stagger_ms
        )
        for plug_id in admitted:
            plug = self.registry.plugs[plug_id]
            if plug.state is State.IN_QUEUE:  # a driver may have given up since the list was made
                self._last_on_ms.update(
                    dict.fromkeys(tree.chain(self.registry.circuit_of(plug)), now)
                )
                await self.apply(plug, plug.admit(now))

    def outlook(self, plug: Plug) -> Outlook | None:
        """Where a queued plug stands in its site's queue, and when its turn should come."""
        if plug.state is not State.IN_QUEUE:
            return None
        plugs = self._site(self.registry.site_of[plug.plug_id])
        table = circuits.queue_outlook(
            self.registry.tree(),
            self._holders(plugs),
            self._waiters(plugs),
            self.clock.now_ms(),
            self.settings.slot_ms,
        )
        return table.get(plug.plug_id)
