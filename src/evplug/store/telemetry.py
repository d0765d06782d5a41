"""The telemetry sink: readings written in batches, each batch's acks released after it commits.

Like the original's InfluxDB writer: a bus message is acked only once its readings are on disk,
so a crash between receipt and write means redelivery, never a lost reading. Repeated readings
(a redelivered chunk) are ignored by the (timestamp_ms, plug_id) key. Each batch marks the
minutes it wrote for their rollups (``rollups``), in the same transaction.

On PostgreSQL a batch is COPYed straight into its day's partition (made here when missing); a
batch that repeats a stored reading fails the COPY and goes again through a staging table with
ON CONFLICT. On SQLite it is a plain INSERT of many rows at a time (``sql.write_rows``). A full
buffer is written in the background while the next one fills; on PostgreSQL up to ``writers`` of
them at once, each on its own connection, so one batch's commit waits for the disk while the
next is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from evplug import metrics
from evplug.settings import TelemetrySettings
from evplug.store import partitions
from evplug.store.database import sqlite_turn
from evplug.store.rollups import MARK, MINUTE_MS
from evplug.store.sql import insert_new_rows, write_rows

log = structlog.get_logger(__name__)
_DEFAULTS = TelemetrySettings()  # the settings hold each default once

Row = tuple[Any, ...]  # values in the order of COLUMNS
OnFlushed = Callable[[], Awaitable[None]]
OnWritten = Callable[[list[Row]], None]
Batch = tuple[list[Row], OnFlushed | None]

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


class SinkFull(RuntimeError):
    """The buffer cannot take these readings now: the message should come back later."""


_REFUSED_BACKLOG = metrics.TELEMETRY_REFUSED.labels(reason="backlog")
_REFUSED_OVERSIZE = metrics.TELEMETRY_REFUSED.labels(reason="oversize_batch")
_STAGING = "readings_incoming"
_INSERT = insert_new_rows("readings", COLUMNS)


class ReadingSink:
    def __init__(
        self,
        engine: AsyncEngine,
        max_rows: int = _DEFAULTS.batch_rows,
        max_delay_s: float = _DEFAULTS.batch_delay_s,
        max_buffered_rows: int = _DEFAULTS.max_buffered_rows,
        on_written: OnWritten | None = None,
        writers: int = _DEFAULTS.writers,
    ) -> None:
        """``on_written`` is handed each batch once committed (the InfluxDB export); it must
        not block. Up to ``writers`` full batches are written at once on PostgreSQL; SQLite,
        one writer, takes one at a time."""
        self.engine = engine
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self.max_buffered_rows = max_buffered_rows
        self._waits_past = max(max_rows, max_buffered_rows // 2)  # see _write_behind
        # One batch per bus message: a redelivered message replaces its batch, never adds to it.
        self._batches: dict[object, Batch] = {}
        self._buffered = 0
        self._unkeyed = itertools.count()
        # SQLite, the one writer: held while a batch is written, and by the upkeep for each of its
        # steps: waiters are served in turn, so a batch waits for one step at most (SQLite's own
        # busy wait would let a step that follows at once go first, again and again).
        self._own_lock = asyncio.Lock()
        self.on_written = on_written
        # Readings before this are past their retention: the upkeep moves it before it prunes.
        self.keep_from_ms = 0
        self._copy = engine.dialect.name == "postgresql"
        self.writers = writers
        self._writing: set[asyncio.Task[None]] = set()  # full batches being written
        self._room = asyncio.Event()  # set when a writer finishes or takes the buffer
        self._commits: set[asyncio.Future[None]] = set()  # one per commit under way
        self._partitions: set[int] = set()  # days known to have their partition
        self._adding_partitions = asyncio.Lock()  # one CREATE of a day at a time

    @property
    def write_lock(self) -> asyncio.Lock:
        """Held while a batch is written (see ``__init__``); on SQLite, the turn every writer of
        this process takes (``database.sqlite_turn``)."""
        return sqlite_turn(self.engine) or self._own_lock

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
        if self._buffered >= self.max_rows and await self._write_behind():
            return
        if self._writing:
            # A backlog of messages is handled without one wait: the writes behind would make
            # no step before the next batch is full. Let them take each step once they can.
            await asyncio.sleep(0)

    async def _write_behind(self) -> bool:
        """Start writing the full buffer in the background, once fewer than ``writers`` are;
        whether it started.

        The next batch fills while the database writes this one (on PostgreSQL other processes,
        on SQLite a thread). With every writer busy the buffer goes on filling, and a writer
        done with its batch takes the next batch's worth at once; ingest waits for one only past
        half of ``max_buffered_rows``, so a write held up (behind a batch of effects on SQLite,
        by a slow disk) never stalls the state machines. Each batch's messages are acked once
        that batch has committed.
        """
        writers = self.writers if self._copy else 1
        while len(self._writing) >= writers and self._buffered >= self._waits_past:
            self._room.clear()
            await self._room.wait()
        if len(self._writing) >= writers or self._buffered < self.max_rows:
            return False  # a writer takes them, or took them already
        self._writing.add(asyncio.create_task(self._write_full()))
        return True

    async def _write_full(self) -> None:
        """Commit the oldest batch's worth of messages while the buffer holds one. (Taken here,
        not when the task is made: until it runs they are the buffer's, for a flush to take.)"""
        try:
            while self._buffered >= self.max_rows:
                await self._commit(self._take(self.max_rows))
        except Exception as exc:
            # Unwritten rows wait for the next flush; committed ones whose acks failed come
            # back from the bus and are ignored as repeats.
            log.warning("telemetry.background_write_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            # Now, not in a done callback a turn later: an add in between would find every
            # writer busy and leave a full buffer to wait for the next one.
            self._writing.discard(asyncio.current_task())  # type: ignore[arg-type]
            self._room.set()

    async def flush(self) -> None:
        """Write everything buffered; when it returns, all rows added before are committed."""
        in_flight = set(self._commits)  # these may hold rows added before
        await self._commit(self._take())
        if in_flight:
            await asyncio.wait(in_flight)
            await self._commit(self._take())  # what failed there is back in the buffer

    def _take(self, rows: int | None = None) -> dict[object, Batch]:
        """The buffered messages' batches: all of them, or the oldest holding ``rows``."""
        if rows is None or rows >= self._buffered:
            taken, self._batches, self._buffered = self._batches, {}, 0
        else:
            keys, count = [], 0
            for key, (batch, _) in self._batches.items():
                if count >= rows:
                    break
                keys.append(key)
                count += len(batch)
            taken = {key: self._batches.pop(key) for key in keys}
            self._buffered -= count
        self._room.set()
        return taken

    async def _commit(self, batches: dict[object, Batch]) -> None:
        if not batches:
            return
        done = asyncio.get_running_loop().create_future()
        self._commits.add(done)
        try:
            await self._commit_now(batches)
        finally:
            self._commits.discard(done)
            done.set_result(None)

    async def _commit_now(self, batches: dict[object, Batch]) -> None:
        rows = self._unexpired([row for batch, _ in batches.values() for row in batch])
        # PostgreSQL's writers and upkeep do not wait for each other (MVCC).
        async with contextlib.nullcontext() if self._copy else self.write_lock:
            try:
                if rows:
                    await self._write(rows)
            except Exception:
                # Keep them for the next attempt; their messages stay unacked meanwhile. A
                # redelivery buffered since replaces its batch.
                self._batches = batches | self._batches
                self._buffered = sum(len(batch) for batch, _ in self._batches.values())
                log.exception("telemetry.flush_failed", rows=len(rows))
                raise
            metrics.TELEMETRY_ROWS_WRITTEN.inc(len(rows))
            metrics.TELEMETRY_FLUSHES.inc()
        if rows and self.on_written is not None:
            self.on_written(rows)
        acks = [ack for _, ack in batches.values() if ack is not None]
        # All in flight together: one round trip to the broker per batch, not one per message.
        # A failed ack leaves its message to come back (a repeat, ignored); the others still go.
        results = await asyncio.gather(*(ack() for ack in acks), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _unexpired(self, rows: list[Row]) -> list[Row]:
        keep_from = self.keep_from_ms
        kept = [row for row in rows if row[1] >= keep_from]
        if len(kept) < len(rows):
            # Their minutes' rollups are final and their raw days gone: writing them would
            # bring a pruned day back.
            metrics.TELEMETRY_EXPIRED.inc(len(rows) - len(kept))
            log.warning(
                "telemetry.expired_readings",
                readings=len(rows) - len(kept),
                older_than_ms=keep_from,
                fix="raise telemetry.raw_retention_days to keep readings that arrive this late",
            )
        return kept

    async def _write(self, rows: list[Row]) -> None:
        minutes = sorted({row[1] // MINUTE_MS * MINUTE_MS for row in rows})
        marks = [(minute,) for minute in minutes]
        if not self._copy:
            async with self.engine.begin() as conn:
                await write_rows(conn, MARK, marks)
                await write_rows(conn, _INSERT, rows)
            return
        days = _by_day(rows, minutes)
        await self._add_partitions(set(days))
        try:
            async with self.engine.begin() as conn:
                await write_rows(conn, MARK, marks)
                for day, of_day in days.items():
                    # Straight into the day's table: the server routes no row.
                    await _copy(conn, of_day, partitions.name(day))
        except asyncpg.UniqueViolationError:
            # A repeat (a redelivered chunk): COPY has no ON CONFLICT, a staging table has.
            async with self.engine.begin() as conn:
                await write_rows(conn, MARK, marks)
                await conn.exec_driver_sql(
                    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (LIKE readings)"
                    " ON COMMIT DELETE ROWS"
                )
                await _copy(conn, rows, _STAGING)
                names = ", ".join(COLUMNS)
                await conn.exec_driver_sql(
                    f"INSERT INTO readings ({names}) SELECT {names} FROM {_STAGING}"
                    " ON CONFLICT DO NOTHING"
                )

    async def _add_partitions(self, days: set[int]) -> None:
        if days <= self._partitions:
            return
        async with self._adding_partitions:  # two writers making one day would collide
            missing = days - self._partitions
            if missing:
                async with self.engine.begin() as conn:
                    await partitions.create(conn, missing)
                self._partitions |= missing


def _by_day(rows: list[Row], minutes: list[int]) -> dict[int, list[Row]]:
    """The rows by their day (their partition); ``minutes``, sorted, are the rows' minutes."""
    first, last = partitions.day_of(minutes[0]), partitions.day_of(minutes[-1])
    if first == last:  # all but the batches that straddle midnight
        return {first: rows}
    days: dict[int, list[Row]] = {}
    for row in rows:
        days.setdefault(partitions.day_of(row[1]), []).append(row)
    return days


async def _copy(conn: AsyncConnection, rows: list[Row], table: str) -> None:
    """COPY (binary) in the connection's transaction."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert isinstance(raw, asyncpg.Connection)
    await raw.copy_records_to_table(table, records=rows, columns=COLUMNS)
