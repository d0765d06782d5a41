"""Telemetry throughput through a real broker: a relay's outbox to the SQLite telemetry store.

A nats-server on loopback per chunk size. The relay side is a process of its own (as deployed):
a ``RelayManager`` whose outbox holds every chunk, sent by its ``send_pending`` (a window of
publishes in flight, each chunk deleted once it and all before it are acked). The mothership
side is this process: its telemetry handler on a durable pull subscription -- unpack, route,
step each CHARGING plug, batched SQLite write, ack after the flush. Measured: from the relay's
first publish until every reading is written to the store (the last batch flushed as soon as its
chunk is handled, as in process); then the store's rows are counted. Compared with
``bench/ingest.py``'s in-process end to end (the same handler fed directly, 64-reading chunks)
measured in the same run. Both are the best of ``--repeat`` runs, the same statistic on each
side, since other work on the machine only ever slows a run down.

The relay's outbox is in memory here: on disk it syncs every removal, which measures the disk.

Usage: python bench/broker_ingest.py [--plugs 50000] [--rounds 2] [--sizes 64,4] [--repeat 3]
Ends with one JSON line of its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from ingest import (
    INGESTED,
    SITE,
    WRITTEN,
    SqliteStores,
    charging_plug,
    end_to_end,
    make_chunks,
    open_store,
    plug_ids,
)

from evplug import logs, metrics
from evplug.bus.broker import Broker, free_port, start_broker
from evplug.bus.nats import connect_nats
from evplug.clock import FakeClock, SystemClock
from evplug.contracts import subjects
from evplug.mothership.runtime import Mothership
from evplug.relay.manager import RelayManager
from evplug.store.database import make_engine
from evplug.store.repository import Repository
from evplug.store.telemetry import ReadingSink

SENDING = "sending"


async def publish(url: str, credentials: Path, chunks: list[bytes]) -> None:
    """The relay side: every chunk into the outbox, then sent as the relay sends it."""
    bus = await connect_nats(url, credentials=credentials)
    relay = RelayManager(SITE, bus, [], SystemClock())
    subject = subjects.for_site(subjects.TELEMETRY, SITE)
    relay.outbox.put([(subject, f"{SITE}:{n}", data) for n, data in enumerate(chunks, 1)])
    print(SENDING, flush=True)
    started = time.perf_counter()
    assert await relay.send_pending(), "the broker refused a chunk"
    assert len(relay.outbox) == 0, "a chunk was left in the outbox"
    print(f"sent {len(chunks)} chunks in {time.perf_counter() - started:.2f} s", flush=True)
    await bus.close()


async def through_broker(
    broker: Broker, args: argparse.Namespace, size: int, directory: Path
) -> float:
    """Readings per second from the relay process's first publish until all are in the store."""
    ids = plug_ids(args.plugs)
    total = args.plugs * args.rounds
    stores = SqliteStores(directory)
    await stores.prepare(ids, 0)
    engine = make_engine(stores.empty())
    repo, sink = Repository(engine), ReadingSink(engine)
    bus = await connect_nats(broker.url, credentials=broker.credentials())
    clock = FakeClock()
    mothership = Mothership(bus, repo, sink, clock)
    for plug_id in ids:
        mothership.registry.add(charging_plug(plug_id), SITE)
    subscription = await bus.subscribe(
        subjects.all_sites(subjects.TELEMETRY),
        "bench-telemetry",
        mothership.handlers.on_telemetry,
        max_ack_pending=10_000,
    )

    async def flush_every_delay() -> None:
        while True:
            await asyncio.sleep(sink.max_delay_s)
            await sink.flush()

    flusher = asyncio.create_task(flush_every_delay())
    ingested0, written0 = metrics.value(INGESTED), metrics.value(WRITTEN)
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
        started = time.perf_counter()
        async with asyncio.timeout(600):
            while metrics.value(INGESTED) - ingested0 < total:  # noqa: ASYNC110 - polls a counter
                await asyncio.sleep(0.01)
        # The last batch is written now rather than after the sink's delay, as in process.
        await sink.flush()
        elapsed = time.perf_counter() - started
        print(f"  relay process: {(await relay.stdout.readline()).decode().strip()}", flush=True)
        assert await relay.wait() == 0, "the relay process failed"
    finally:
        if relay.returncode is None:
            relay.kill()
            await relay.wait()
        flusher.cancel()
        await subscription.stop()
        await bus.close()
    stored = await readings_stored(repo)
    await repo.engine.dispose()
    assert stored == total, f"{stored} readings in the store, not {total}"
    assert metrics.value(WRITTEN) - written0 == total, "a reading was written twice"
    return total / elapsed


async def readings_stored(repo: Repository) -> int:
    async with repo.engine.connect() as db:
        return (await db.exec_driver_sql("SELECT count(*) FROM readings")).scalar_one()


async def in_process(ids: list[str], chunks: list[bytes]) -> float:
    with tempfile.TemporaryDirectory(prefix="evplug-bench-") as tmp:
        stores = SqliteStores(Path(tmp))
        await stores.prepare(ids, 0)
        async with open_store(stores, aged=False) as store:
            return await end_to_end(ids, chunks, store)


def through_a_broker(args: argparse.Namespace, size: int) -> float:
    """One run on a broker of its own: the relay's message ids repeat from run to run."""
    with tempfile.TemporaryDirectory(prefix="evplug-bench-") as tmp:
        broker = start_broker("127.0.0.1", free_port(), Path(tmp) / "broker")
        try:
            return asyncio.run(through_broker(broker, args, size, Path(tmp)))
        finally:
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
        chunks = make_chunks(plug_ids(args.plugs), args.rounds, sizes[0])
        asyncio.run(publish(args.publish, args.credentials, chunks))
        return

    readings = args.plugs * args.rounds
    print(f"{readings:,} readings, load average {os.getloadavg()[0]:.2f}", flush=True)
    ids = plug_ids(args.plugs)
    chunks = make_chunks(ids, args.rounds)
    # Taken in turns, so that a busy spell on the machine slows both sides alike.
    base_runs: list[float] = []
    runs: dict[int, list[float]] = {size: [] for size in sizes}
    for run in range(1, args.repeat + 1):
        base_runs.append(asyncio.run(in_process(ids, chunks)))
        line = f"run {run}/{args.repeat}: in process {base_runs[-1]:,.0f}"
        for size in sizes:
            runs[size].append(through_a_broker(args, size))
            line += f", broker {size}-reading chunks {runs[size][-1]:,.0f}"
        print(f"{line} readings/s", flush=True)
    base = max(base_runs)
    rates = {size: max(rates) for size, rates in runs.items()}
    print(f"in process, 64-reading chunks: {base:,.0f} readings/s (best of {args.repeat})")
    for size, rate in rates.items():
        print(
            f"through the broker, {size}-reading chunks: {rate:,.0f} readings/s"
            f" ({rate / base:.2f} of in process)"
        )
    load = os.getloadavg()
    if 64 in rates:
        print("targets: >= 150,000 readings/s with 64-reading chunks, >= 0.8 of in process")
    print(
        json.dumps(
            {
                "benchmark": "broker_ingest",
                "readings": readings,
                "in_process_readings_per_s": round(base),
                **{f"broker_{s}_readings_per_s": round(r) for s, r in rates.items()},
                **{f"broker_{s}_ratio": round(r / base, 3) for s, r in rates.items()},
                "load_average_1m": round(load[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
