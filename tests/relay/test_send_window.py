"""The relay manager's sender: a window of publishes in flight, deleted from the outbox in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from evplug.bus.base import BusError, Outgoing
from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock, settle
from evplug.contracts import subjects
from evplug.metrics import value
from evplug.relay import manager
from evplug.relay.manager import RelayManager
from tests.bus.inbox import Inbox
from tests.relay.fakes import SITE

SUBJECT = subjects.for_site(subjects.TELEMETRY, SITE)


class HeldBus(MemoryBus):
    """Stores each publish at once, in the order called, and acks it only when released;
    refuses the message ids in ``refused``."""

    def __init__(self) -> None:
        super().__init__(FakeClock())
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.tried: list[str] = []
        self.refused: set[str] = set()

    async def publish(self, subject: str, data: bytes, msg_id: str = "") -> bool:
        self.tried.append(msg_id)
        stored = msg_id not in self.refused and await super().publish(subject, data, msg_id)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        if msg_id in self.refused:
            raise BusError("broker unreachable")
        return stored

    async def publish_many(self, messages: Sequence[Outgoing]) -> list[bool | BaseException]:
        """All in flight at once, as a broker's are (the memory bus's own go in turn: its
        publishes never wait)."""
        return await asyncio.gather(
            *(self.publish(subject, data, msg_id) for subject, data, msg_id in messages),
            return_exceptions=True,
        )


def relay_with(bus: MemoryBus, chunks: int) -> RelayManager:
    relay = RelayManager(SITE, bus, [], FakeClock())
    relay.outbox.put([(SUBJECT, f"{SITE}:{n}", b"%d" % n) for n in range(1, chunks + 1)])
    return relay


def ids(*numbers: int) -> list[str]:
    return [f"{SITE}:{n}" for n in numbers]


async def test_a_window_of_publishes_is_in_flight_before_any_ack_and_none_deleted_before_it() -> (
    None
):
    bus = HeldBus()
    window = manager._SEND_WINDOW
    relay = relay_with(bus, window + 10)
    sending = asyncio.create_task(relay.send_pending())
    await settle()
    assert bus.most_in_flight == window  # bounded: the rest wait for the next window
    assert bus.tried == ids(*range(1, window + 1))  # in outbox order
    assert len(relay.outbox) == window + 10  # nothing deleted until acked
    bus.release.set()
    assert await sending
    assert bus.tried == ids(*range(1, window + 11)) and len(relay.outbox) == 0


async def test_a_refused_chunk_and_every_one_after_it_stay_and_go_again_in_order() -> None:
    bus = HeldBus()
    stored = Inbox()
    await bus.subscribe(subjects.all_sites(subjects.TELEMETRY), "tel", stored)
    bus.release.set()
    bus.refused = set(ids(3))
    relay = relay_with(bus, 6)
    failures = value("evplug_relay_publish_failures_total")
    assert not await relay.send_pending()
    # 4 to 6 were acked, but only what follows an unbroken run of acks is deleted.
    assert [p.msg_id for p in relay.outbox.oldest(10)] == ids(3, 4, 5, 6)
    assert value("evplug_relay_publish_failures_total") == failures + 1

    bus.refused = set()
    duplicates = value("evplug_bus_duplicates_total", stream="telemetry")
    assert await relay.send_pending()
    assert bus.tried == ids(1, 2, 3, 4, 5, 6) + ids(3, 4, 5, 6)  # sent again in order
    assert len(relay.outbox) == 0
    # The broker dropped the copies of what had arrived: each chunk is stored once.
    assert value("evplug_bus_duplicates_total", stream="telemetry") == duplicates + 3
    await settle()
    assert sorted(stored.data) == [b"%d" % n for n in range(1, 7)]
