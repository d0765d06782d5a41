"""The core's ActualState is the wire contract's, member for member and number for number."""

from __future__ import annotations

from evplug.contracts import evplug_pb2 as pb
from evplug.core.actual import ActualState


def test_actual_state_names_and_numbers_are_the_contracts() -> None:
    contract = {
        pb.ActualState.Name(number).removeprefix("ACTUAL_STATE_"): number
        for number in pb.ActualState.values()
    }
    assert {member.name: int(member) for member in ActualState} == contract
