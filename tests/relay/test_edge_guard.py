"""The relay manager on its own, on a fake clock: an uplink that goes away mid-session, a circuit
that goes over its limit meanwhile, and what the mothership learns when the uplink is back."""

from __future__ import annotations

import asyncio

import pytest

from evplug.bus.base import BusError
from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock, settle
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack
from evplug.core.actual import ActualState
from evplug.core.circuits import Circuit
from evplug.core.edge_safety import EdgeRules, StopReason
from evplug.devices.base import ChannelReading
from evplug.devices.car import Car
from evplug.devices.simulated import SimulatedDevice
from evplug.relay.edge_guard import EdgeConfig
from evplug.relay.manager import DeviceSpec, RelayManager
from tests.relay.fakes import SITE, acking_mothership, collect

SILENT_S, UNSUPERVISED_S, OVER_S = 60, 600, 10
RULES = EdgeRules(SILENT_S * 1000, UNSUPERVISED_S * 1000, OVER_S * 1000)


class Uplink(MemoryBus):
    """The site's side of the bus: while ``down``, the broker takes nothing from it."""

    down = False

    async def publish(self, subject: str, data: bytes, msg_id: str = "") -> bool:
        if self.down:
            raise BusError("uplink down")
        return await super().publish(subject, data, msg_id)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def started(
    clock: FakeClock, bus: Uplink, device: SimulatedDevice, limit_a: float | None = None
) -> RelayManager:
    circuits = () if limit_a is None else (Circuit("main", limit_a),)
    edge = EdgeConfig(RULES, circuits, dead_man_s=None)
    relay = RelayManager(SITE, bus, [DeviceSpec(device, "main")], clock, 2, edge=edge)
    task = asyncio.create_task(relay.start())
    await settle()
    await clock.advance(0)
    await task
    return relay


def request(plug_id: str, on: bool, issued_ms: int) -> pb.LocalStateRequest:
    state = pb.REQUESTED_STATE_ON if on else pb.REQUESTED_STATE_OFF
    return pb.LocalStateRequest(
        request_id=f"{plug_id}:{issued_ms}",
        plug_id=plug_id,
        requested_state=state,
        issued_ms=issued_ms,
    )


async def command(bus: Uplink, clock: FakeClock, plug_id: str, on: bool) -> None:
    """The mothership's command, as it arrives over the bus."""
    message = request(plug_id, on, clock.now_ms())
    await bus.publish(subjects.for_site(subjects.COMMANDS, SITE), pack(message), message.request_id)
    await settle()


def edge_stops(chunks: list[pb.ReadingChunk]) -> list[tuple[str, int, int]]:
    return [
        (r.plug_id, r.edge_stop, r.actual_state)
        for chunk in chunks
        for r in chunk.readings
        if r.edge_stop
    ]


async def test_a_session_runs_on_unsupervised_to_the_maximum_then_stops_and_none_starts(
    clock: FakeClock,
) -> None:
    bus = Uplink(clock)
    await acking_mothership(bus)
    chunks = await collect(bus, subjects.TELEMETRY, pb.ReadingChunk, "tel")
    device = SimulatedDevice("aa01", clock, channels=2, car_need_wh=100_000)
    relay = await started(clock, bus, device)
    await command(bus, clock, "sim:aa01:0", on=True)
    await clock.advance(10)
    bus.down = True
    await clock.advance(4)
    heard_ms = relay.edge.state.last_heard_ms  # the broker's last ack, seen at the next poll
    await clock.advance((heard_ms + SILENT_S * 1000 - clock.now_ms()) / 1000 - 2)
    assert not relay.edge.on_own
    await clock.advance(2)
    assert relay.edge.on_own and device.sockets[0].relay_on  # keeps running...
    refused = await relay.execute(request("sim:aa01:1", True, clock.now_ms()))
    assert not refused.ok and "no session starts until it is back" in refused.error
    assert not device.sockets[1].relay_on  # ... and nothing new starts
    assert (await relay.execute(request("sim:aa01:1", False, clock.now_ms()))).ok  # OFF: always

    await clock.advance((heard_ms + UNSUPERVISED_S * 1000 - clock.now_ms()) / 1000 - 2)
    assert device.sockets[0].relay_on
    await clock.advance(2)
    assert not device.sockets[0].relay_on  # the maximum: off, by the relay manager itself
    assert [(s.plug_id, s.reason) for s in relay.edge.stops] == [
        ("sim:aa01:0", StopReason.UNSUPERVISED_TOO_LONG)
    ]
    stopped_at_wh = device.sockets[0].energy_wh
    assert edge_stops(chunks) == []  # nobody has heard of it yet

    bus.down = False
    await clock.advance(12)  # the sender's next try
    assert len(relay.outbox) == 0
    assert edge_stops(chunks) == [
        ("sim:aa01:0", pb.EDGE_STOP_UNSUPERVISED_TOO_LONG, pb.ACTUAL_STATE_OFF)
    ]
    [told] = [r for c in chunks for r in c.readings if r.edge_stop]
    assert told.energy_wh == pytest.approx(stopped_at_wh)
    assert not relay.edge.on_own
    assert (await relay.execute(request("sim:aa01:1", True, clock.now_ms()))).ok  # back: it may
    await relay.stop()


