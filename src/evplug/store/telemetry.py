"""The telemetry sink: readings written in batches, each batch's acks released after it commits.

Like the original's InfluxDB writer: a bus message is acked only once its readings are on disk,
so a crash between receipt and write means redelivery, never a lost reading. Repeated readings
(a redelivered chunk) are ignored by the (plug_id, timestamp_ms) key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger(__name__)

Row = tuple[Any, ...]  # (plug_id, timestamp_ms, actual_state, A, V, pf, W, Wh|None)
OnFlushed = Callable[[], Awaitable[None]]

_INSERT = {
    "sqlite": "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "postgresql": (
        "INSERT INTO readings VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
    ),
}


class ReadingSink:
    def __init__(
        self,
        engine: AsyncEngine,
        max_rows: int = 5000,
        max_delay_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self._rows: list[Row] = []
        self._acks: list[OnFlushed] = []
        self._lock = asyncio.Lock()
        self._statement = _INSERT[engine.dialect.name]
        self.rows_written = 0
        self.flushes = 0
        self.flush_seconds = 0.0

    @property
    def buffered(self) -> int:
        return len(self._rows)

    async def add(self, rows: list[Row], on_flushed: OnFlushed | None = None) -> None:
        """Buffer ``rows``; ``on_flushed`` runs once they are committed."""
        self._rows.extend(rows)
        if on_flushed is not None:
            self._acks.append(on_flushed)
        if len(self._rows) >= self.max_rows:
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            rows, acks = self._rows, self._acks
            if not rows and not acks:
                return
            self._rows, self._acks = [], []
            started = time.perf_counter()
            try:
                if rows:
                    async with self.engine.begin() as conn:
                        await conn.exec_driver_sql(self._statement, rows)
            except Exception:
                # Keep them for the next attempt; their messages stay unacked meanwhile.
                self._rows[:0], self._acks[:0] = rows, acks
                log.exception("telemetry.flush_failed", rows=len(rows))
                raise
            self.flush_seconds += time.perf_counter() - started
            self.rows_written += len(rows)
            self.flushes += 1
        for ack in acks:
            await ack()
