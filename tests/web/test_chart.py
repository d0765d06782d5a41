"""The session chart: an accessible SVG, light however long the session was."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from evplug.web.chart import MAX_POINTS, downsample, power_chart


def test_a_chart_names_itself_and_draws_every_point() -> None:
    points = [(0, 0.0), (60_000, 2_000.0), (120_000, 7_400.0), (180_000, 100.0)]
    svg = power_chart(points, "Power over time")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'role="img"' in svg and "<title" in svg and "Power over time" in svg
    assert svg.count(",") - svg.count(", ") >= len(points)  # x,y pairs
    assert "7.4 kW" in svg and "3 min" in svg


def test_no_readings_says_so() -> None:
    assert "No readings" in power_chart([], "Power over time")


def test_the_title_is_escaped() -> None:
    assert "<script>" not in power_chart([(0, 1.0)], "<script>")


@given(st.lists(st.floats(min_value=0, max_value=25_000), min_size=1, max_size=3_000))
def test_downsampling_keeps_the_peak_and_the_cap(watts: list[float]) -> None:
    points = [(i * 2000, w) for i, w in enumerate(watts)]
    shown = downsample(points, MAX_POINTS)
    assert len(shown) <= MAX_POINTS
    assert max(w for _, w in shown) == max(watts)
    assert len(power_chart(points, "t")) < 20_000