async def test_a_circuit_over_its_limit_while_the_server_is_away_loses_its_latest_socket(
    clock: FakeClock,
) -> None:
    bus = Uplink(clock)
    await acking_mothership(bus)
    chunks = await collect(bus, subjects.TELEMETRY, pb.ReadingChunk, "tel")
    device = SimulatedDevice("aa01", clock, channels=3)
    for socket in device.sockets:
        socket.car = Car(need_wh=100_000, max_current_a=8.0)
    relay = await started(clock, bus, device, limit_a=25.0)
    for channel in (0, 2, 1):  # the last to start is channel 1
        await command(bus, clock, f"sim:aa01:{channel}", on=True)
        await clock.advance(3)
    await clock.advance(20)
    assert all(s.relay_on for s in device.sockets)  # 24 A on 25 A: fine
    bus.down = True
    await clock.advance(4)
    first = device.sockets[0]
    assert first.car is not None
    first.car.max_current_a = 12.0  # the first car draws more: 28 A
    await clock.advance(OVER_S - 2)
    assert all(s.relay_on for s in device.sockets)  # a few seconds over: not yet
    await clock.advance(4)
    assert [s.relay_on for s in device.sockets] == [True, False, True]
    assert [(s.plug_id, s.reason) for s in relay.edge.stops] == [
        ("sim:aa01:1", StopReason.CIRCUIT_OVER_LIMIT)
    ]
    assert "circuit main drew" in relay.edge.stops[0].detail
    await clock.advance(30)
    assert [s.relay_on for s in device.sockets] == [True, False, True]  # 20 A now: no more

    bus.down = False
    await clock.advance(12)
    assert edge_stops(chunks) == [
        ("sim:aa01:1", pb.EDGE_STOP_CIRCUIT_OVER_LIMIT, pb.ACTUAL_STATE_OFF)
    ]
    await relay.stop()


async def test_an_on_issued_before_the_uplink_went_and_delivered_late_is_refused(
    clock: FakeClock,
) -> None:
    bus = Uplink(clock)
    await acking_mothership(bus)
    answers = await collect(bus, subjects.RESPONSES, pb.LocalStateResponse, "resp")
    device = SimulatedDevice("aa01", clock)
    relay = await started(clock, bus, device)
    issued_ms = clock.now_ms()
    bus.down = True
    await clock.advance(SILENT_S + 10)
    bus.down = False
    # Redelivered now, but its issue time says nothing about the mothership since then.
    stale = request("sim:aa01:0", True, issued_ms)
    await relay.bus.publish(subjects.for_site(subjects.COMMANDS, SITE), pack(stale), "late")
    await settle()
    assert not device.sockets[0].relay_on
    assert [a.ok for a in answers] == [False] and "refused" in answers[0].error
    await relay.stop()


class TimedDevice(SimulatedDevice):
    """A simulated relay with an auto-off timer whose reads can be held up mid-poll."""

    renewals = 0
    held: asyncio.Event | None = None

    async def switch_on_for(self, channel: int, seconds: float) -> ActualState:
        self.renewals += 1
        return await self.switch(channel, True)

    async def read(self) -> list[ChannelReading]:
        readings = await super().read()
        if self.held is not None:
            await self.held.wait()
        return readings


async def test_a_timer_is_renewed_while_on_and_never_after_an_off_that_came_mid_poll(
    clock: FakeClock,
) -> None:
    bus = Uplink(clock)
    await acking_mothership(bus)
    device = TimedDevice("aa01", clock)
    relay = RelayManager(
        SITE, bus, [DeviceSpec(device)], clock, 2, edge=EdgeConfig(RULES, dead_man_s=30)
    )
    task = asyncio.create_task(relay.start())
    await settle()
    await clock.advance(0)
    await task
    assert (await relay.execute(request("sim:aa01:0", True, clock.now_ms()))).ok
    assert device.renewals == 1  # switched on with its timer
    await clock.advance(10)
    assert device.renewals == 2  # a third of the timer later
    await clock.advance(8)
    device.held = asyncio.Event()
    await clock.advance(2)  # this poll has read the relay ON, and waits
    assert (await relay.execute(request("sim:aa01:0", False, clock.now_ms()))).ok
    device.held.set()
    await settle()
    assert not device.sockets[0].relay_on  # the poll's stale ON renewed nothing
    assert device.renewals == 2
    await relay.stop()
