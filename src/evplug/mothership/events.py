"""The mothership's public event hook: whoever wants to know what happened attaches here.

An event is an effect of the state machine (a transition, a session opened or closed, a command)
delivered once it has been applied: what an observer sees is on disk already.
"""

from __future__ import annotations

from collections.abc import Callable

from evplug.core.plug import Effect

Listener = Callable[[Effect], None]


class EventHook:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def attach(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every applied effect; returns the function that detaches it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, effect: Effect) -> None:
        for listener in self._listeners:
            listener(effect)
