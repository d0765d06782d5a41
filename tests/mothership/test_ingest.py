"""The ingest hot path: wire numbers to the core's ActualState."""

from __future__ import annotations

from evplug.core.actual import ActualState
from evplug.mothership.ingest import actual_state


def test_wire_numbers_map_to_members_and_unknown_numbers_to_unknown() -> None:
    assert [actual_state(int(m)) for m in ActualState] == list(ActualState)
    assert actual_state(99) is ActualState.UNKNOWN
    assert actual_state(-1) is ActualState.UNKNOWN
