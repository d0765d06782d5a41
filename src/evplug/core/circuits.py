"""Circuit (fuze) admission: which queued sockets may switch on within a circuit's limit."""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_CIRCUIT_LIMIT_A = 32.0
# What one charging car is assumed to draw when admitting it (a 10 A granny lead).
DEFAULT_PLUG_ALLOWANCE_A = 10.0


def admit(
    queued: Sequence[tuple[int, str]],
    active_plugs: int,
    limit_a: float,
    allowance_a: float = DEFAULT_PLUG_ALLOWANCE_A,
) -> list[str]:
    """Plugs to admit now, first come first served.

    ``queued`` holds (queued_at_ms, plug_id); ``active_plugs`` counts the plugs of this circuit
    whose relay is on or being switched on.
    """
    free = int((limit_a + 1e-9) // allowance_a) - active_plugs if allowance_a > 0 else len(queued)
    if free <= 0:
        return []
    return [plug_id for _, plug_id in sorted(queued)[:free]]
