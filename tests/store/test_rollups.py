"""Rollups against the raw readings they summarise: each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from evplug.store.rollups import MINUTE_MS, MinuteRollup, minute_rollups
from evplug.store.telemetry import ReadingSink, Row
from evplug.store.upkeep import TelemetryUpkeep

BASE_MS = 1_700_000_040_000  # a minute's start
_examples = itertools.count()


def reading(plug_id: str, at_ms: int, power_w: float, energy_wh: float | None) -> Row:
    return (plug_id, at_ms, 1, power_w / 240, 240.0, 1.0, power_w, energy_wh)


# A plug's readings over three minutes: (plug number, offset ms, power, counter or None).
readings_drawn = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.integers(0, 3 * MINUTE_MS - 1),
        st.floats(0, 5000, allow_nan=False),
        st.none() | st.floats(0, 1e6, allow_nan=False),
    ),
    min_size=1,
    max_size=60,
    unique_by=lambda r: (r[0], r[1]),
)


def aggregates(rows: list[Row]) -> dict[tuple[int, str], tuple]:
    """The rollups the raw readings call for, worked out in Python."""
    by_minute: dict[tuple[int, str], list[Row]] = defaultdict(list)
    for row in rows:
        by_minute[(row[1] // MINUTE_MS * MINUTE_MS, row[0])].append(row)
    expected = {}
    for key, group in by_minute.items():
        counted = sorted((r for r in group if r[7] is not None), key=lambda r: r[1])
        first, last = (counted[0], counted[-1]) if counted else (None, None)
        expected[key] = (
            len(group),
            sum(r[6] for r in group),
            max(r[6] for r in group),
            first and first[1],
            first and first[7],
            last and last[1],
            last and last[7],
        )
    return expected


async def stored_rollups(engine: AsyncEngine, prefix: str) -> dict[tuple[int, str], tuple]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT minute_ms, plug_id, readings, power_sum_w, max_power_w, energy_first_ms,"
                " energy_first_wh, energy_last_ms, energy_last_wh FROM reading_rollups"
                " WHERE plug_id LIKE :prefix"
            ),
            {"prefix": f"{prefix}%"},
        )
        return {(r[0], r[1]): tuple(r[2:]) for r in result.all()}


def same(stored: tuple, expected: tuple) -> bool:
    readings, power_sum, *rest = stored
    return (
        readings == expected[0]
        and math.isclose(power_sum, expected[1], rel_tol=1e-9, abs_tol=1e-6)
        and tuple(rest) == expected[2:]
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    drawn=readings_drawn,
    order=st.randoms(use_true_random=False),
    repeats=st.lists(st.integers(0, 59), max_size=20),
    batch=st.integers(1, 25),
    roll_between=st.booleans(),
)
async def test_rollups_equal_the_raw_aggregates_whatever_the_order_and_repeats(
    engine: AsyncEngine, drawn, order, repeats: list[int], batch: int, roll_between: bool
) -> None:
    prefix = f"x{next(_examples)}-"
    rows = [reading(f"{prefix}{plug}", BASE_MS + at, power, wh) for plug, at, power, wh in drawn]
    arriving = rows + [rows[i % len(rows)] for i in repeats]  # redelivered readings
    order.shuffle(arriving)
    sink, upkeep = (
        ReadingSink(engine, max_rows=10_000),
        TelemetryUpkeep(engine, ReadingSink(engine)),
    )
    for start in range(0, len(arriving), batch):
        await sink.add(arriving[start : start + batch])
        await sink.flush()
        if roll_between:  # rolled up already when a late reading of its minute comes
            await upkeep.roll_up(before_ms=BASE_MS + 10 * MINUTE_MS)
    await upkeep.roll_up(before_ms=BASE_MS + 10 * MINUTE_MS)

    stored, expected = await stored_rollups(engine, prefix), aggregates(rows)
    assert stored.keys() == expected.keys()
    assert all(same(stored[key], expected[key]) for key in expected), (stored, expected)


async def test_a_minute_is_rolled_up_once_it_is_old_enough_and_again_when_a_late_reading_comes(
    engine: AsyncEngine,
) -> None:
    sink = ReadingSink(engine)
    upkeep = TelemetryUpkeep(engine, sink)
    await sink.add([reading("p", BASE_MS + 1000, 100.0, 10.0)])
    await sink.flush()
    await upkeep.roll_up(before_ms=BASE_MS)  # the minute is not over: not yet
    assert await minute_rollups(engine, "p", BASE_MS, BASE_MS + MINUTE_MS) == []
    await upkeep.roll_up(before_ms=BASE_MS + MINUTE_MS)
    await sink.add([reading("p", BASE_MS + 500, 300.0, 9.0)])  # late, and earlier
    await sink.flush()
    await upkeep.roll_up(before_ms=BASE_MS + MINUTE_MS)
    [rollup] = await minute_rollups(engine, "p", BASE_MS, BASE_MS + MINUTE_MS)
    assert rollup == MinuteRollup("p", BASE_MS, 2, 200.0, 300.0, 1.0)


async def test_a_minutes_energy_runs_from_the_last_counter_value_of_the_minute_before(
    engine: AsyncEngine,
) -> None:
    sink = ReadingSink(engine)
    await sink.add(
        [
            reading("p", BASE_MS + 10_000, 1000.0, 100.0),
            reading("p", BASE_MS + 50_000, 1000.0, 110.0),
            reading("p", BASE_MS + MINUTE_MS + 10_000, 2000.0, 120.0),
            reading("p", BASE_MS + MINUTE_MS + 50_000, 2000.0, 130.0),
            reading("p", BASE_MS + 3 * MINUTE_MS, 0.0, 2.0),  # a gap, then the counter reset
        ]
    )
    await sink.flush()
    await TelemetryUpkeep(engine, sink).roll_up(before_ms=BASE_MS + 10 * MINUTE_MS)
    rollups = await minute_rollups(engine, "p", BASE_MS + MINUTE_MS, BASE_MS + 10 * MINUTE_MS)
    assert [(r.minute_ms - BASE_MS, r.energy_wh) for r in rollups] == [
        (MINUTE_MS, 20.0),  # 110 -> 130: the energy between the minutes counts
        (3 * MINUTE_MS, 0.0),  # no minute before: its own first reading to its last
    ]
