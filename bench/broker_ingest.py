"""Telemetry throughput through a real broker: a relay's outbox to the telemetry store.

A nats-server on loopback per chunk size. The relay side is a process of its own (as deployed):
a ``RelayManager`` whose outbox holds every chunk, sent by its ``send_pending`` (a window of
publishes in flight, each chunk deleted once it and all before it are acked). The mothership
side is this process: its telemetry handler on a durable pull subscription -- unpack, route,
step each CHARGING plug, batched SQLite write, ack after the flush. Measured: from the relay's
first publish until every reading is written to the store (the last batch flushed as soon as its
chunk is handled, as in process); then the store's rows are counted. Compared with
``bench/ingest.py``'s in-process end to end (the same handler fed directly, 64-reading chunks)
measured in the same run. Each side's mothership has had a round of readings first, untimed
(``bench_mothership``). The runs take turns, so a busy spell on the machine slows both sides;
the figures are medians of ``--repeat`` runs, the ratio the median of each run's own.
Beside each rate, the CPU time per reading of each process (the mothership, the relay, the
nats-server) and the share of a core the mothership used: the processes share the machine's
cores, so a share well under 1 means the mothership waited (for the broker, the relay, or a
core busy with other work), near 1 that its own CPU time is what limits the rate.

The relay's outbox is in memory here: on disk it syncs every removal, which measures the disk.
The store is SQLite (the embedded default) or, with ``--store postgresql``, a PostgreSQL server
on the same machine (what a deployment with a broker runs); both sides use the same one.

Usage: python bench/broker_ingest.py [--store sqlite] [--plugs 50000] [--rounds 2]
       [--sizes 64,4] [--repeat 3]
Ends with one JSON line of its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ingest import (
    INGESTED,
    SITE,
    WRITTEN,
    PostgresStores,
    Rate,
    SqliteStores,
    bench_mothership,
    end_to_end,
    make_chunks,
    open_store,
    plug_ids,
    stores_for,
)

from evplug import logs, metrics
from evplug.bus.broker import Broker, free_port, start_broker
from evplug.bus.nats import connect_nats
from evplug.clock import SystemClock
from evplug.contracts import subjects
from evplug.relay.manager import RelayManager
from evplug.store.database import make_engine
from evplug.store.repository import Repository
from evplug.store.telemetry import ReadingSink

SENDING = "sending"
DURABLE = "bench-telemetry"
REDELIVERED = "evplug_bus_redeliveries_total"


async def publish(url: str, credentials: Path, chunks: list[bytes]) -> None:
    """The relay side: every chunk into the outbox, then sent as the relay sends it."""
    bus = await connect_nats(url, credentials=credentials)
    relay = RelayManager(SITE, bus, [], SystemClock())
    subject = subjects.for_site(subjects.TELEMETRY, SITE)
    relay.outbox.put([(subject, f"{SITE}:{n}", data) for n, data in enumerate(chunks, 1)])
    print(SENDING, flush=True)
    started, cpu = time.perf_counter(), time.process_time()
    assert await relay.send_pending(), "the broker refused a chunk"
    assert len(relay.outbox) == 0, "a chunk was left in the outbox"
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"{wall} {cpu}", flush=True)
    await bus.close()


@dataclass(frozen=True, slots=True)
class BrokerRun:
    """A run through the broker: the mothership's rate and CPU, and the other processes' CPU
    time per reading (the relay's from its first publish to its last ack)."""

    mothership: Rate
    relay_us: float
    broker_us: float
    redelivered: int  # chunks whose ack wait ran out: the mothership fell that far behind


def cpu_s(pid: int) -> float:
    """The CPU time (user and system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Stores = SqliteStores | PostgresStores


async def through_broker(
    broker: Broker, args: argparse.Namespace, size: int, stores: Stores
) -> BrokerRun:
    """Readings per second from the relay process's first publish until all are in the store."""
    ids = plug_ids(args.plugs)
    total = args.plugs * args.rounds
    url = stores.empty()
    engine = make_engine(url)
    repo, sink = Repository(engine), ReadingSink(engine)
    bus = await connect_nats(broker.url, credentials=broker.credentials())
    mothership = await bench_mothership(ids, make_chunks(ids, 1), (repo, sink), bus)
    subscription = await bus.subscribe(
        subjects.all_sites(subjects.TELEMETRY),
        DURABLE,
        mothership.handlers.on_telemetry,
        max_ack_pending=10_000,
    )

    async def flush_every_delay() -> None:
        while True:
            await asyncio.sleep(sink.max_delay_s)
            await sink.flush()

    flusher = asyncio.create_task(flush_every_delay())
    ingested0, written0 = metrics.value(INGESTED), metrics.value(WRITTEN)
    redelivered0 = metrics.value(REDELIVERED, durable=DURABLE)
    relay = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--publish",
        broker.url,
        f"--credentials={broker.credentials()}",
        f"--plugs={args.plugs}",
        f"--rounds={args.rounds}",
        f"--sizes={size}",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert relay.stdout is not None
        line = await relay.stdout.readline()
        assert line.decode().strip() == SENDING, f"the relay process wrote {line!r}"
        started, cpu, broker_cpu = (
            time.perf_counter(),
            time.process_time(),
            cpu_s(broker.process.pid),
        )
        async with asyncio.timeout(600):
            while metrics.value(INGESTED) - ingested0 < total:  # noqa: ASYNC110 - polls a counter
                await asyncio.sleep(0.01)
            # The last batch is written now rather than after the sink's delay, as in process.
            await sink.flush()
            # A chunk redelivered (its ack wait ran out) counts as ingested again, its repeats
            # ignored by the store: then the store itself tells when every reading is in.
            while await readings_stored(repo) - args.plugs < total:
                await asyncio.sleep(0.01)
                await sink.flush()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        broker_cpu = cpu_s(broker.process.pid) - broker_cpu
        _, relay_cpu = map(float, (await relay.stdout.readline()).split())
        assert await relay.wait() == 0, "the relay process failed"
    finally:
        if relay.returncode is None:
            relay.kill()
            await relay.wait()
        flusher.cancel()
        await subscription.stop()
        await bus.close()
    stored = await readings_stored(repo) - args.plugs  # less the warm-up round
    await repo.engine.dispose()
    stores.drop(url)
    assert stored == total, f"{stored} readings in the store, not {total}"
    redelivered = metrics.value(REDELIVERED, durable=DURABLE) - redelivered0
    assert redelivered or metrics.value(WRITTEN) - written0 == total, "a reading written twice"
    return BrokerRun(
        Rate(total / elapsed, cpu / elapsed),
        relay_cpu / total * 1e6,
        broker_cpu / total * 1e6,
        round(redelivered),
    )


async def readings_stored(repo: Repository) -> int:
    async with repo.engine.connect() as db:
        return (await db.exec_driver_sql("SELECT count(*) FROM readings")).scalar_one()


async def in_process(ids: list[str], chunks: list[bytes], stores: Stores) -> Rate:
    async with open_store(stores, aged=False) as store:
        return await end_to_end(ids, make_chunks(ids, 1), chunks, store)


async def through_a_broker(args: argparse.Namespace, size: int, stores: Stores) -> BrokerRun:
    """One run on a broker of its own: the relay's message ids repeat from run to run."""
    with tempfile.TemporaryDirectory(prefix="evplug-bench-") as tmp:
        broker = start_broker("127.0.0.1", free_port(), Path(tmp) / "broker")
        try:
            return await through_broker(broker, args, size, stores)
        finally:
            broker.stop()


async def measure(
    args: argparse.Namespace, sizes: list[int]
) -> tuple[list[Rate], dict[int, list[BrokerRun]]]:
    """Each run in process, then through a broker for each size, on copies of one store."""
    ids = plug_ids(args.plugs)
    chunks = make_chunks(ids, args.rounds, first=1)
    base_runs: list[Rate] = []
    runs: dict[int, list[BrokerRun]] = {size: [] for size in sizes}
    with tempfile.TemporaryDirectory(prefix="evplug-bench-") as tmp:
        async with stores_for(args.store, Path(tmp)) as stores:
            await stores.prepare(ids, 0)
            # Taken in turns, so that a busy spell on the machine slows both sides alike.
            for run in range(1, args.repeat + 1):
                base_runs.append(await in_process(ids, chunks, stores))
                print(f"run {run}/{args.repeat}: in process {_rate(base_runs[-1])}", flush=True)
                for size in sizes:
                    runs[size].append(await through_a_broker(args, size, stores))
                    print(
                        f"  broker, {size}-reading chunks: {_broker_rate(runs[size][-1])}",
                        flush=True,
                    )
    return base_runs, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--plugs", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2, help="readings per plug")
    parser.add_argument("--sizes", default="64,4", help="readings per chunk, comma separated")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs of each")
    parser.add_argument("--publish", metavar="URL", help=argparse.SUPPRESS)  # the relay process
    parser.add_argument("--credentials", type=Path, help=argparse.SUPPRESS)  # and its broker user
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    logs.configure("warning")
    if args.publish:
        chunks = make_chunks(plug_ids(args.plugs), args.rounds, sizes[0], first=1)
        asyncio.run(publish(args.publish, args.credentials, chunks))
        return

    readings = args.plugs * args.rounds
    print(
        f"{readings:,} readings into {args.store}, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    base_runs, runs = asyncio.run(measure(args, sizes))
    base = statistics.median(r.per_s for r in base_runs)
    print(f"medians of {args.repeat} runs")
    print(f"in process, 64-reading chunks: {base:,.0f} readings/s")
    figures: dict[str, float] = {}
    for size, size_runs in runs.items():
        rate = statistics.median(r.mothership.per_s for r in size_runs)
        # Each run's own ratio: its in-process run was taken next to it, on the same machine.
        ratio = statistics.median(
            r.mothership.per_s / b.per_s for r, b in zip(size_runs, base_runs, strict=True)
        )
        print(
            f"through the broker, {size}-reading chunks: {rate:,.0f} readings/s"
            f" ({ratio:.2f} of in process)"
        )
        figures |= {
            f"broker_{size}_readings_per_s": round(rate),
            f"broker_{size}_ratio": round(ratio, 3),
            f"broker_{size}_mothership_cpu_share": round(
                statistics.median(r.mothership.cpu_share for r in size_runs), 2
            ),
            f"broker_{size}_cpu_us_per_reading": {
                "mothership": round(statistics.median(r.mothership.cpu_us for r in size_runs), 2),
                "relay": round(statistics.median(r.relay_us for r in size_runs), 2),
                "broker": round(statistics.median(r.broker_us for r in size_runs), 2),
            },
        }
    load = os.getloadavg()
    if 64 in runs:
        print("targets: >= 150,000 readings/s with 64-reading chunks, >= 0.8 of in process")
    print(
        json.dumps(
            {
                "benchmark": "broker_ingest",
                "store": args.store,
                "readings": readings,
                "runs": args.repeat,
                "in_process_readings_per_s": round(base),
                "in_process_cpu_share": round(statistics.median(r.cpu_share for r in base_runs), 2),
                "in_process_cpu_us_per_reading": round(
                    statistics.median(r.cpu_us for r in base_runs), 2
                ),
                **figures,
                "load_average_1m": round(load[0], 2),
            }
        )
    )


def _rate(rate: Rate) -> str:
    return (
        f"{rate.per_s:,.0f} readings/s, {rate.cpu_share:.0%} of a core,"
        f" {rate.cpu_us:.2f} µs CPU per reading"
    )


def _broker_rate(run: BrokerRun) -> str:
    return (
        f"{_rate(run.mothership)} in the mothership; relay {run.relay_us:.2f} µs,"
        f" nats-server {run.broker_us:.2f} µs; {run.redelivered} chunks redelivered"
    )


if __name__ == "__main__":
    main()
