"""Rediscovery: relays found while running join the site; a relay that moved keeps its plugs.

The finder here returns what mDNS would (tests/devices/test_discovery.py runs the real mDNS
inside a private network namespace); the relays are real emulators over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock, settle
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.devices.discovery import DiscoveredDevice
from evplug.devices.emulators.runner import RunningEmulator, start_emulator
from evplug.devices.registry import create_driver
from evplug.relay.manager import DeviceSpec, RelayManager
from evplug.relay.rediscovery import Rediscovery
from tests.relay.fakes import SITE, acking_mothership, collect

pytestmark = pytest.mark.integration


def seen_by_mdns(emulator: RunningEmulator, driver: str = "shelly_rpc") -> DiscoveredDevice:
    return DiscoveredDevice(
        "shelly", driver, f"shellypro4pm-{emulator.hardware_id}", emulator.host, emulator.port,
        emulator.hardware_id,
    )  # fmt: skip


@pytest.fixture
async def emulators() -> AsyncIterator[Callable[..., Awaitable[RunningEmulator]]]:
    running: list[RunningEmulator] = []

    async def start(model: str = "shelly-pro4pm", **kwargs: object) -> RunningEmulator:
        emulator = await start_emulator(model, **kwargs)
        running.append(emulator)
        return emulator

    yield start
    for emulator in running:
        await emulator.stop()


async def site(first: RunningEmulator) -> tuple[MemoryBus, RelayManager, list, list]:
    clock = FakeClock()
    bus = MemoryBus(clock)
    announcements = await acking_mothership(bus)
    chunks = await collect(bus, subjects.TELEMETRY, pb.ReadingChunk, "tel")
    relay = RelayManager(SITE, bus, [DeviceSpec(create_driver("shelly_rpc", first.url))], clock)
    await relay.start()  # its poll loop waits on the fake clock: the tests poll by hand
    return bus, relay, announcements, chunks


async def test_a_new_relay_is_added_announced_and_polled(emulators) -> None:
    first, second = await emulators(), await emulators()
    _, relay, announcements, chunks = await site(first)
    found = [seen_by_mdns(first), seen_by_mdns(second)]

    async def finder() -> list[DiscoveredDevice]:
        return found

    rediscovery = Rediscovery(relay, FakeClock(), finder)
    added = await rediscovery.run_once()
    assert added == [f"shelly:{second.hardware_id}:{c}" for c in range(4)]
    assert len(announcements) == 2
    assert {d.plug_id for d in announcements[-1].devices} == set(relay.channels)
    await relay.poll_once()
    await settle()
    assert {r.plug_id for r in chunks[-1].readings} == set(relay.channels)
    assert len(relay.channels) == 8

    # The same answer again changes nothing and announces nothing.
    assert await rediscovery.run_once() == []
    assert len(announcements) == 2
    await relay.stop()


async def test_a_relay_that_moved_keeps_its_plugs_and_is_read_at_its_new_address(
    emulators,
) -> None:
    old = await emulators()
    _, relay, announcements, chunks = await site(old)
    plugs_before = set(relay.channels)
    await old.stop()
    moved = await emulators(mac=old.hardware_id)  # same hardware, new port (new DHCP lease)

    async def finder() -> list[DiscoveredDevice]:
        return [seen_by_mdns(moved)]

    assert await Rediscovery(relay, FakeClock(), finder).run_once() == []
    assert set(relay.channels) == plugs_before
    assert relay.addresses == {moved.url}
    assert len(announcements) == 1  # nothing new to announce
    [chunk] = await relay.poll_once()
    await settle()
    assert all(r.actual_state == pb.ACTUAL_STATE_OFF for r in chunk.readings)
    assert {r.plug_id for r in chunks[-1].readings} == plugs_before
    await relay.stop()


async def test_a_found_relay_that_wants_a_password_is_skipped_with_a_fix(emulators) -> None:
    first = await emulators()
    locked = await emulators(password="s3cret")
    plain = await emulators()
    _, relay, announcements, _ = await site(first)

    async def finder() -> list[DiscoveredDevice]:
        return [seen_by_mdns(locked), seen_by_mdns(plain)]

    added = await Rediscovery(relay, FakeClock(), finder).run_once()
    assert added == [f"shelly:{plain.hardware_id}:{c}" for c in range(4)]
    assert locked.url not in relay.addresses
    assert len(announcements) == 2
    await relay.stop()
