"""The validator at the edge of the core: what cannot be physical, and why."""

from __future__ import annotations

import math

import pytest

from evplug.core.readings import reading_problem

MAX_W = 4000.0


@pytest.mark.parametrize(
    ("timestamp_ms", "power_w", "energy_wh", "reason"),
    [
        (1, math.nan, 5.0, "power nan W is not a finite number"),
        (1, math.inf, 5.0, "power inf W is not a finite number"),
        (1, -math.inf, None, "power -inf W is not a finite number"),
        (1, -51.0, None, "power -51 W is outside -50..40000 W"),
        (1, 40_001.0, None, "power 40001 W is outside -50..40000 W"),
        (1, 0.0, math.nan, "energy counter nan Wh is not a finite number >= 0"),
        (1, 0.0, math.inf, "energy counter inf Wh is not a finite number >= 0"),
        (1, 0.0, -1.0, "energy counter -1.0 Wh is not a finite number >= 0"),
        (0, 0.0, None, "timestamp 0 ms is not after 1970"),
        (-5, 0.0, None, "timestamp -5 ms is not after 1970"),
    ],
)
def test_impossible_readings_are_named_with_what_to_fix(
    timestamp_ms: int, power_w: float, energy_wh: float | None, reason: str
) -> None:
    problem = reading_problem(timestamp_ms, power_w, energy_wh, MAX_W)
    assert problem is not None and problem.startswith(reason)
    assert ": " in problem  # followed by what to check


@pytest.mark.parametrize(
    ("power_w", "energy_wh"),
    [(0.0, None), (-3.5, 0.0), (3680.0, 1_234_567.8), (MAX_W * 10, 0.0), (-50.0, None)],
)
def test_physical_readings_pass(power_w: float, energy_wh: float | None) -> None:
    assert reading_problem(1_700_000_000_000, power_w, energy_wh, MAX_W) is None
