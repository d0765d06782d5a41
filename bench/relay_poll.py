"""Relay manager cost and reaction time: 64 plugs on 16 emulated Shelly Pro 4PMs, polled over
HTTP or pushed over WebSocket.

The emulators run in a separate process (as real devices would be elsewhere), so the CPU
measured here is the relay manager's: drivers, protobuf, gzip and the bus publish (plus the few
hook requests that make relays change). Three channels of each device charge a car, so their
meters move and a WebSocket device notifies about them; the fourth is toggled "by hand" through
the emulator's hook, one device after the other, and the time from that change to the manager
publishing the new state is the reaction time. Modes:

- ``poll``: HTTP only (drivers never subscribed), the manager reads every ``--interval`` s;
- ``ws``: the WebSocket push path, with the periodic full check every ``--interval`` s;
- ``ws-slow-check``: the push path with a full check every 10 s.

Prints, per mode, one poll's duration, the reaction time p50 / p99 and the share of one core,
then one JSON line of all figures.

Usage: python bench/relay_poll.py [--devices 16] [--seconds 20] [--modes poll,ws,ws-slow-check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import statistics
import time

import aiohttp

from evplug.bus.base import Message
from evplug.bus.memory import MemoryBus
from evplug.clock import SystemClock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack, unpack
from evplug.core.actual import ActualState
from evplug.devices.base import ChannelReading, DeviceInfo, Driver
from evplug.devices.car import Car
from evplug.devices.emulators.runner import start_emulator
from evplug.devices.registry import create_driver
from evplug.relay.manager import DeviceSpec, RelayManager

SITE = "bench"
TOGGLED = 3  # the channel switched by hand; 0-2 charge
CHANGES_PER_S = 4.0


def serve_emulators(count: int, ports: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    async def main() -> None:
        emulators = [await start_emulator("shelly-pro4pm") for _ in range(count)]
        for emulator in emulators:
            for channel in range(TOGGLED):
                emulator.device.plug_in(channel, Car(need_wh=1e9))
                emulator.device.set_relay(channel, True)
            ports.put(emulator.url)
        await asyncio.to_thread(stop.wait)
        for emulator in emulators:
            await emulator.stop()

    asyncio.run(main())


class Polled:
    """A driver seen without its push path: what every device costs when only polled."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    async def connect(self) -> DeviceInfo:
        return await self.driver.connect()

    async def read(self) -> list[ChannelReading]:
        return await self.driver.read()

    async def switch(self, channel: int, on: bool) -> ActualState:
        return await self.driver.switch(channel, on)

    async def close(self) -> None:
        await self.driver.close()


async def acking(bus: MemoryBus) -> None:
    async def ack(msg: Message) -> None:
        announcement = unpack(msg.data, pb.DeviceAnnouncement)
        reply = pb.DeviceAnnouncementAck(
            site_id=SITE,
            announcement_id=announcement.announcement_id,
            accepted_plug_ids=[d.plug_id for d in announcement.devices],
        )
        await msg.ack()
        await bus.publish(subjects.for_site(subjects.ANNOUNCE_ACK, SITE), pack(reply))

    await bus.subscribe(subjects.all_sites(subjects.ANNOUNCE), "bench-ms", ack)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)]


async def measure(urls: list[str], mode: str, interval_s: float, seconds: float) -> dict:
    clock = SystemClock()
    bus = MemoryBus(clock)
    await acking(bus)
    drivers = [create_driver("shelly_rpc", url) for url in urls]
    specs = [DeviceSpec(d if mode.startswith("ws") else Polled(d)) for d in drivers]
    check_s = 10.0 if mode == "ws-slow-check" else interval_s
    relay = RelayManager(SITE, bus, specs, clock, poll_interval_s=check_s)

    awaited: dict[tuple[str, int], asyncio.Future[float]] = {}

    async def on_chunk(msg: Message) -> None:
        at = time.perf_counter()
        for reading in unpack(msg.data, pb.ReadingChunk).readings:
            future = awaited.pop((reading.plug_id, reading.actual_state), None)
            if future is not None and not future.done():
                future.set_result(at)
        await msg.ack()

    await bus.subscribe(subjects.for_site(subjects.TELEMETRY, SITE), "bench-tel", on_chunk)
    await relay.start()
    if mode.startswith("ws"):
        while not all(d.pushing for d in drivers):  # noqa: ASYNC110 - the sockets open themselves
            await asyncio.sleep(0.05)
    plugs = len(relay.channels)
    toggled = [ch.info.plug_id(TOGGLED) for ch in relay.channels.values() if ch.channel == 0]
    durations = []
    for _ in range(10):
        started = time.perf_counter()
        await relay.poll_once()
        durations.append(time.perf_counter() - started)

    on = {plug: relay.latest[plug].actual_state == ActualState.ON for plug in toggled}
    latencies: list[float] = []

    async def change(hooks: aiohttp.ClientSession, plug_id: str, url: str) -> None:
        on[plug_id] = not on[plug_id]
        state = ActualState.ON if on[plug_id] else ActualState.OFF
        published = awaited[(plug_id, state)] = asyncio.get_running_loop().create_future()
        changed = time.perf_counter()
        async with hooks.post(f"{url}/_emulator/press_button?channel={TOGGLED}") as reply:
            reply.raise_for_status()
        latencies.append(await asyncio.wait_for(published, check_s + 5) - changed)

    # Changes on their own schedule, never in step with the polls: each plug is toggled again
    # only after every other device's, long after its last change was published.
    async with aiohttp.ClientSession() as hooks:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        changes = []
        turn = 0
        while time.perf_counter() < wall0 + seconds:
            device = turn % len(urls)
            changes.append(asyncio.create_task(change(hooks, toggled[device], urls[device])))
            turn += 1
            await asyncio.sleep(random.expovariate(CHANGES_PER_S))
        await asyncio.gather(*changes)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await relay.stop()
    return {
        "mode": mode,
        "plugs": plugs,
        "full_check_s": check_s,
        "poll_ms_median": statistics.median(durations) * 1000,
        "reaction_ms_p50": percentile(latencies, 0.50) * 1000,
        "reaction_ms_p99": percentile(latencies, 0.99) * 1000,
        "changes": len(latencies),
        "chunks_pushed": relay.pushes,
        "cpu_share_of_one_core": cpu / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval (s)")
    parser.add_argument("--modes", default="poll,ws,ws-slow-check")
    args = parser.parse_args()

    ports: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=serve_emulators, args=(args.devices, ports, stop))
    server.start()
    results = []
    try:
        urls = [ports.get(timeout=30) for _ in range(args.devices)]
        for mode in args.modes.split(","):
            print(f"{args.devices} emulated Pro 4PMs, {mode}, {args.seconds:g} s...", flush=True)
            results.append(asyncio.run(measure(urls, mode, args.interval, args.seconds)))
    finally:
        stop.set()
        server.join(timeout=10)
    for r in results:
        print(
            f"{r['mode']:>14} (full check every {r['full_check_s']:g} s):"
            f" one poll of {r['plugs']} plugs {r['poll_ms_median']:.1f} ms;"
            f" change to published p50 {r['reaction_ms_p50']:.0f} ms,"
            f" p99 {r['reaction_ms_p99']:.0f} ms ({r['changes']} changes);"
            f" {r['cpu_share_of_one_core']:.1%} of one core"
        )
    for r in results:
        figures = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
        print(json.dumps({"benchmark": "relay_poll", **figures}))


if __name__ == "__main__":
    main()
