"""The dead-man switch over real HTTP to emulated relays, on a fake clock both share: while the
relay manager polls, the relay's auto-off timer is renewed and the session runs on; once the
relay manager is gone, the relay switches itself off when its timer runs out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock, settle
from evplug.contracts import evplug_pb2 as pb
from evplug.devices.car import Car
from evplug.devices.emulators.runner import RunningEmulator, start_emulator
from evplug.devices.registry import create_driver
from evplug.relay.edge_guard import EdgeConfig
from evplug.relay.manager import DeviceSpec, RelayManager
from tests.relay.fakes import SITE, acking_mothership

pytestmark = pytest.mark.integration

DEAD_MAN_S = 30
POLL_S = 2
MODELS = {
    "shelly-pro4pm": "shelly_rpc",
    "shelly-plugs-gen1": "shelly_gen1",
    "tasmota-plug": "tasmota",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=list(MODELS))
async def emulator(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(request.param, clock=clock)
    running.sockets[0].car = Car(need_wh=100_000)
    yield running
    await running.stop()


class Polled:
    """The relay manager's own poll loop, one poll at a time: each step waits until the poll's
    checks and renewals (real HTTP) are done before time moves on."""

    def __init__(self, relay: RelayManager, clock: FakeClock) -> None:
        self.relay, self.clock = relay, clock
        self.done = asyncio.Event()
        checks = relay.edge.after_poll

        async def after_poll(manager: RelayManager) -> list:
            try:
                return await checks(manager)
            finally:
                self.done.set()

        relay.edge.after_poll = after_poll  # type: ignore[method-assign]

    async def start(self) -> None:
        task = asyncio.create_task(self.relay.start())
        await settle()
        await self.clock.advance(0)
        await task
        await asyncio.wait_for(self.done.wait(), 5)  # the first poll, at start

    async def run(self, seconds: int) -> None:
        for _ in range(seconds // POLL_S):
            self.done.clear()
            await self.clock.advance(POLL_S)
            await asyncio.wait_for(self.done.wait(), 5)


async def test_a_relay_whose_manager_dies_mid_session_switches_itself_off(
    emulator: RunningEmulator, clock: FakeClock
) -> None:
    bus = MemoryBus(clock)
    await acking_mothership(bus)
    driver = create_driver(MODELS[emulator.model], emulator.url)
    edge = EdgeConfig(dead_man_s=DEAD_MAN_S)
    relay = RelayManager(SITE, bus, [DeviceSpec(driver)], clock, POLL_S, edge=edge)
    polled = Polled(relay, clock)
    await polled.start()
    plug_id = next(iter(relay.channels))
    on = pb.LocalStateRequest(
        request_id="r1",
        plug_id=plug_id,
        requested_state=pb.REQUESTED_STATE_ON,
        issued_ms=clock.now_ms(),
    )
    assert (await relay.execute(on)).ok
    socket = emulator.sockets[0]
    assert emulator.device.timers[0] is not None  # switched on with its dead-man timer

    await polled.run(5 * DEAD_MAN_S)  # renewed all along: the session runs on
    assert socket.relay_on

    await relay.stop()  # as good as killed: nothing more reaches the relay, no OFF either
    assert socket.relay_on
    await clock.advance(DEAD_MAN_S / 2)
    assert socket.relay_on  # it was renewed less than a third of its time ago
    await clock.advance(DEAD_MAN_S / 2)
    assert not socket.relay_on  # ... and it has now run out, on the relay's own clock
    energy_wh = socket.energy_wh
    await clock.advance(600)
    socket.advance(clock.now_ms())
    assert socket.energy_wh == pytest.approx(energy_wh)
