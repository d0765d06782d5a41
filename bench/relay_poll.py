"""Relay manager polling cost: 64 plugs on 16 emulated Shelly Pro 4PMs over real HTTP.

The emulators run in a separate process (as real devices would be elsewhere), so the CPU
measured here is the relay manager's alone: drivers, protobuf, gzip and the bus publish.
Prints how long one poll of all 64 plugs takes and the share of one core used polling every
second, then one JSON line of its figures.

Usage: python bench/relay_poll.py [--devices 16] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time

from evplug.bus.memory import MemoryBus
from evplug.clock import SystemClock
from evplug.devices.emulators.runner import start_emulator
from evplug.devices.registry import create_driver
from evplug.relay.manager import DeviceSpec, RelayManager


def serve_emulators(count: int, ports: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    async def main() -> None:
        emulators = [await start_emulator("shelly-pro4pm") for _ in range(count)]
        for emulator in emulators:
            ports.put(emulator.url)
        await asyncio.to_thread(stop.wait)
        for emulator in emulators:
            await emulator.stop()

    asyncio.run(main())


async def measure(urls: list[str], seconds: float) -> dict[str, float]:
    clock = SystemClock()
    specs = [DeviceSpec(create_driver("shelly_rpc", url)) for url in urls]
    relay = RelayManager("bench", MemoryBus(clock), specs, clock, poll_interval_s=1.0)
    await relay.connect()
    plugs = len(relay.channels)
    for _ in range(3):  # warm the connection pools
        await relay.poll_once()

    durations = []
    for _ in range(20):
        started = time.perf_counter()
        chunks = await relay.poll_once()
        durations.append(time.perf_counter() - started)
        assert sum(len(chunk.readings) for chunk in chunks) == plugs

    # The real loop, every second, as on a site: CPU time over wall time.
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline = wall0 + seconds
    polls = 0
    while time.perf_counter() < deadline:
        tick = time.perf_counter()
        await relay.poll_once()
        polls += 1
        await asyncio.sleep(max(1.0 - (time.perf_counter() - tick), 0))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await relay.stop()
    return {
        "plugs": plugs,
        "poll_ms_median": statistics.median(durations) * 1000,
        "poll_ms_max": max(durations) * 1000,
        "cpu_share_of_one_core": cpu / wall,
        "polls": polls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    ports: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=serve_emulators, args=(args.devices, ports, stop))
    server.start()
    try:
        urls = [ports.get(timeout=30) for _ in range(args.devices)]
        print(f"{args.devices} emulated Pro 4PMs up; polling for {args.seconds:g} s...", flush=True)
        figures = asyncio.run(measure(urls, args.seconds))
    finally:
        stop.set()
        server.join(timeout=10)
    print(
        f"one poll of {figures['plugs']} plugs: median {figures['poll_ms_median']:.1f} ms,"
        f" max {figures['poll_ms_max']:.1f} ms"
    )
    print(
        f"polling every second: {figures['cpu_share_of_one_core']:.1%} of one core (target < 10%)"
    )
    print(json.dumps({"benchmark": "relay_poll", **{k: round(v, 4) for k, v in figures.items()}}))


if __name__ == "__main__":
    main()
