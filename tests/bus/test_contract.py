"""What every transport promises through ``Bus``: the semantics NATS gives.

The tests use only the interface, in real time with short waits, so they run unchanged against
a real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from evplug.bus.base import (
    Bus,
    BusError,
    KvEntry,
    KvWatcher,
    Message,
    NoResponders,
    RequestTimeout,
    Responder,
)
from evplug.bus.broker import Broker
from evplug.bus.memory import MemoryBus
from tests.bus.inbox import Inbox
from tests.bus.nats_state import fresh_nats_bus
from tests.conftest import wait_for

ACK_WAIT_S = 0.05
SOON_S = 2.0  # how long anything that should happen may take


async def _open(transport: str, request: pytest.FixtureRequest) -> Bus:
    if transport == "memory":
        return MemoryBus()
    if transport == "nats":
        broker: Broker = request.getfixturevalue("nats_broker")
        return await fresh_nats_bus(broker)
    raise ValueError(f"unknown transport {transport!r}")


@pytest.fixture(
    params=["memory", pytest.param("nats", marks=pytest.mark.integration)],
)
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """A fresh, empty bus: no stream, durable or bucket left over from another test."""
    transport = await _open(request.param, request)
    yield transport
    await transport.close()


async def soon(predicate: Callable[[], bool]) -> None:
    await wait_for(predicate, timeout_s=SOON_S)


# Streams: dedupe, order, durability, acks.


async def test_a_repeated_message_id_is_stored_once(bus: Bus) -> None:
    inbox = Inbox()
    await bus.subscribe("t.*", "d", inbox)
    assert await bus.publish("t.a", b"1", msg_id="m1")
    assert not await bus.publish("t.a", b"1 again", msg_id="m1")
    assert await bus.publish("t.a", b"2", msg_id="m2")
    await soon(lambda: len(inbox.messages) >= 2)
    assert inbox.data == [b"1", b"2"]  # a stored duplicate would have come before b"2"


async def test_messages_are_delivered_in_order_from_before_the_subscription_on(bus: Bus) -> None:
    for i in range(5):
        await bus.publish("t.a", bytes([i]))
    await bus.publish("other.a", b"not for t.*")
    inbox = Inbox()
    await bus.subscribe("t.*", "d", inbox)
    for i in range(5, 10):
        await bus.publish("t.b", bytes([i]))
    await soon(lambda: len(inbox.messages) >= 10)
    assert inbox.data == [bytes([i]) for i in range(10)]


async def test_publishes_started_together_are_stored_in_the_order_started(bus: Bus) -> None:
    # A relay keeps a window of publishes in flight; the stream must still hold them in order.
    acked = await asyncio.gather(
        *(bus.publish("t.a", b"%d" % i, msg_id=f"w{i}") for i in range(300))
    )
    assert all(acked)
    inbox = Inbox()
    await bus.subscribe("t.*", "d", inbox)
    await soon(lambda: len(inbox.messages) >= 300)
    assert inbox.data == [b"%d" % i for i in range(300)]


async def test_messages_published_together_are_stored_in_order_each_with_its_answer(
    bus: Bus,
) -> None:
    # A relay's window of chunks: one answer per chunk, in order, duplicates dropped.
    assert await bus.publish("t.a", b"0", msg_id="m0")
    window = [("t.a", b"%d" % i, f"m{i}") for i in range(1, 300)]
    answers = await bus.publish_many([*window[:100], ("t.b", b"0 again", "m0"), *window[100:]])
    assert answers == [True] * 100 + [False] + [True] * 199
    inbox = Inbox()
    await bus.subscribe("t.*", "d", inbox)
    await soon(lambda: len(inbox.messages) >= 300)
    assert inbox.data == [b"%d" % i for i in range(300)]
    assert await bus.publish_many([]) == []


async def test_a_durable_resumes_with_what_it_had_not_acked(bus: Bus) -> None:
    first = Inbox(ack=False)
    sub = await bus.subscribe("t.*", "d", first, ack_wait_s=ACK_WAIT_S)
    await bus.publish("t.a", b"1")
    await soon(lambda: len(first.messages) == 1)
    await sub.stop()  # the subscriber dies without acking
    await bus.publish("t.a", b"2")
    second = Inbox()
    await bus.subscribe("t.*", "d", second, ack_wait_s=ACK_WAIT_S)
    await soon(lambda: len(second.messages) >= 2)
    deliveries = {m.data: m.deliveries for m in second.messages}
    assert deliveries == {b"1": 2, b"2": 1}


async def test_a_durable_stays_bound_to_the_subject_it_was_made_for(bus: Bus) -> None:
    sub = await bus.subscribe("t.*", "d", Inbox())
    await sub.stop()
    with pytest.raises(ValueError, match=r"durable 'd' is bound to 't\.\*', not 't\.a'"):
        await bus.subscribe("t.a", "d", Inbox())


async def test_an_unacked_message_comes_back_after_the_ack_wait_until_acked(bus: Bus) -> None:
    seen: list[int] = []

    async def ack_the_second(msg: Message) -> None:
        seen.append(msg.deliveries)
        if msg.deliveries == 2:
            await msg.ack()

    await bus.subscribe("t.*", "d", ack_the_second, ack_wait_s=ACK_WAIT_S)
    await bus.publish("t.a", b"1")
    await soon(lambda: len(seen) >= 2)
    await asyncio.sleep(3 * ACK_WAIT_S)  # room for a redelivery that must not come
    assert seen == [1, 2]


async def test_nak_redelivers_at_once(bus: Bus) -> None:
    seen: list[int] = []

    async def nak_twice(msg: Message) -> None:
        seen.append(msg.deliveries)
        await (msg.nak() if msg.deliveries < 3 else msg.ack())

    await bus.subscribe("t.*", "d", nak_twice, ack_wait_s=30)  # no help from the ack wait
    await bus.publish("t.a", b"1")
    await soon(lambda: len(seen) >= 3)
    assert seen == [1, 2, 3]


async def test_a_failing_handler_does_not_stop_the_subscription(bus: Bus) -> None:
    inbox = Inbox()

    async def fails_once(msg: Message) -> None:
        if msg.data == b"boom" and msg.deliveries == 1:
            raise RuntimeError("handler bug")
        await inbox(msg)

    await bus.subscribe("t.*", "d", fails_once, ack_wait_s=ACK_WAIT_S)
    await bus.publish("t.a", b"boom")
    await bus.publish("t.a", b"ok")
    await soon(lambda: len(inbox.messages) >= 2)
    assert Counter(inbox.data) == {b"ok": 1, b"boom": 1}


async def test_max_ack_pending_holds_back_delivery_until_acks(bus: Bus) -> None:
    inbox = Inbox(ack=False)
    await bus.subscribe("t.*", "d", inbox, ack_wait_s=30, max_ack_pending=2)
    for i in range(4):
        await bus.publish("t.a", bytes([i]))
    await soon(lambda: len(inbox.messages) >= 2)
    await asyncio.sleep(0.05)  # room for a delivery that must not come
    assert len(inbox.messages) == 2
    await inbox.messages[0].ack()
    await soon(lambda: len(inbox.messages) >= 3)
    assert inbox.data == [bytes([0]), bytes([1]), bytes([2])]


# Request/reply.


async def echo(subject: str, data: bytes) -> bytes:
    return subject.encode() + b":" + data


async def test_a_request_gets_its_reply(bus: Bus) -> None:
    await bus.serve("svc.echo", echo)
    assert await bus.request("svc.echo", b"hi", timeout_s=SOON_S) == b"svc.echo:hi"


async def test_a_request_nobody_serves_fails_at_once(bus: Bus) -> None:
    async with asyncio.timeout(1):  # well before the request's own timeout
        with pytest.raises(NoResponders, match=r"svc\.none"):
            await bus.request("svc.none", b"", timeout_s=30)
        served = await bus.serve("svc.echo", echo)
        await served.stop()
        with pytest.raises(NoResponders):
            await bus.request("svc.echo", b"", timeout_s=30)
    assert issubclass(NoResponders, BusError)


async def test_a_request_without_a_reply_in_time_times_out(bus: Bus) -> None:
    go_on = asyncio.Event()

    async def slow_then_fast(subject: str, data: bytes) -> bytes:
        if data == b"slow":
            await go_on.wait()
        return data

    await bus.serve("svc.slow", slow_then_fast)
    async with asyncio.timeout(1):
        with pytest.raises(RequestTimeout, match=r"svc\.slow"):
            await bus.request("svc.slow", b"slow", timeout_s=0.05)
    go_on.set()
    # The late reply to the first request goes nowhere; the next gets its own.
    assert await bus.request("svc.slow", b"fast", timeout_s=SOON_S) == b"fast"
    assert issubclass(RequestTimeout, BusError)


async def test_a_queue_group_splits_requests_between_its_members(bus: Bus) -> None:
    calls: Counter[str] = Counter()

    def member(name: str) -> Responder:
        async def answer(subject: str, data: bytes) -> bytes:
            calls[name] += 1
            return name.encode()

        return answer

    await bus.serve("svc.work", member("a"), queue="workers")
    await bus.serve("svc.work", member("b"), queue="workers")
    replies = Counter([await bus.request("svc.work", b"", timeout_s=SOON_S) for _ in range(20)])
    assert sum(calls.values()) == 20  # each request went to one member only
    assert replies == {b"a": calls["a"], b"b": calls["b"]}
    assert calls["a"] > 0 and calls["b"] > 0


async def test_without_a_queue_group_every_server_gets_the_request(bus: Bus) -> None:
    seen: list[str] = []

    def server(name: str) -> Responder:
        async def answer(subject: str, data: bytes) -> bytes:
            seen.append(name)
            return name.encode()

        return answer

    await bus.serve("svc.all", server("a"))
    await bus.serve("svc.all", server("b"))
    reply = await bus.request("svc.all", b"", timeout_s=SOON_S)
    await soon(lambda: len(seen) >= 2)
    assert sorted(seen) == ["a", "b"] and reply in (b"a", b"b")  # the first reply wins


async def test_a_raising_responder_gives_no_reply_and_keeps_serving(bus: Bus) -> None:
    async def picky(subject: str, data: bytes) -> bytes:
        if data == b"bad":
            raise RuntimeError("responder bug")
        return b"fine"

    await bus.serve("svc.picky", picky)
    async with asyncio.timeout(1):
        with pytest.raises(RequestTimeout):
            await bus.request("svc.picky", b"bad", timeout_s=0.05)
    assert await bus.request("svc.picky", b"good", timeout_s=SOON_S) == b"fine"


async def test_a_wildcard_server_gets_the_subject_asked(bus: Bus) -> None:
    await bus.serve("svc.*.status", echo)
    assert await bus.request("svc.plug-1.status", b"?", timeout_s=SOON_S) == (
        b"svc.plug-1.status:?"
    )
    with pytest.raises(NoResponders):
        await bus.request("svc.plug-1.other", b"?", timeout_s=SOON_S)


async def test_stop_serves_nothing_new_but_answers_the_request_in_hand(bus: Bus) -> None:
    started, go_on = asyncio.Event(), asyncio.Event()

    async def slow(subject: str, data: bytes) -> bytes:
        started.set()
        await go_on.wait()
        return b"done"

    served = await bus.serve("svc.slow", slow)
    in_hand = asyncio.create_task(bus.request("svc.slow", b"", timeout_s=SOON_S))
    await asyncio.wait_for(started.wait(), SOON_S)
    stopping = asyncio.create_task(served.stop())
    with pytest.raises(NoResponders):  # once stop has begun, nothing new is taken
        async with asyncio.timeout(SOON_S):
            while True:
                with contextlib.suppress(RequestTimeout):
                    await bus.request("svc.slow", b"", timeout_s=0.05)
    go_on.set()
    assert await asyncio.wait_for(in_hand, SOON_S) == b"done"
    await asyncio.wait_for(stopping, SOON_S)


# Key-value buckets.


async def test_put_returns_increasing_revisions_and_get_the_latest(bus: Bus) -> None:
    kv = await bus.key_value("plugs")
    first = await kv.put("site-1.plug-1", b"idle")
    second = await kv.put("site-1.plug-2", b"idle")
    third = await kv.put("site-1.plug-1", b"charging")
    assert first == 1 and first < second < third
    assert await kv.get("site-1.plug-1") == KvEntry("site-1.plug-1", b"charging", third)
    assert await kv.get("site-1.plug-3") is None
    again = await bus.key_value("plugs")  # the same bucket, not a new one
    assert await again.get("site-1.plug-2") == KvEntry("site-1.plug-2", b"idle", second)
    other = await bus.key_value("other")
    assert await other.put("site-1.plug-1", b"x") == 1  # revisions are per bucket


async def test_a_deleted_key_is_gone_and_its_next_put_is_newer(bus: Bus) -> None:
    kv = await bus.key_value("plugs")
    assert await kv.keys() == []
    for key in ("b", "a", "c.x"):
        await kv.put(key, b"v")
    before = await kv.put("b", b"w")
    await kv.delete("b")
    assert await kv.get("b") is None
    assert await kv.keys() == ["a", "c.x"]
    assert await kv.put("b", b"back") > before
    assert await kv.keys() == ["a", "b", "c.x"]


async def _collect(watcher: KvWatcher, into: list[KvEntry]) -> None:
    async for entry in watcher:
        into.append(entry)


async def test_watch_gets_the_current_values_then_every_change(bus: Bus) -> None:
    kv = await bus.key_value("plugs")
    await kv.put("site-1.p1", b"idle")
    await kv.put("site-2.p1", b"idle")
    p2 = await kv.put("site-1.p2", b"idle")
    p1 = await kv.put("site-1.p1", b"charging")
    await kv.put("site-1.p3", b"idle")
    await kv.delete("site-1.p3")  # not live: not among the current values
    watcher = await kv.watch("site-1.>")
    seen: list[KvEntry] = []
    collecting = asyncio.create_task(_collect(watcher, seen))
    await kv.put("site-2.p1", b"charging")  # not matched
    p2_again = await kv.put("site-1.p2", b"charging")
    await kv.delete("site-1.p1")
    await soon(lambda: len(seen) >= 4)
    await watcher.stop()
    await asyncio.wait_for(collecting, SOON_S)  # stop ends the iteration
    assert seen[:3] == [
        KvEntry("site-1.p2", b"idle", p2),
        KvEntry("site-1.p1", b"charging", p1),
        KvEntry("site-1.p2", b"charging", p2_again),
    ]
    deleted = seen[3]
    assert (deleted.key, deleted.value, deleted.deleted) == ("site-1.p1", b"", True)
    assert deleted.revision > p2_again
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("pattern", "keys"),
    [
        (">", ["a.p1", "b.p1", "a.x.p1", "a.p2"]),
        ("*.p1", ["a.p1", "b.p1"]),
        ("a.>", ["a.p1", "a.x.p1", "a.p2"]),
        ("a.*", ["a.p1", "a.p2"]),
    ],
)
async def test_watch_filters_by_pattern(bus: Bus, pattern: str, keys: list[str]) -> None:
    kv = await bus.key_value("plugs")
    all_keys = ["a.p1", "b.p1", "a.x.p1", "a.p2"]
    for key in all_keys[:2]:
        await kv.put(key, b"before")
    watcher = await kv.watch(pattern)
    seen: list[KvEntry] = []
    collecting = asyncio.create_task(_collect(watcher, seen))
    for key in all_keys[2:]:
        await kv.put(key, b"after")
    await kv.put(keys[-1], b"again")  # the last change: once it is seen, all before it were
    await soon(lambda: any(e.value == b"again" for e in seen))
    await watcher.stop()
    await asyncio.wait_for(collecting, SOON_S)
    assert [e.key for e in seen] == [*keys, keys[-1]]


@pytest.mark.parametrize("key", ["", ".a", "a.", "a..b", "a b", "a*", "a.>", "plug\n", "é"])
async def test_an_invalid_key_is_refused_and_changes_nothing(bus: Bus, key: str) -> None:
    kv = await bus.key_value("plugs")
    for attempt in (kv.put(key, b"v"), kv.get(key), kv.delete(key)):
        with pytest.raises(ValueError, match="invalid key") as error:
            await attempt
        assert repr(key) in str(error.value)
    assert await kv.keys() == []
    assert await kv.put("ok", b"v") == 1  # no revision was taken


@pytest.mark.parametrize("pattern", ["", "a..b", "a.>.b", "a*"])
async def test_an_invalid_watch_pattern_is_refused(bus: Bus, pattern: str) -> None:
    kv = await bus.key_value("plugs")
    with pytest.raises(ValueError, match="invalid key pattern"):
        await kv.watch(pattern)


@pytest.mark.parametrize("bucket", ["", "plug.status", "plug status", "plug/status", "plug>"])
async def test_an_invalid_bucket_is_refused(bus: Bus, bucket: str) -> None:
    with pytest.raises(ValueError, match="invalid bucket") as error:
        await bus.key_value(bucket)
    assert repr(bucket) in str(error.value)
