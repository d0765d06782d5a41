"""The validator at the edge of the core: what cannot be physical, and why."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evplug.core.actual import ActualState
from evplug.core.plug import Plug, Settings
from evplug.core.readings import InvalidReading, reading_problem

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


@settings(max_examples=500)
@given(
    timestamp_ms=st.integers(-5, 2) | st.just(1_700_000_000_000),
    power_w=st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([-50.0, -50.000001, MAX_W * 10, MAX_W * 10 + 1e-9, math.inf, math.nan]),
    energy_wh=st.none()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0.0, -0.0, -1e-300, math.inf, math.nan]),
)
def test_a_plug_refuses_exactly_the_readings_the_validator_names(
    timestamp_ms: int, power_w: float, energy_wh: float | None
) -> None:
    """The plug tests the physical case itself (cheaper than a call per reading): it must
    draw the line where the validator does, and refuse with the validator's reason."""
    plug = Plug("p", "f", Settings(max_power_w=MAX_W))
    before = plug.snapshot()
    problem = reading_problem(timestamp_ms, power_w, energy_wh, MAX_W)
    if problem is None:
        plug.reading(timestamp_ms, ActualState.OFF, power_w, energy_wh)
        return
    with pytest.raises(InvalidReading) as refused:
        plug.reading(timestamp_ms, ActualState.OFF, power_w, energy_wh)
    assert str(refused.value) == f"p: {problem}"
    assert plug.snapshot() == before
