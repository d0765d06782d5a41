"""Per-minute rollups of each plug's readings: count, power summed and at most, energy counter.

A minute's rollup is never added to: it is recomputed from that minute's raw readings, so it is
their aggregate whatever order the readings came in and however often one came again. The sink
marks each minute it writes (``rollups_due``, in the readings' own transaction); the upkeep
recomputes the marked minutes, in small steps, while their raw readings are still kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from evplug.store.sql import RowsStatement

MINUTE_MS = 60_000

MARK = RowsStatement("INSERT INTO rollups_due (minute_ms)")

# The counter's first and last values are looked up by their (time, plug) key; the range is
# repeated on those lookups so PostgreSQL only looks in the partitions that hold it.
_RECOMPUTE = text(
    "INSERT INTO reading_rollups (minute_ms, plug_id, readings, power_sum_w, max_power_w,"
    " energy_first_ms, energy_first_wh, energy_last_ms, energy_last_wh)"
    " SELECT m.minute_ms, m.plug_id, m.n, m.power_sum_w, m.max_power_w,"
    " m.first_ms, f.energy_wh, m.last_ms, l.energy_wh"
    " FROM (SELECT timestamp_ms / 60000 * 60000 AS minute_ms, plug_id, count(*) AS n,"
    " sum(active_power_w) AS power_sum_w, max(active_power_w) AS max_power_w,"
    " min(CASE WHEN energy_wh IS NOT NULL THEN timestamp_ms END) AS first_ms,"
    " max(CASE WHEN energy_wh IS NOT NULL THEN timestamp_ms END) AS last_ms"
    " FROM readings WHERE timestamp_ms >= :start AND timestamp_ms < :end"
    " GROUP BY timestamp_ms / 60000 * 60000, plug_id) AS m"
    " LEFT JOIN readings AS f ON f.timestamp_ms = m.first_ms AND f.plug_id = m.plug_id"
    " AND f.timestamp_ms >= :start AND f.timestamp_ms < :end"
    " LEFT JOIN readings AS l ON l.timestamp_ms = m.last_ms AND l.plug_id = m.plug_id"
    " AND l.timestamp_ms >= :start AND l.timestamp_ms < :end"
    " WHERE true"  # SQLite reads ON CONFLICT after a bare join as the join's ON
    " ON CONFLICT (minute_ms, plug_id) DO UPDATE SET readings = excluded.readings,"
    " power_sum_w = excluded.power_sum_w, max_power_w = excluded.max_power_w,"
    " energy_first_ms = excluded.energy_first_ms, energy_first_wh = excluded.energy_first_wh,"
    " energy_last_ms = excluded.energy_last_ms, energy_last_wh = excluded.energy_last_wh"
)
_DUE_MINUTES = text(
    "SELECT DISTINCT minute_ms FROM rollups_due WHERE minute_ms < :before"
    " ORDER BY minute_ms LIMIT :limit"
)
_DUE_MARKS = text("SELECT id FROM rollups_due WHERE minute_ms IN :minutes").bindparams(
    bindparam("minutes", expanding=True)
)
_DONE = text("DELETE FROM rollups_due WHERE id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)
_QUERY = text(
    "SELECT minute_ms, readings, power_sum_w, max_power_w, energy_first_wh, energy_last_wh"
    " FROM reading_rollups WHERE plug_id = :plug_id AND minute_ms >= :start AND minute_ms < :end"
    " ORDER BY minute_ms"
)


def minute_of(ms: int) -> int:
    return ms // MINUTE_MS * MINUTE_MS


@dataclass(frozen=True, slots=True)
class Recomputed:
    """What one step of ``recompute_due`` did."""

    minutes: int  # minutes whose rollups were recomputed
    late: int  # marked minutes before ``not_before``: their raw readings may be gone, left as is


async def recompute_due(
    conn: AsyncConnection, before_ms: int, not_before_ms: int, max_minutes: int
) -> Recomputed:
    """Recompute up to ``max_minutes`` of the earliest marked minutes before ``before_ms``.

    Marks are read before the readings, so every reading a mark stands for is seen; a batch that
    commits meanwhile leaves a mark of its own for the next step.
    """
    minutes = list(
        (await conn.execute(_DUE_MINUTES, {"before": before_ms, "limit": max_minutes})).scalars()
    )
    if not minutes:
        return Recomputed(0, 0)
    ids = list((await conn.execute(_DUE_MARKS, {"minutes": minutes})).scalars())
    kept = [m for m in minutes if m >= not_before_ms]
    for start, end in _runs(kept):
        await conn.execute(_RECOMPUTE, {"start": start, "end": end})
    await conn.execute(_DONE, {"ids": ids})
    return Recomputed(len(kept), len(minutes) - len(kept))


def _runs(minutes: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive minutes as [start, end) ranges: one scan for each run."""
    runs = []
    for _, group in itertools.groupby(enumerate(minutes), lambda p: p[1] - p[0] * MINUTE_MS):
        run = [m for _, m in group]
        runs.append((run[0], run[-1] + MINUTE_MS))
    return runs


@dataclass(frozen=True, slots=True)
class MinuteRollup:
    plug_id: str
    minute_ms: int
    readings: int
    mean_power_w: float
    max_power_w: float
    # The relay's counter over the minute: from the minute before's last value when it has one
    # (so no energy falls between minutes), else from this minute's first. None without counter
    # values, or when the counter went back (a reset: the session's meter has the energy).
    energy_wh: float | None


async def minute_rollups(
    engine: AsyncEngine, plug_id: str, start_ms: int, end_ms: int
) -> list[MinuteRollup]:
    """A plug's rollups for the minutes starting in [start_ms, end_ms), oldest first."""
    start = minute_of(start_ms)
    async with engine.connect() as conn:
        result = await conn.execute(
            _QUERY, {"plug_id": plug_id, "start": start - MINUTE_MS, "end": end_ms}
        )
        rows = result.all()
    rollups: list[MinuteRollup] = []
    before: dict[int, float | None] = {}  # each minute's last counter value
    for minute_ms, readings, power_sum, power_max, first_wh, last_wh in rows:
        before[minute_ms] = last_wh
        if minute_ms < start:
            continue
        since = before.get(minute_ms - MINUTE_MS)
        since = first_wh if since is None else since
        energy = None if last_wh is None or since is None else last_wh - since
        rollups.append(
            MinuteRollup(
                plug_id,
                minute_ms,
                readings,
                power_sum / readings,
                power_max,
                None if energy is None or energy < 0 else energy,
            )
        )
    return rollups
