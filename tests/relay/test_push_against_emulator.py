"""The relay manager with the Shelly Gen2+ driver over a real WebSocket to the emulator: changes
published as they happen, and a socket lost mid-session costs no reading and no session."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from evplug.bus.memory import MemoryBus
from evplug.clock import ScaledClock, SystemClock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.demo import DemoOptions, smoke
from evplug.devices.car import Car
from evplug.devices.emulators.runner import RunningEmulator, start_emulator
from evplug.devices.shelly_rpc import ShellyRpcDriver
from evplug.relay.manager import DeviceSpec, RelayManager
from evplug.settings import Settings
from tests.conftest import wait_for
from tests.relay.fakes import SITE, acking_mothership, collect

pytestmark = pytest.mark.integration


@pytest.fixture
async def pro4pm() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator("shelly-pro4pm", password="s3cret")
    yield running
    await running.stop()


async def manager(emulator: RunningEmulator, poll_interval_s: float) -> RelayManager:
    clock = SystemClock()
    bus = MemoryBus(clock)
    await acking_mothership(bus)
    driver = ShellyRpcDriver(emulator.url, password="s3cret")
    relay = RelayManager(SITE, bus, [DeviceSpec(driver)], clock, poll_interval_s=poll_interval_s)
    await relay.start()
    await wait_for(lambda: driver.pushing, timeout_s=5)
    return relay


async def published(chunks: list[pb.ReadingChunk], plug_id: str, state: int, since: int) -> float:
    """Seconds until a chunk after the first ``since`` carries ``plug_id`` in ``state``."""
    started = time.monotonic()
    await wait_for(
        lambda: any(
            r.plug_id == plug_id and r.actual_state == state
            for chunk in chunks[since:]
            for r in chunk.readings
        ),
        timeout_s=5,
    )
    return time.monotonic() - started


async def test_a_trip_and_a_hand_switch_are_published_within_a_second(
    pro4pm: RunningEmulator,
) -> None:
    relay = await manager(pro4pm, poll_interval_s=60)  # one poll at start, then none
    chunks = await collect(relay.bus, subjects.TELEMETRY, pb.ReadingChunk, "tel")
    try:
        plug = f"shelly:{pro4pm.hardware_id}"
        pro4pm.device.set_relay(0, True)
        await published(chunks, f"{plug}:0", pb.ACTUAL_STATE_ON, 0)

        since = len(chunks)
        pro4pm.device.trip_overpower(0)
        assert await published(chunks, f"{plug}:0", pb.ACTUAL_STATE_OVERCURRENT, since) < 1.0

        since = len(chunks)
        pro4pm.device.press_button(3)
        assert await published(chunks, f"{plug}:3", pb.ACTUAL_STATE_ON, since) < 1.0
        assert relay.polls == 1 and relay.pushes >= 3
    finally:
        await relay.stop()


async def test_polling_carries_on_while_the_socket_is_refused(pro4pm: RunningEmulator) -> None:
    relay = await manager(pro4pm, poll_interval_s=0.2)
    try:
        pro4pm.device.websockets_allowed = False
        pro4pm.device.drop_websockets()
        polls = relay.polls
        await wait_for(lambda: relay.polls >= polls + 5, timeout_s=5)
        plug = f"shelly:{pro4pm.hardware_id}:0"
        assert relay.latest[plug].actual_state == pb.ACTUAL_STATE_OFF  # read, not MIA
        assert relay.health.is_mia(pro4pm.hardware_id) is False
    finally:
        await relay.stop()


SPEED = 300.0


@pytest.mark.slow
async def test_a_socket_lost_mid_session_costs_no_reading_and_no_session(
    tmp_path: Path,
) -> None:
    emulator = await start_emulator("shelly-pro4pm", clock=ScaledClock(SPEED))
    try:
        for socket in emulator.sockets:
            socket.car = Car(need_wh=2_000.0)
        config = tmp_path / "site.toml"
        config.write_text(
            f'site_id = "garage-7"\npoll_interval_s = 2\n\n[[devices]]\ndriver = "shelly_rpc"\n'
            f'url = "{emulator.url}"\nfuze_id = "A"\nfuze_limit_a = 32\n'
        )
        options = DemoOptions(speed=SPEED, site_config=config)
        session = asyncio.create_task(smoke(Settings(data_dir=tmp_path / "data"), options, 90))
        channel = emulator.sockets[0]
        await wait_for(lambda: emulator.device.websocket_clients == 1, timeout_s=30)
        await wait_for(lambda: channel.relay_on and channel.energy_wh > 300, timeout_s=40)
        emulator.device.websockets_allowed = False
        emulator.device.drop_websockets()
        await wait_for(lambda: emulator.device.websocket_clients == 0, timeout_s=2)
        dropped_at_wh = channel.energy_wh
        # A good part of the charge with the device polled over HTTP only.
        await wait_for(lambda: channel.energy_wh > dropped_at_wh + 500, timeout_s=20)
        assert channel.relay_on and not session.done()
        emulator.device.websockets_allowed = True
        await wait_for(lambda: emulator.device.websocket_clients == 1, timeout_s=10)
        result = await session
    finally:
        await emulator.stop()
    assert result["states"][-1] == "ACCOUNT_NULL" and "CHARGING" in result["states"]
    assert result["kwh"] == pytest.approx(2.0, abs=0.03)
    assert result["balance_after_cents"] == result["balance_before_cents"] - result["cents"] > 0
