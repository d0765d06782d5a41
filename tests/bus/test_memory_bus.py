"""The embedded bus keeps the broker's promises: dedupe, durability, acks, redelivery."""

from __future__ import annotations

from evplug.bus.base import Message
from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock, settle


class Inbox:
    def __init__(self, ack: bool = True) -> None:
        self.messages: list[Message] = []
        self.ack = ack

    async def __call__(self, msg: Message) -> None:
        self.messages.append(msg)
        if self.ack:
            await msg.ack()

    @property
    def data(self) -> list[bytes]:
        return [m.data for m in self.messages]


async def test_a_repeated_message_id_is_dropped() -> None:
    bus = MemoryBus(FakeClock())
    inbox = Inbox()
    await bus.subscribe("t.*", "d", inbox)
    assert await bus.publish("t.a", b"1", msg_id="m1")
    assert not await bus.publish("t.a", b"1 again", msg_id="m1")
    await settle()
    assert inbox.data == [b"1"]
    assert bus.duplicates == 1


async def test_messages_published_before_subscribing_are_delivered_in_order() -> None:
    bus = MemoryBus(FakeClock())
    for i in range(5):
        await bus.publish("t.a", bytes([i]))
    await bus.publish("other.a", b"x")
    inbox = Inbox()
    await bus.subscribe("t.*", "d", inbox)
    await settle()
    assert inbox.data == [bytes([i]) for i in range(5)]


async def test_unacked_messages_come_back_after_the_ack_wait() -> None:
    clock = FakeClock()
    bus = MemoryBus(clock)
    inbox = Inbox(ack=False)
    await bus.subscribe("t.*", "d", inbox, ack_wait_s=30)
    await bus.publish("t.a", b"1")
    await settle()
    await clock.advance(29)
    assert [m.deliveries for m in inbox.messages] == [1]
    await clock.advance(2)
    assert [m.deliveries for m in inbox.messages] == [1, 2]
    await inbox.messages[-1].ack()
    await clock.advance(120)
    assert len(inbox.messages) == 2
    assert bus.pending_count("d") == 0


async def test_a_durable_resumes_with_what_it_had_not_acked() -> None:
    clock = FakeClock()
    bus = MemoryBus(clock)
    first = Inbox(ack=False)
    sub = await bus.subscribe("t.*", "d", first)
    await bus.publish("t.a", b"1")
    await settle()
    await sub.stop()  # the subscriber dies without acking
    await bus.publish("t.a", b"2")
    second = Inbox()
    await bus.subscribe("t.*", "d", second)
    await settle()
    assert second.data == [b"1", b"2"]
    assert second.messages[0].deliveries == 2


async def test_nak_redelivers_at_once() -> None:
    bus = MemoryBus(FakeClock())
    seen: list[int] = []

    async def handler(msg: Message) -> None:
        seen.append(msg.deliveries)
        await (msg.nak() if msg.deliveries < 3 else msg.ack())

    await bus.subscribe("t.*", "d", handler)
    await bus.publish("t.a", b"1")
    await settle()
    assert seen == [1, 2, 3]


async def test_a_failing_handler_does_not_stop_the_subscription() -> None:
    clock = FakeClock()
    bus = MemoryBus(clock)
    inbox = Inbox()

    async def handler(msg: Message) -> None:
        if msg.data == b"boom" and msg.deliveries == 1:
            raise RuntimeError("handler bug")
        await inbox(msg)

    await bus.subscribe("t.*", "d", handler, ack_wait_s=1)
    await bus.publish("t.a", b"boom")
    await bus.publish("t.a", b"ok")
    await settle()
    await clock.advance(2)
    assert inbox.data == [b"ok", b"boom"]


async def test_the_oldest_messages_are_dropped_and_counted_past_the_limit() -> None:
    bus = MemoryBus(FakeClock(), max_messages=3)
    for i in range(5):
        await bus.publish("t.a", bytes([i]))
    inbox = Inbox()
    await bus.subscribe("t.*", "d", inbox)
    await settle()
    assert inbox.data == [bytes([2]), bytes([3]), bytes([4])]
    assert bus.dropped == 2


async def test_max_ack_pending_holds_back_delivery_until_acks() -> None:
    bus = MemoryBus(FakeClock())
    inbox = Inbox(ack=False)
    await bus.subscribe("t.*", "d", inbox, max_ack_pending=2)
    for i in range(4):
        await bus.publish("t.a", bytes([i]))
    await settle()
    assert len(inbox.messages) == 2
    await inbox.messages[0].ack()
    await settle()
    assert len(inbox.messages) == 3


async def test_a_message_is_released_once_every_consumer_it_is_for_has_acked() -> None:
    bus = MemoryBus(FakeClock())
    fast, slow = Inbox(), Inbox(ack=False)
    await bus.subscribe("t.*", "fast", fast)
    await bus.subscribe("t.a", "slow", slow)
    await bus.publish("t.a", b"for both")
    await bus.publish("t.b", b"for fast only")
    await bus.publish("u.x", b"for nobody yet")
    await settle()
    assert bus.retained("t") == 2  # the slow consumer has not acked the first
    await slow.messages[0].ack()
    assert bus.retained("t") == 0
    assert bus.retained("u") == 1  # kept for a durable to come
    late = Inbox()
    await bus.subscribe("u.*", "late", late)
    await settle()
    assert late.data == [b"for nobody yet"] and bus.retained("u") == 0


async def test_a_flood_on_one_stream_never_pushes_out_another() -> None:
    bus = MemoryBus(FakeClock(), max_messages=10)
    await bus.publish("commands.site-1", b"switch on")
    for i in range(50):
        await bus.publish("telemetry.site-1", bytes([i]))
    inbox = Inbox()
    await bus.subscribe("commands.site-1", "relay", inbox)
    await settle()
    assert inbox.data == [b"switch on"]
    assert bus.dropped == 40 and bus.retained("telemetry") == 10
