"""Circuit admission: queued plugs switch on only while their circuit has room for them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from evplug.clock import Clock
from evplug.core import circuits
from evplug.core.plug import DRAWING_STATES, Effect, Plug, State
from evplug.mothership.registry import PlugRegistry

Apply = Callable[[Plug, list[Effect]], Awaitable[object]]


class CircuitAdmission:
    def __init__(
        self, registry: PlugRegistry, clock: Clock, apply: Apply, allowance_a: float
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.apply = apply
        self.allowance_a = allowance_a

    async def admit(self, circuit: str) -> None:
        """Switch on as many of the circuit's queued plugs as its limit allows, oldest first."""
        plugs = self.registry.circuit_plugs[circuit]
        queued = [(p.queued_at_ms, p.plug_id) for p in plugs if p.state is State.IN_QUEUE]
        if not queued:
            return
        drawing = sum(1 for p in plugs if p.state in DRAWING_STATES)
        limit = self.registry.limit_of(circuit)
        for plug_id in circuits.admit(queued, drawing, limit, self.allowance_a):
            plug = self.registry.plugs[plug_id]
            if plug.state is State.IN_QUEUE:  # a driver may have given up since the list was made
                await self.apply(plug, plug.admit(self.clock.now_ms()))
