"""The relay manager against the memory bus and simulated relays, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from evplug.bus.base import BusError
from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock, settle
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import MAX_DEVICES_PER_ANNOUNCEMENT, MAX_READINGS_PER_CHUNK, pack
from evplug.core.actual import ActualState
from evplug.devices.base import ChannelReading, DeviceUnreachable, OnReadings, PushDriver
from evplug.devices.simulated import SimulatedDevice
from evplug.metrics import value
from evplug.relay.manager import AnnouncementNotAcked, DeviceSpec, RelayManager
from tests.relay.fakes import SITE, acking_mothership, collect


class FlakyDevice(SimulatedDevice):
    failing = False

    async def read(self):  # type: ignore[override]
        if self.failing:
            raise DeviceUnreachable("http://10.0.0.9: timed out")
        return await super().read()


class PushingDevice(SimulatedDevice):
    """A simulated relay that also reports changes by itself, as a WebSocket driver does."""

    on_readings: OnReadings | None = None

    def subscribe(self, on_readings: OnReadings) -> None:
        self.on_readings = on_readings

    async def trip(self, channel: int) -> None:
        self.sockets[channel].switch(False, self.clock.now_ms())
        assert self.on_readings is not None
        self.on_readings([ChannelReading(channel, ActualState.OVERCURRENT, 0, 230, 0, 0, 12.5)])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def started(clock: FakeClock, bus: MemoryBus, *devices: SimulatedDevice) -> RelayManager:
    relay = RelayManager(SITE, bus, [DeviceSpec(d) for d in devices], clock, poll_interval_s=2)
    task = asyncio.create_task(relay.start())
    await settle()
    await clock.advance(0)
    await task
    return relay


async def test_announces_every_plug_and_retries_until_acked(clock: FakeClock) -> None:
    bus = MemoryBus(clock)
    seen = await acking_mothership(bus, ignore_first=1)
    device = SimulatedDevice("aa01", clock, channels=4)
    relay = RelayManager(SITE, bus, [DeviceSpec(device, "main")], clock, announce_timeout_s=5)
    task = asyncio.create_task(relay.start())
    await settle()
    assert len(seen) == 1
    await clock.advance(5)
    await task
    assert len(seen) == 2
    assert [d.plug_id for d in seen[1].devices] == [f"sim:aa01:{c}" for c in range(4)]
    assert {d.fuze_id for d in seen[1].devices} == {"main"}
    await relay.stop()


async def test_gives_up_with_a_fix_when_nobody_acks(clock: FakeClock) -> None:
    bus = MemoryBus(clock)
    relay = RelayManager(
        SITE, bus, [DeviceSpec(SimulatedDevice("aa01", clock))], clock, announce_attempts=2
    )
    await relay.start()  # polling starts at once; the handshake goes on in the background
    await settle()
    await clock.advance(5)
    await clock.advance(5)
    assert relay.announcing is not None
    with pytest.raises(AnnouncementNotAcked, match="is the mothership running"):
        await relay.announcing
    assert relay.polls >= 2 and len(relay.outbox) == relay.polls  # kept, never sent unannounced
    await relay.stop()


async def test_polls_every_interval_and_publishes_one_chunk_per_poll(clock: FakeClock) -> None:
    bus = MemoryBus(clock)
    await acking_mothership(bus)
    chunks = await collect(bus, subjects.TELEMETRY, pb.ReadingChunk, "tel")
    relay = await started(clock, bus, SimulatedDevice("aa01", clock, channels=2))
    await clock.advance(6)
    assert len(chunks) == 4  # at 0, 2, 4 and 6 s
    assert [c.seq for c in chunks] == sorted({c.seq for c in chunks})
    reading = chunks[-1].readings[1]
    assert reading.plug_id == "sim:aa01:1" and reading.actual_state == pb.ACTUAL_STATE_OFF
    assert reading.HasField("energy_wh") and reading.voltage_v > 200
    await relay.stop()


async def test_a_silent_device_goes_mia_after_three_polls_and_recovers(clock: FakeClock) -> None:
    bus = MemoryBus(clock)
    await acking_mothership(bus)
    chunks = await collect(bus, subjects.TELEMETRY, pb.ReadingChunk, "tel")
    device = FlakyDevice("aa01", clock)
    relay = await started(clock, bus, device)
    device.failing = True
    await clock.advance(6)
    assert [len(c.readings) for c in chunks] == [1, 0, 0, 1]
    assert chunks[-1].readings[0].actual_state == pb.ACTUAL_STATE_MIA
    device.failing = False
    await clock.advance(2)
    assert chunks[-1].readings[0].actual_state == pb.ACTUAL_STATE_OFF
    await relay.stop()


async def test_executes_commands_and_answers_each(clock: FakeClock) -> None:
    bus = MemoryBus(clock)
    await acking_mothership(bus)
    answers = await collect(bus, subjects.RESPONSES, pb.LocalStateResponse, "resp")
    device = SimulatedDevice("aa01", clock)
    relay = await started(clock, bus, device)
    commands = subjects.for_site(subjects.COMMANDS, SITE)
    on = pb.LocalStateRequest(
        request_id="r1", plug_id="sim:aa01:0", requested_state=pb.REQUESTED_STATE_ON
    )
    await bus.publish(commands, pack(on), msg_id="r1")
    ghost = pb.LocalStateRequest(
        request_id="r2", plug_id="nope", requested_state=pb.REQUESTED_STATE_ON
    )
    await bus.publish(commands, pack(ghost), msg_id="r2")
    await bus.publish(commands, b"garbage", msg_id="r3")
    await settle()
    assert device.sockets[0].relay_on
    assert [(a.request_id, a.ok, a.actual_state) for a in answers] == [
        ("r1", True, pb.ACTUAL_STATE_ON),
        ("r2", False, pb.ACTUAL_STATE_UNKNOWN),
    ]
    assert "nope" in answers[1].error
    await relay.stop()


async def test_an_old_command_redelivered_late_does_not_undo_a_newer_one(clock: FakeClock) -> None:
    bus = MemoryBus(clock)
    await acking_mothership(bus)
    device = SimulatedDevice("aa01", clock)
    relay = await started(clock, bus, device)

    def request(request_id: str, state: int, issued_ms: int) -> pb.LocalStateRequest:
        return pb.LocalStateRequest(
            request_id=request_id, plug_id="sim:aa01:0", requested_state=state, issued_ms=issued_ms
        )

    assert (await relay.execute(request("on", pb.REQUESTED_STATE_ON, 1000))).ok
    assert (await relay.execute(request("off", pb.REQUESTED_STATE_OFF, 2000))).ok
    late = await relay.execute(request("on", pb.REQUESTED_STATE_ON, 1000))
    assert not late.ok and "superseded" in late.error
    assert not device.sockets[0].relay_on
    await relay.stop()


async def test_a_poll_with_more_readings_than_a_chunk_may_carry_goes_out_in_several(
    clock: FakeClock,
) -> None:
    bus = MemoryBus(clock)
    await acking_mothership(bus)
    chunks = await collect(bus, subjects.TELEMETRY, pb.ReadingChunk, "tel")
    device = SimulatedDevice("aa01", clock, channels=2 * MAX_READINGS_PER_CHUNK + 7)
    relay = RelayManager(SITE, bus, [DeviceSpec(device)], clock)
    await relay.connect()
    duplicates = value("evplug_bus_duplicates_total", stream="telemetry")
    published = await relay.poll_once()
    assert await relay.send_pending()
    await settle()
    sizes = [MAX_READINGS_PER_CHUNK, MAX_READINGS_PER_CHUNK, 7]
    assert [len(c.readings) for c in chunks] == sizes
    assert [c.seq for c in published] == [c.seq for c in chunks]
    seqs = [c.seq for c in chunks]
    assert seqs == sorted(set(seqs))  # each its own seq, and so its own message id:
    assert value("evplug_bus_duplicates_total", stream="telemetry") == duplicates  # none deduped
    assert [r.plug_id for c in chunks for r in c.readings] == list(relay.channels)
    await relay.stop()


async def test_a_site_with_more_plugs_than_an_announcement_may_carry_is_announced_in_several(
    clock: FakeClock,
) -> None:
    bus = MemoryBus(clock)
    seen = await acking_mothership(bus)
    device = SimulatedDevice("aa01", clock, channels=2 * MAX_DEVICES_PER_ANNOUNCEMENT + 3)
    relay = await started(clock, bus, device)
    sizes = [MAX_DEVICES_PER_ANNOUNCEMENT, MAX_DEVICES_PER_ANNOUNCEMENT, 3]
    assert [len(a.devices) for a in seen] == sizes
    assert len({a.announcement_id for a in seen}) == 3
    assert [d.plug_id for a in seen for d in a.devices] == list(relay.channels)
    await relay.stop()


async def test_counts_polls_failed_reads_and_command_round_trips(clock: FakeClock) -> None:
    bus = MemoryBus(clock)
    await acking_mothership(bus)
    device = FlakyDevice("aa01", clock)
    relay = await started(clock, bus, device)

    def counts() -> tuple[float, ...]:
        return (
            value("evplug_relay_polls_total"),
            value("evplug_relay_poll_failures_total", kind="read_error"),
            value("evplug_relay_poll_failures_total", kind="went_mia"),
            value("evplug_relay_command_round_trip_seconds_count"),
        )

    before = counts()
    device.failing = True
    await clock.advance(6)  # three failed polls: the third makes the device MIA
    on = pb.LocalStateRequest(
        request_id="r1", plug_id="sim:aa01:0", requested_state=pb.REQUESTED_STATE_ON
    )
    assert (await relay.execute(on)).ok
    assert counts() == (before[0] + 3, before[1] + 3, before[2] + 1, before[3] + 1)
    await relay.stop()


async def test_a_publish_the_bus_refuses_is_counted(clock: FakeClock) -> None:
    class RefusingBus(MemoryBus):
        async def publish(self, subject: str, data: bytes, msg_id: str = "") -> bool:
            raise BusError("bus down")

    relay = RelayManager(SITE, RefusingBus(clock), [DeviceSpec(SimulatedDevice("a", clock))], clock)
    await relay.connect()
    before = value("evplug_relay_publish_failures_total")
    await relay.poll_once()
    assert not await relay.send_pending()
    assert value("evplug_relay_publish_failures_total") == before + 1
    assert len(relay.outbox) == 1  # kept, to be sent again


async def test_a_change_a_device_pushes_is_published_at_once_between_polls(
    clock: FakeClock,
) -> None:
    bus = MemoryBus(clock)
    await acking_mothership(bus)
    chunks = await collect(bus, subjects.TELEMETRY, pb.ReadingChunk, "tel")
    device = PushingDevice("aa01", clock, channels=2)
    assert isinstance(device, PushDriver)
    assert not isinstance(SimulatedDevice("aa02", clock), PushDriver)  # pollers stay pollers
    relay = await started(clock, bus, device)
    await clock.advance(0.5)
    polled = len(chunks)

    await device.trip(1)
    await settle()  # no clock time passes: not the next poll
    assert len(chunks) == polled + 1
    [reading] = chunks[-1].readings
    assert (reading.plug_id, reading.actual_state) == ("sim:aa01:1", pb.ACTUAL_STATE_OVERCURRENT)
    assert reading.energy_wh == 12.5 and reading.timestamp_ms == clock.now_ms()
    assert chunks[-1].seq > chunks[-2].seq
    assert relay.latest["sim:aa01:1"] == reading
    assert relay.pushes == 1
    await relay.stop()


async def test_a_push_from_a_device_that_has_moved_away_is_not_published(
    clock: FakeClock,
) -> None:
    bus = MemoryBus(clock)
    await acking_mothership(bus)
    chunks = await collect(bus, subjects.TELEMETRY, pb.ReadingChunk, "tel")
    old = PushingDevice("aa01", clock)
    relay = await started(clock, bus, old)
    moved = PushingDevice("aa01", clock)
    await relay.add_devices([DeviceSpec(moved)])
    assert moved.on_readings is not None  # a device found while running is listened to
    published = len(chunks)
    await old.trip(0)
    await settle()
    assert len(chunks) == published and relay.pushes == 0
    await moved.trip(0)
    await settle()
    assert len(chunks) == published + 1
    await relay.stop()
