"""Command latency through a real broker: a driver's Enable until the relay has switched.

The demo system (mothership, relay manager, simulated plugs, SQLite) on ``bus_url`` of a
nats-server started here on loopback. Each round: the driver presses Enable (the mothership
admits the session and publishes the command on ``commands.<site>``; the relay manager takes it
from the broker and switches the plug), then Disable, and waits for the plug to be idle again.
Measured: from the Enable call until the plug's relay switched on, in real seconds.

Usage: python bench/latency.py [--commands 1000] [--speed 60]
Ends with one JSON line of its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from evplug import logs
from evplug.bus.broker import free_port, start_broker
from evplug.core.plug import Prompt, State
from evplug.demo import DEMO_DRIVER, DemoOptions, build
from evplug.devices.simulated import SimulatedDevice
from evplug.settings import Settings


def record_switches(device: SimulatedDevice, on_switched: list[float]) -> None:
    """Note the real time at which the relay is switched on."""
    switch = device.switch

    async def switch_and_note(channel: int, on: bool) -> str:
        actual = await switch(channel, on)
        if on:
            on_switched.append(time.perf_counter())
        return actual

    device.switch = switch_and_note  # type: ignore[method-assign]


async def wait_until(check: object, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():  # type: ignore[operator]  # noqa: ASYNC110 - polls the system's state
            await asyncio.sleep(0.001)


async def measure(
    url: str, credentials: Path | None, data_dir: Path, commands: int, speed: float
) -> list[float]:
    # Rounds follow one another on one circuit faster than its stagger between switch-ons (3 s
    # of demo time): with it, each Enable would wait out the stagger, not the bus.
    settings = Settings(
        data_dir=data_dir, bus_url=url, bus_credentials=credentials, load={"stagger_s": 0.0}
    )
    system = await build(settings, DemoOptions(plugs=1, speed=speed, car_need_wh=1_000_000.0))
    switched: list[float] = []
    record_switches(system.simulated[0], switched)
    await system.start()
    try:
        plug = system.mothership.plug(min(system.relay.channels))
        latencies = []
        for _ in range(commands):
            await wait_until(lambda: plug.state is State.ACCOUNT_NULL)
            before = len(switched)
            started = time.perf_counter()
            await system.mothership.choose(plug.plug_id, Prompt.ENABLE_SOCKET, DEMO_DRIVER)
            await wait_until(lambda: len(switched) > before)  # noqa: B023 - awaited at once
            latencies.append(switched[-1] - started)
            await wait_until(lambda: Prompt.DISABLE_SOCKET in plug.prompts)
            await system.mothership.choose(plug.plug_id, Prompt.DISABLE_SOCKET, DEMO_DRIVER)
        return latencies
    finally:
        await system.stop()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--speed", type=float, default=60.0, help="the demo clock's speed")
    parser.add_argument(
        "--transport", choices=["nats", "memory"], default="nats", help="memory: the baseline"
    )
    args = parser.parse_args()
    logs.configure("warning")
    with tempfile.TemporaryDirectory() as tmp:
        if args.transport == "memory":
            latencies = asyncio.run(
                measure("memory://", None, Path(tmp), args.commands, args.speed)
            )
        else:
            broker = start_broker("127.0.0.1", free_port(), Path(tmp) / "broker")
            try:
                latencies = asyncio.run(
                    measure(broker.url, broker.credentials(), Path(tmp), args.commands, args.speed)
                )
            finally:
                broker.stop()
    ms = [s * 1000 for s in latencies]
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    print(f"Enable -> relay on, {args.transport} bus, {len(ms)} commands:")
    print(f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(ms):.2f} ms")
    print(
        json.dumps(
            {
                "bench": "enable_to_relay_on",
                "transport": args.transport,
                "commands": len(ms),
                "p50_ms": round(p50, 3),
                "p99_ms": round(p99, 3),
                "mean_ms": round(statistics.fmean(ms), 3),
                "max_ms": round(max(ms), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
