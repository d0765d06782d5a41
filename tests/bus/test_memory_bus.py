"""The embedded bus's own workings: its clock, stream limits and counters.

What every transport promises is in test_contract.py.
"""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from evplug.bus.base import RequestTimeout
from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock, settle
from evplug.metrics import value
from tests.bus.inbox import Inbox


def dropped(stream: str) -> float:
    return value("evplug_bus_messages_dropped_total", stream=stream)


def duplicates(stream: str) -> float:
    return value("evplug_bus_duplicates_total", stream=stream)


def redeliveries(durable: str) -> float:
    return value("evplug_bus_redeliveries_total", durable=durable)


async def test_a_repeated_message_id_is_counted() -> None:
    bus = MemoryBus(FakeClock())
    before = duplicates("t")
    await bus.publish("t.a", b"1", msg_id="m1")
    await bus.publish("t.a", b"1 again", msg_id="m1")
    assert duplicates("t") == before + 1


async def test_unacked_messages_come_back_after_the_ack_wait() -> None:
    clock = FakeClock()
    bus = MemoryBus(clock)
    inbox = Inbox(ack=False)
    await bus.subscribe("t.*", "d", inbox, ack_wait_s=30)
    await bus.publish("t.a", b"1")
    await settle()
    before = redeliveries("d")
    await clock.advance(29)
    assert [m.deliveries for m in inbox.messages] == [1]
    await clock.advance(2)
    assert [m.deliveries for m in inbox.messages] == [1, 2]
    assert redeliveries("d") == before + 1
    await inbox.messages[-1].ack()
    await clock.advance(120)
    assert len(inbox.messages) == 2
    assert bus.pending_count("d") == 0


async def test_a_stopped_subscribers_unacked_messages_go_to_the_next_without_waiting() -> None:
    bus = MemoryBus(FakeClock())  # time never moves: no ack wait passes
    sub = await bus.subscribe("t.*", "d", Inbox(ack=False))
    await bus.publish("t.a", b"1")
    await settle()
    await sub.stop()
    second = Inbox()
    await bus.subscribe("t.*", "d", second)
    await settle()
    assert [(m.data, m.deliveries) for m in second.messages] == [(b"1", 2)]


async def test_the_oldest_messages_are_dropped_and_counted_past_the_limit() -> None:
    bus = MemoryBus(FakeClock(), max_messages=3)
    before = dropped("t")
    for i in range(5):
        await bus.publish("t.a", bytes([i]))
    inbox = Inbox()
    await bus.subscribe("t.*", "d", inbox)
    await settle()
    assert inbox.data == [bytes([2]), bytes([3]), bytes([4])]
    assert dropped("t") == before + 2


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
    before = dropped("telemetry"), dropped("commands")
    await bus.publish("commands.site-1", b"switch on")
    for i in range(50):
        await bus.publish("telemetry.site-1", bytes([i]))
    inbox = Inbox()
    await bus.subscribe("commands.site-1", "relay", inbox)
    await settle()
    assert inbox.data == [b"switch on"]
    assert bus.retained("telemetry") == 10
    assert (dropped("telemetry"), dropped("commands")) == (before[0] + 40, before[1])


async def never_answers(subject: str, data: bytes) -> bytes:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_a_request_times_out_on_the_bus_clock() -> None:
    clock = FakeClock()
    bus = MemoryBus(clock)
    await bus.serve("svc.stuck", never_answers)
    request = asyncio.create_task(bus.request("svc.stuck", b"", timeout_s=5))
    await settle()
    await clock.advance(4.9)
    assert not request.done()
    await clock.advance(0.1)
    assert request.done()
    with pytest.raises(RequestTimeout, match="longer timeout"):
        request.result()


async def test_a_reply_in_time_beats_the_clock() -> None:
    clock = FakeClock()
    bus = MemoryBus(clock)
    answer = asyncio.Event()

    async def waits_for_its_cue(subject: str, data: bytes) -> bytes:
        await answer.wait()
        return b"done"

    await bus.serve("svc.cued", waits_for_its_cue)
    request = asyncio.create_task(bus.request("svc.cued", b"", timeout_s=5))
    await clock.advance(4.9)
    answer.set()
    await settle()
    assert request.result() == b"done"
    await clock.advance(10)  # the timeout that did not fire stays harmless


@pytest.mark.parametrize(
    "responder_returns", [RuntimeError("responder bug"), "text"], ids=["raises", "returns-str"]
)
async def test_a_failing_responder_is_logged_and_its_requester_times_out(
    responder_returns: object,
) -> None:
    clock = FakeClock()
    bus = MemoryBus(clock)

    async def responder(subject: str, data: bytes) -> bytes:
        if isinstance(responder_returns, Exception):
            raise responder_returns
        return responder_returns  # type: ignore[return-value]

    await bus.serve("svc.bad", responder)
    with capture_logs() as logs:
        request = asyncio.create_task(bus.request("svc.bad", b"", timeout_s=1))
        await settle()
        await clock.advance(1)
    assert request.done()
    with pytest.raises(RequestTimeout):
        request.result()
    [failure] = [e for e in logs if e["event"] == "bus.responder_failed"]
    assert failure["subject"] == "svc.bad" and failure["log_level"] == "error"


async def test_a_value_that_is_not_bytes_is_refused() -> None:
    kv = await MemoryBus(FakeClock()).key_value("plugs")
    with pytest.raises(TypeError, match="encode it to bytes"):
        await kv.put("site-1.plug-1", "idle")  # type: ignore[arg-type]
    assert await kv.keys() == []
