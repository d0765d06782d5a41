"""A session's power over time as a small inline SVG, drawn on the server (no script needed)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 340, 160
# Room for the axis labels: left, right, top, bottom.
PAD_L, PAD_R, PAD_T, PAD_B = 44, 8, 10, 24
# More points than pixels across only makes the page heavier.
MAX_POINTS = 300


def downsample(points: Sequence[tuple[int, float]], max_points: int) -> list[tuple[int, float]]:
    """At most ``max_points`` points: each bucket's peak, so a short spike still shows."""
    if len(points) <= max_points:
        return list(points)
    size = -(-len(points) // max_points)  # ceil
    return [max(points[i : i + size], key=lambda p: p[1]) for i in range(0, len(points), size)]


def power_chart(points: Sequence[tuple[int, float]], title: str) -> str:
    """``points`` are (timestamp ms, watts) in time order; an empty list says there is no data."""
    label = escape(title)
    head = (
        f'<svg class="chart" role="img" aria-labelledby="chart-title" viewBox="0 0 {WIDTH}'
        f' {HEIGHT}" width="100%" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="chart-title">{label}</title>'
    )
    if not points:
        return (
            f'{head}<text x="{WIDTH // 2}" y="{HEIGHT // 2}" text-anchor="middle">'
            "No readings recorded for this session</text></svg>"
        )
    shown = downsample(points, MAX_POINTS)
    t0, t1 = shown[0][0], shown[-1][0]
    span_ms = max(t1 - t0, 1)
    peak_w = max(max(w for _, w in shown), 1.0)
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def x(t: int) -> float:
        return PAD_L + (t - t0) / span_ms * plot_w

    def y(w: float) -> float:
        return PAD_T + plot_h - max(w, 0.0) / peak_w * plot_h

    line = " ".join(f"{x(t):.1f},{y(w):.1f}" for t, w in shown)
    base = PAD_T + plot_h
    minutes = span_ms / 60_000
    return (
        f"{head}"
        f'<line x1="{PAD_L}" y1="{base}" x2="{WIDTH - PAD_R}" y2="{base}" stroke="#555"/>'
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{base}" stroke="#555"/>'
        f'<text x="{PAD_L - 4}" y="{PAD_T + 8}" text-anchor="end" font-size="10">'
        f"{peak_w / 1000:.1f} kW</text>"
        f'<text x="{PAD_L - 4}" y="{base}" text-anchor="end" font-size="10">0</text>'
        f'<text x="{PAD_L}" y="{HEIGHT - 6}" font-size="10">start</text>'
        f'<text x="{WIDTH - PAD_R}" y="{HEIGHT - 6}" text-anchor="end" font-size="10">'
        f"{minutes:.0f} min</text>"
        f'<polyline fill="none" stroke="#0a6" stroke-width="2" points="{line}"/></svg>'
    )
