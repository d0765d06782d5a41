"""Telemetry upkeep, run in the background: rollups recomputed, old raw readings pruned, and on
PostgreSQL the day partitions made ahead.

Each step is its own short transaction, and the sink never waits for one: on PostgreSQL pruning
detaches a day's partition CONCURRENTLY (no lock that stops inserts) and drops it; on SQLite, the
one writer, old readings go a few thousand at a time, so a batch waits for one small delete at
most. Before any raw reading goes, the rollups of its minutes are brought up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from evplug import metrics
from evplug.settings import TelemetrySettings
from evplug.store import partitions
from evplug.store.rollups import minute_of, recompute_due
from evplug.store.telemetry import ReadingSink

log = structlog.get_logger(__name__)
_DEFAULTS = TelemetrySettings()
_DAY_MS = partitions.DAY_MS
# Upkeep on one database at a time: two motherships recomputing one minute from different
# snapshots could leave the older result last.
_UPKEEP_LOCK = 0x657670_726F6C  # "evp" "rol"
_ANY_DUE = text("SELECT 1 FROM rollups_due WHERE minute_ms < :before LIMIT 1")
_ANY_OLD = text("SELECT 1 FROM readings WHERE timestamp_ms < :before LIMIT 1")
_LOCK = text(f"SELECT pg_try_advisory_xact_lock({_UPKEEP_LOCK})")
_PRUNE_SQLITE = text(
    "DELETE FROM readings WHERE rowid IN"
    " (SELECT rowid FROM readings WHERE timestamp_ms < :cutoff LIMIT :rows)"
)


@dataclass(frozen=True, slots=True)
class UpkeepConfig:
    retention_ms: int = round(_DEFAULTS.raw_retention_days * _DAY_MS)
    rollup_delay_ms: int = round(_DEFAULTS.rollup_delay_s * 1000)
    prune_step_rows: int = _DEFAULTS.prune_step_rows
    partitions_ahead_days: int = 2
    rollup_step_minutes: int = 5  # minutes recomputed in one transaction
    max_steps: int = 200  # per run, so one run ends (and the mothership can stop) soon


class TelemetryUpkeep:
    def __init__(
        self, engine: AsyncEngine, sink: ReadingSink, config: UpkeepConfig | None = None
    ) -> None:
        self.engine = engine
        self.sink = sink
        self.config = config or UpkeepConfig()
        self._postgres = engine.dialect.name == "postgresql"
        # Rollups of minutes before this are final: their raw readings are (being) pruned.
        self.horizon_ms = 0
        self._pruned = True  # all before the horizon is gone (until the horizon moves)

    @contextlib.asynccontextmanager
    async def _step(self) -> AsyncIterator[AsyncConnection]:
        """One step's transaction; on SQLite in turn with the sink's batches."""
        if self._postgres:  # MVCC: the sink's COPY and the upkeep do not wait for each other
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self.sink.write_lock, self.engine.begin() as conn:
            yield conn

    async def _any(self, query: TextClause, before_ms: int) -> bool:
        """A read outside any step: an idle upkeep never takes the writer's turn."""
        async with self.engine.connect() as conn:
            return (await conn.execute(query, {"before": before_ms})).first() is not None

    async def run(self, now_ms: int) -> None:
        """One round: partitions ahead, prune (rolling up what it prunes first), roll up."""
        await self.add_partitions(now_ms)
        await self.prune(now_ms)
        await self.roll_up(now_ms - self.config.rollup_delay_ms)

    async def roll_up(self, before_ms: int) -> bool:
        """Recompute the marked minutes before ``before_ms``; False if some may remain."""
        for _ in range(self.config.max_steps):
            if not await self._any(_ANY_DUE, before_ms):
                return True
            async with self._step() as conn:
                if self._postgres and not await _upkeep_lock(conn):
                    return False  # another mothership's upkeep is at it: not done here
                done = await recompute_due(
                    conn, before_ms, self.horizon_ms, self.config.rollup_step_minutes
                )
            metrics.TELEMETRY_ROLLUP_MINUTES.inc(done.minutes)
            if done.late:
                metrics.TELEMETRY_ROLLUPS_LATE.inc(done.late)
                log.warning("telemetry.late_rollups", minutes=done.late, before=self.horizon_ms)
            if not done.minutes and not done.late:
                return True
            await asyncio.sleep(0)  # let the sink's batches in between
        return False

    async def prune(self, now_ms: int) -> None:
        """Drop raw readings older than the retention; their rollups are made first."""
        cutoff = self._cutoff(now_ms)
        if cutoff > self.horizon_ms:
            self.sink.keep_from_ms = max(self.sink.keep_from_ms, cutoff)
            if not await self.roll_up(cutoff):
                return  # the rollups before the cutoff take more runs: nothing goes before
            self.horizon_ms, self._pruned = cutoff, False
        if not self._pruned:
            prune = self._drop_partitions if self._postgres else self._delete_rows
            self._pruned = await prune(self.horizon_ms)

    def _cutoff(self, now_ms: int) -> int:
        oldest_kept = now_ms - self.config.retention_ms
        if self._postgres:  # whole days: a partition is dropped once all of it is old enough
            return oldest_kept // _DAY_MS * _DAY_MS
        return minute_of(oldest_kept)

    async def add_partitions(self, now_ms: int) -> None:
        """PostgreSQL: today's partition and the next days' (SQLite has none)."""
        if not self._postgres:
            return
        today = partitions.day_of(now_ms)
        async with self.engine.begin() as conn:
            have = await partitions.existing(conn)
            wanted = set(range(today, today + self.config.partitions_ahead_days + 1))
            if wanted - have.keys():
                await partitions.create(conn, wanted - have.keys())

    async def _drop_partitions(self, cutoff: int) -> bool:
        async with self.engine.connect() as conn:
            old = [
                (day, relname)
                for day, relname in sorted((await partitions.existing(conn)).items())
                if (day + 1) * _DAY_MS <= cutoff
            ]
        for _, relname in old:
            # Outside a transaction: CONCURRENTLY waits for running inserts, never stops them.
            async with self.engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await auto.exec_driver_sql(
                    f"ALTER TABLE readings DETACH PARTITION {relname} CONCURRENTLY"
                )
                await auto.exec_driver_sql(f"DROP TABLE {relname}")
            metrics.TELEMETRY_PRUNED.labels(unit="partitions").inc()
            log.info("telemetry.partition_dropped", partition=relname)
        return True

    async def _delete_rows(self, cutoff: int) -> bool:
        """Delete in steps; False when the run's steps ran out first (the next run goes on)."""
        step = self.config.prune_step_rows
        for _ in range(self.config.max_steps):
            if not await self._any(_ANY_OLD, cutoff):
                return True
            async with self._step() as conn:
                deleted = (
                    await conn.execute(_PRUNE_SQLITE, {"cutoff": cutoff, "rows": step})
                ).rowcount
            metrics.TELEMETRY_PRUNED.labels(unit="rows").inc(deleted)
            if deleted < step:
                return True
            await asyncio.sleep(0)  # a waiting batch goes in before the next step
        return False


async def _upkeep_lock(conn: AsyncConnection) -> bool:
    """PostgreSQL: this transaction's hold on the upkeep, if no other has it."""
    return bool((await conn.execute(_LOCK)).scalar_one())
