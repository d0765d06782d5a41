"""The outbox on its own, and the relay manager sending through it, on a fake clock."""

from __future__ import annotations

from pathlib import Path

from evplug.bus.base import BusError
from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock, settle
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.devices.simulated import SimulatedDevice
from evplug.metrics import value
from evplug.relay.manager import DeviceSpec, RelayManager
from evplug.relay.outbox import Outbox
from evplug.relay.status_page import render
from tests.relay.fakes import SITE, acking_mothership, collect


def messages(*ids: int) -> list[tuple[str, str, bytes]]:
    return [("evplug.telemetry.s", f"s:{n}", bytes([n])) for n in ids]


def test_keeps_messages_in_order_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path)
    outbox.put(messages(1, 2))
    outbox.put(messages(3))
    first = outbox.oldest(1)[0]
    outbox.remove([first])
    outbox.close()  # as if the process died here: the file is all there is
    reopened = Outbox(path)
    assert len(reopened) == 2
    assert [(p.msg_id, p.data) for p in reopened.oldest(10)] == [("s:2", b"\x02"), ("s:3", b"\x03")]
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_past_its_cap_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", max_messages=3)
    before = value("evplug_relay_outbox_dropped_total")
    outbox.put(messages(1, 2))
    outbox.put(messages(3, 4, 5))
    assert [p.msg_id for p in outbox.oldest(10)] == ["s:3", "s:4", "s:5"]
    assert len(outbox) == 3 and outbox.dropped == 2
    assert value("evplug_relay_outbox_dropped_total") == before + 2
    assert value("evplug_relay_outbox_pending") == 3


class FlakyBus(MemoryBus):
    """Refuses telemetry while ``down``; counts every telemetry publish with its message id."""

    down = False

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.tried: list[str] = []

    async def publish(self, subject: str, data: bytes, msg_id: str = "") -> bool:
        if subject.startswith(subjects.TELEMETRY):
            self.tried.append(msg_id)
            if self.down:
                raise BusError("broker unreachable")
        return await super().publish(subject, data, msg_id)


async def test_readings_taken_while_the_broker_is_down_are_sent_after_in_order(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    bus = FlakyBus(clock)
    await acking_mothership(bus)
    chunks = await collect(bus, subjects.TELEMETRY, pb.ReadingChunk, "tel")
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    device = SimulatedDevice("aa01", clock)
    relay = RelayManager(SITE, bus, [DeviceSpec(device)], clock, poll_interval_s=2, outbox=outbox)
    await relay.start()
    await settle()
    await clock.advance(0)
    assert len(chunks) == 1
    bus.down = True
    await clock.advance(20)  # ten polls: none sent, all kept; polling never waited
    assert len(chunks) == 1 and relay.polls == 11 and len(outbox) == 10
    assert "not answering" not in render(relay, "https://ev.example")
    assert "10 chunks waiting for the broker" in render(relay, "https://ev.example")
    bus.down = False
    await clock.advance(10)  # the sender's pause has grown, but not past 10 s
    seqs = [c.seq for c in chunks]
    assert len(seqs) == 16 and seqs == sorted(seqs) and len(set(seqs)) == 16
    assert len(outbox) == 0
    # Each retry kept the chunk's own message id, so the broker can drop a repeat.
    assert set(bus.tried) == {f"{SITE}:{seq}" for seq in seqs}
    await relay.stop()


async def test_a_restarted_relay_manager_sends_what_the_last_one_left_first(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    bus = FlakyBus(clock)
    await acking_mothership(bus)
    chunks = await collect(bus, subjects.TELEMETRY, pb.ReadingChunk, "tel")
    path = tmp_path / "outbox.sqlite3"
    device = SimulatedDevice("aa01", clock)
    bus.down = True
    first = RelayManager(SITE, bus, [DeviceSpec(device)], clock, outbox=Outbox(path))
    await first.start()
    await settle()
    await clock.advance(6)
    left = first.polls
    await first.stop()
    bus.down = False
    second = RelayManager(SITE, bus, [DeviceSpec(device)], clock, outbox=Outbox(path))
    await second.start()
    await settle()
    await clock.advance(0)
    assert len(chunks) == left + 1  # the first's, then its own first poll
    seqs = [c.seq for c in chunks]
    assert seqs == sorted(seqs)
    await second.stop()


async def test_nothing_is_sent_before_the_announcement_is_acked(tmp_path: Path) -> None:
    clock = FakeClock()
    bus = MemoryBus(clock)
    seen = await acking_mothership(bus, ignore_first=1)
    chunks = await collect(bus, subjects.TELEMETRY, pb.ReadingChunk, "tel")
    relay = RelayManager(
        SITE, bus, [DeviceSpec(SimulatedDevice("aa01", clock))], clock, poll_interval_s=2
    )
    await relay.start()
    await settle()
    await clock.advance(4)  # polled at 0, 2 and 4 s; the first announcement went unanswered
    assert relay.polls == 3 and len(seen) == 1 and chunks == []
    await clock.advance(1)  # the retry is acked: what waited goes out
    assert len(seen) == 2 and len(chunks) == 3
    await relay.stop()
