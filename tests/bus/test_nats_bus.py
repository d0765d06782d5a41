"""The NATS bus's own workings: its stream table, its errors, its counters.

What every transport promises is in test_contract.py, which runs on NATS too.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg
from nats.js.api import RetentionPolicy
from structlog.testing import capture_logs

from evplug.bus.base import BusError, Message
from evplug.bus.broker import Broker, free_port, start_broker
from evplug.bus.nats import PULL_EXPIRES_S, STREAMS, connect_nats
from evplug.metrics import value
from tests.bus.inbox import Inbox
from tests.bus.nats_state import (
    TEST_STREAMS,
    admin_client,
    fresh_nats_bus,
    stored_messages,
    wipe,
)
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


async def test_every_stream_of_the_table_is_declared_with_its_limits(nats_broker: Broker) -> None:
    await wipe(nats_broker)
    bus = await connect_nats(nats_broker.url, credentials=nats_broker.credentials())
    await bus.close()
    nc = await admin_client(nats_broker)
    try:
        for spec in STREAMS:
            config = (await nc.jetstream().stream_info(spec.name)).config
            assert config.subjects == list(spec.subjects)
            assert config.retention == RetentionPolicy.LIMITS
            assert (config.max_msgs, config.max_bytes) == (spec.max_msgs, spec.max_bytes)
            assert config.max_age == spec.max_age_s
            assert config.duplicate_window == spec.duplicate_window_s
    finally:
        await nc.close()


async def test_a_changed_limit_in_the_table_updates_the_existing_stream(
    nats_broker: Broker,
) -> None:
    await wipe(nats_broker)
    await (await connect_nats(nats_broker.url, credentials=nats_broker.credentials())).close()
    commands = next(s for s in STREAMS if s.name == "COMMANDS")
    smaller = tuple(replace(s, max_msgs=10) if s is commands else s for s in STREAMS)
    creds = nats_broker.credentials()
    await (await connect_nats(nats_broker.url, smaller, credentials=creds)).close()
    nc = await admin_client(nats_broker)
    try:
        assert (await nc.jetstream().stream_info("COMMANDS")).config.max_msgs == 10
    finally:
        await nc.close()


async def test_a_subject_no_stream_takes_is_refused_naming_the_table(nats_broker: Broker) -> None:
    bus = await fresh_nats_bus(nats_broker)
    try:
        with pytest.raises(BusError, match=r"no stream takes 'nowhere\.x'.*STREAMS"):
            await bus.publish("nowhere.x", b"")
        with pytest.raises(BusError, match=r"no stream takes 'nowhere\.\*'"):
            await bus.subscribe("nowhere.*", "d", _never)
    finally:
        await bus.close()


async def _never(msg: object) -> None:
    raise AssertionError("nothing is delivered")


async def test_a_repeated_message_id_is_counted_under_its_stream(nats_broker: Broker) -> None:
    bus = await fresh_nats_bus(nats_broker)
    before = value("evplug_bus_duplicates_total", stream="T")
    try:
        assert await bus.publish("t.a", b"1", msg_id="m1")
        assert not await bus.publish("t.a", b"1", msg_id="m1")
    finally:
        await bus.close()
    assert value("evplug_bus_duplicates_total", stream="T") == before + 1


async def test_an_ack_waits_for_the_broker_as_long_as_any_api_call(
    nats_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sink acks a whole batch at once: the last answer may come well after 1 s on a busy box.
    waits: list[float] = []
    ack_sync = Msg.ack_sync

    async def timed(msg: Msg, timeout: float = 1.0) -> Msg:  # noqa: ASYNC109 - as nats-py
        waits.append(timeout)
        return await ack_sync(msg, timeout)

    monkeypatch.setattr(Msg, "ack_sync", timed)
    await wipe(nats_broker)
    bus = await connect_nats(
        nats_broker.url, TEST_STREAMS, api_timeout_s=7.5, credentials=nats_broker.credentials()
    )
    try:
        inbox = Inbox()
        await bus.subscribe("t.*", "d", inbox)
        await bus.publish("t.a", b"1")
        await wait_for(lambda: waits == [7.5], timeout_s=5)
    finally:
        await bus.close()


async def test_acks_asked_for_together_are_confirmed_by_one_answer_from_the_broker(
    nats_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = 0
    ack_sync = Msg.ack_sync

    async def counted(msg: Msg, timeout: float = 1.0) -> Msg:  # noqa: ASYNC109 - as nats-py
        nonlocal answers
        answers += 1
        return await ack_sync(msg, timeout)

    monkeypatch.setattr(Msg, "ack_sync", counted)
    bus = await fresh_nats_bus(nats_broker)
    nc = await admin_client(nats_broker)
    try:
        inbox = Inbox(ack=False)
        await bus.subscribe("t.*", "d", inbox, max_ack_pending=500)
        await asyncio.gather(*(bus.publish("t.a", b"%d" % i) for i in range(300)))
        await wait_for(lambda: len(inbox.messages) == 300, timeout_s=5)
        await asyncio.gather(*(m.ack() for m in inbox.messages))  # as the sink acks a batch
        assert answers == 1
        info = await nc.jetstream().consumer_info("T", "d")
        assert (info.num_ack_pending, info.num_redelivered) == (0, 0)  # every one acked
        await inbox.messages[0].ack()  # a second ack does nothing, as on the memory bus
        assert answers == 1
    finally:
        await nc.close()
        await bus.close()


async def test_a_caller_that_stops_waiting_for_its_ack_leaves_the_acks_sent_with_it(
    nats_broker: Broker,
) -> None:
    bus = await fresh_nats_bus(nats_broker)
    nc = await admin_client(nats_broker)
    try:
        inbox = Inbox(ack=False)
        await bus.subscribe("t.*", "d", inbox)
        await asyncio.gather(*(bus.publish("t.a", b"%d" % i) for i in range(10)))
        await wait_for(lambda: len(inbox.messages) == 10, timeout_s=5)
        acks = [asyncio.create_task(m.ack()) for m in inbox.messages]
        await asyncio.sleep(0)  # every ack asked for, none confirmed yet
        acks[0].cancel()
        await asyncio.gather(*acks[1:])  # the others are confirmed, not cancelled with it
        info = await nc.jetstream().consumer_info("T", "d")
        assert info.num_ack_pending == 0  # the cancelled caller's ack went too
    finally:
        await nc.close()
        await bus.close()


async def test_a_message_published_with_others_that_cannot_go_is_refused_alone(
    nats_broker: Broker,
) -> None:
    bus = await fresh_nats_bus(nats_broker)
    try:
        big = b"x" * (bus._nc.max_payload + 1)
        answers = await bus.publish_many(
            [("t.a", b"1", "a1"), ("nowhere.a", b"2", "a2"), ("t.a", big, "a3"), ("t.a", b"4", "")]
        )
        assert answers[0] is True and answers[3] is True
        assert isinstance(answers[1], BusError) and "STREAMS in evplug/bus/nats.py" in str(
            answers[1]
        )
        assert isinstance(answers[2], BusError) and "max_payload" in str(answers[2])
        assert await stored_messages(nats_broker) == {
            **(await stored_messages(nats_broker)),
            "T": 2,
        }
    finally:
        await bus.close()


async def test_publishes_the_broker_cannot_answer_are_refused_in_time_and_free_their_places(
    tmp_path: Path,
) -> None:
    broker = start_broker("127.0.0.1", free_port(), tmp_path)
    try:
        bus = await connect_nats(
            broker.url, TEST_STREAMS, api_timeout_s=0.3, credentials=broker.credentials()
        )
        try:
            broker.process.send_signal(signal.SIGSTOP)  # connected, but answering nothing
            try:
                started = time.monotonic()
                answers = await bus.publish_many([("t.a", b"%d" % i, f"s{i}") for i in range(50)])
                assert time.monotonic() - started < 2.0
            finally:
                broker.process.send_signal(signal.SIGCONT)
            assert all(
                isinstance(a, BusError) and "did not answer in time" in str(a) for a in answers
            )
            await asyncio.sleep(0)  # the client hears of the cancellations
            assert bus._js.publish_async_pending() == 0  # none holds a place in the client for good
            # They reached the broker after all: sent again under the same ids, each is dropped.
            again = await bus.publish_many([("t.a", b"%d" % i, f"s{i}") for i in range(50)])
            assert again == [False] * 50
            assert (await stored_messages(broker))["T"] == 50
            broker.process.kill()
            broker.process.wait()
            await wait_for(lambda: not bus._nc.is_connected, timeout_s=5)
            answers = await bus.publish_many([("t.a", b"late", "late")])
            assert isinstance(answers[0], BusError) and "reconnecting" in str(answers[0])
            assert bus._js.publish_async_pending() == 0  # refused before the client took it
        finally:
            await bus.close()
    finally:
        broker.stop()


async def test_a_closed_bus_says_so(nats_broker: Broker) -> None:
    bus = await fresh_nats_bus(nats_broker)
    await bus.close()
    with pytest.raises(BusError, match="connection is closed"):
        await bus.publish("t.a", b"1")


async def test_connecting_where_no_broker_listens_fails_at_once_in_one_line() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(BusError) as error:
        await connect_nats(url, TEST_STREAMS)
    assert time.monotonic() - started < 1.0
    assert str(error.value) == f"broker unreachable at {url}: is `evplug broker` running?"


async def test_after_a_broker_crash_the_bus_reconnects_and_delivery_resumes_at_once(
    tmp_path: Path,
) -> None:
    broker = start_broker("127.0.0.1", free_port(), tmp_path)
    try:
        bus = await connect_nats(
            broker.url, TEST_STREAMS, api_timeout_s=0.5, credentials=broker.credentials()
        )
        acked: list[bytes] = []

        async def ack_then_note(msg: Message) -> None:
            await msg.ack()
            acked.append(msg.data)

        await bus.subscribe("t.*", "d", ack_then_note)
        await bus.publish("t.a", b"before")
        await wait_for(lambda: acked == [b"before"], timeout_s=5)
        broker.process.kill()  # no goodbye: the open pull request is lost without a word
        broker.process.wait()
        # The same store, so the streams and the durable are still there.
        broker = await asyncio.to_thread(start_broker, "127.0.0.1", broker.port, tmp_path)
        async with asyncio.timeout(10):
            while True:  # a publish caught by the crash times out; once reconnected one goes
                with contextlib.suppress(BusError):
                    assert await bus.publish("t.a", b"after", msg_id="after")
                    break
        published = time.monotonic()
        await wait_for(lambda: acked == [b"before", b"after"], timeout_s=PULL_EXPIRES_S + 2)
        assert time.monotonic() - published < 1.0  # asked again on reconnect, not on expiry
        await bus.close()
    finally:
        broker.stop()


async def test_a_durable_deleted_under_its_subscriber_is_logged_with_the_fix(
    nats_broker: Broker,
) -> None:
    bus = await fresh_nats_bus(nats_broker)
    nc = await admin_client(nats_broker)
    try:
        await bus.subscribe("t.*", "d", Inbox())
        with capture_logs() as logs:
            await nc.jetstream().delete_consumer("T", "d")
            await wait_for(lambda: GONE in reasons(logs), timeout_s=5)
        assert reasons(logs) <= {GONE, "409 Consumer Deleted"}
    finally:
        await nc.close()
        await bus.close()


GONE = "no such durable on the broker (deleted?): restart the subscriber to recreate it"


def reasons(logs: list[dict[str, Any]]) -> set[str]:
    """The reasons of the warnings that the durable's pull requests were refused."""
    return {
        e["reason"]
        for e in logs
        if e["event"] == "bus.pull_refused" and e["log_level"] == "warning" and e["durable"] == "d"
    }
