"""The telemetry sink: readings written in batches, each batch's acks released after it commits.

Like the original's InfluxDB writer: a bus message is acked only once its readings are on disk,
so a crash between receipt and write means redelivery, never a lost reading. Repeated readings
(a redelivered chunk) are ignored by the (plug_id, timestamp_ms) key.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from evplug import metrics
from evplug.settings import TelemetrySettings

log = structlog.get_logger(__name__)
_DEFAULTS = TelemetrySettings()  # the settings hold each default once

Row = tuple[Any, ...]  # values in the order of COLUMNS
OnFlushed = Callable[[], Awaitable[None]]

COLUMNS = (
    "plug_id",
    "timestamp_ms",
    "actual_state",
    "current_a",
    "voltage_v",
    "power_factor",
    "active_power_w",
    "energy_wh",
)
_PLACEHOLDERS = {  # the drivers' own parameter styles: the rows go to them as they are
    "qmark": lambda n: "?",
    "numeric_dollar": lambda n: f"${n}",
}


class SinkFull(RuntimeError):
    """The buffer cannot take these readings now: the message should come back later."""


_REFUSED_BACKLOG = metrics.TELEMETRY_REFUSED.labels(reason="backlog")
_REFUSED_OVERSIZE = metrics.TELEMETRY_REFUSED.labels(reason="oversize_batch")


class ReadingSink:
    def __init__(
        self,
        engine: AsyncEngine,
        max_rows: int = _DEFAULTS.batch_rows,
        max_delay_s: float = _DEFAULTS.batch_delay_s,
        max_buffered_rows: int = _DEFAULTS.max_buffered_rows,
    ) -> None:
        self.engine = engine
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self.max_buffered_rows = max_buffered_rows
        # One batch per bus message: a redelivered message replaces its batch, never adds to it.
        self._batches: dict[object, tuple[list[Row], OnFlushed | None]] = {}
        self._buffered = 0
        self._unkeyed = itertools.count()
        self._lock = asyncio.Lock()
        self._statement = _insert_statement(engine.dialect.paramstyle)

    @property
    def buffered(self) -> int:
        return self._buffered

    async def add(
        self, rows: list[Row], on_flushed: OnFlushed | None = None, key: object = None
    ) -> None:
        """Buffer ``rows``; ``on_flushed`` runs once they are committed.

        ``key`` names the message they came in (its id); rows added again under the same key
        replace the first ones. Past ``max_buffered_rows`` (the database is down or slow) the
        rows are refused with ``SinkFull``, so the message stays unacked and comes back later.
        """
        if key is None:
            key = next(self._unkeyed)
        previous = self._batches.pop(key, None)
        if previous is not None:
            self._buffered -= len(previous[0])
        if len(rows) > self.max_buffered_rows:
            # Chunks are capped far below the buffer, so this is a bug, not backpressure: the
            # batch could never fit, however long the database takes.
            _REFUSED_OVERSIZE.inc()
            raise SinkFull(
                f"a batch of {len(rows)} readings is larger than the whole buffer"
                f" ({self.max_buffered_rows}) and can never be written: split it (telemetry"
                " chunks are capped at MAX_READINGS_PER_CHUNK) or raise max_buffered_rows"
            )
        if self._buffered + len(rows) > self.max_buffered_rows:
            _REFUSED_BACKLOG.inc()
            raise SinkFull(
                f"{self._buffered} readings already wait to be written (limit"
                f" {self.max_buffered_rows}): the database is behind or unreachable;"
                " these come back once it catches up"
            )
        self._batches[key] = (rows, on_flushed)
        self._buffered += len(rows)
        if self._buffered >= self.max_rows:
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            batches = self._batches
            if not batches:
                return
            self._batches, buffered, self._buffered = {}, self._buffered, 0
            rows = [row for batch, _ in batches.values() for row in batch]
            try:
                if rows:
                    async with self.engine.begin() as conn:
                        await conn.exec_driver_sql(self._statement, rows)
            except Exception:
                # Keep them for the next attempt; their messages stay unacked meanwhile.
                self._batches = batches | self._batches
                self._buffered += buffered
                log.exception("telemetry.flush_failed", rows=len(rows))
                raise
            metrics.TELEMETRY_ROWS_WRITTEN.inc(len(rows))
            metrics.TELEMETRY_FLUSHES.inc()
        acks = [ack for _, ack in batches.values() if ack is not None]
        # All in flight together: one round trip to the broker per batch, not one per message.
        # A failed ack leaves its message to come back (a repeat, ignored); the others still go.
        results = await asyncio.gather(*(ack() for ack in acks), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


def _insert_statement(paramstyle: str) -> str:
    """A raw INSERT (the fast path: no SQL compiled per batch) naming every column it fills."""
    placeholder = _PLACEHOLDERS[paramstyle]
    values = ", ".join(placeholder(n) for n in range(1, len(COLUMNS) + 1))
    return f"INSERT INTO readings ({', '.join(COLUMNS)}) VALUES ({values}) ON CONFLICT DO NOTHING"
