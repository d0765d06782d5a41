from __future__ import annotations

from evplug.core.circuits import admit


def test_admits_first_come_first_served_within_the_limit() -> None:
    queued = [(30, "c"), (10, "a"), (20, "b")]
    assert admit(queued, active_plugs=0, limit_a=32, allowance_a=10) == ["a", "b", "c"]
    assert admit(queued, active_plugs=2, limit_a=32, allowance_a=10) == ["a"]
    assert admit(queued, active_plugs=3, limit_a=32, allowance_a=10) == []


def test_a_circuit_smaller_than_one_car_admits_nobody() -> None:
    assert admit([(0, "a")], active_plugs=0, limit_a=8, allowance_a=10) == []
