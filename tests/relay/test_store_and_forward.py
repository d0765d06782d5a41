"""Store-and-forward through a real broker: an outage mid-session loses no reading, bills once.

The relay manager, the mothership and the store run in this process on the wall clock; the
broker is a nats-server of the test's own, stopped and started again on the same port and store.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from evplug import assembly
from evplug.bus.broker import Broker, free_port, start_broker
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts.wire import unpack
from evplug.core.plug import Prompt, State
from evplug.demo import DEMO_DRIVER, STARTING_CREDIT_CENTS, DemoOptions, build
from evplug.store.models import ReadingRow
from tests.bus.nats_state import admin_client
from tests.conftest import on_broker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OUTAGE_S = 30.0  # the figure
POLL_S = 0.25


async def stored_chunks(broker: Broker) -> list[pb.ReadingChunk]:
    """Every telemetry chunk the broker holds, in the order it stored them."""
    nc = await admin_client(broker)
    try:
        js = nc.jetstream()
        last = (await js.stream_info("TELEMETRY")).state.last_seq
        messages = [await js.get_msg("TELEMETRY", n) for n in range(1, last + 1)]
        return [unpack(m.data, pb.ReadingChunk) for m in messages if m.data]
    finally:
        await nc.close()


async def test_readings_taken_while_the_broker_is_down_reach_the_store_once_and_bill(
    tmp_path: Path,
) -> None:
    port = free_port()
    broker = start_broker("127.0.0.1", port, tmp_path / "nats")
    settings = on_broker(tmp_path, broker, relay={"poll_interval_s": POLL_S})
    system = await build(settings, DemoOptions(plugs=1, speed=1.0, car_need_wh=50_000))
    taken: list[pb.ReadingChunk] = []
    poll = system.relay.poll_once

    async def recorded() -> list[pb.ReadingChunk]:
        chunks = await poll()
        taken.extend(chunks)
        return chunks

    system.relay.poll_once = recorded  # type: ignore[method-assign]
    try:
        await system.start()
        plug_id = next(iter(system.relay.channels))

        def state() -> State:
            return system.mothership.plug(plug_id).state

        await wait_for(lambda: state() is State.ACCOUNT_NULL)
        await system.mothership.choose(plug_id, Prompt.ENABLE_SOCKET, DEMO_DRIVER)
        await wait_for(lambda: state() is State.CHARGING)

        broker.stop()
        before = len(taken)
        await asyncio.sleep(OUTAGE_S)  # the relay polls on; its outbox keeps what it took
        during, waiting = taken[before:], len(system.relay.outbox)
        # Up again before asserting: stopping the system with no broker would hide the failure.
        broker = start_broker("127.0.0.1", port, tmp_path / "nats")
        assert len(during) >= OUTAGE_S / POLL_S / 2
        assert waiting >= len(during) - 1

        await wait_for(lambda: len(system.relay.outbox) == 0, timeout_s=30)
        assert state() is State.CHARGING  # the outage did not end the session
        await system.mothership.choose(plug_id, Prompt.DISABLE_SOCKET, DEMO_DRIVER)
        await wait_for(lambda: state() is State.ACCOUNT_NULL, timeout_s=30)
    finally:
        await system.stop()
        chunks = await stored_chunks(broker)
        broker.stop()

    # Counted by chunk seq: each chunk taken reached the broker once, in the order taken.
    seqs = [c.seq for c in chunks]
    assert max(Counter(seqs).values()) == 1 and seqs == sorted(seqs)
    sent = [c for c in taken if c.seq in set(seqs)]
    assert len(taken) - len(sent) <= 1  # at most the last poll, in the outbox at the stop
    assert {c.seq for c in during} <= set(seqs)
    store = await assembly.make_store(settings)
    try:
        async with store.repo.engine.connect() as db:
            rows = await db.execute(
                select(ReadingRow.timestamp_ms).where(ReadingRow.plug_id == plug_id)
            )
            stored = sorted(rows.scalars())
        [session] = await store.repo.sessions.sessions_of_user(DEMO_DRIVER)
        balance = await store.repo.ledger.balance(DEMO_DRIVER)
    finally:
        await store.repo.engine.dispose()
    # ... and in the store, every one of its readings, the outage's too.
    assert stored == sorted(r.timestamp_ms for c in sent for r in c.readings)
    # Billed once, for what the relay's counter metered.
    metered_wh = system.simulated[0].sockets[0].energy_wh
    assert session.end_reason == "driver" and session.energy_wh == pytest.approx(metered_wh, abs=1)
    assert session.cost_cents == round(session.energy_wh / 1000 * session.price_cents_per_kwh)
    assert balance == STARTING_CREDIT_CENTS - session.cost_cents
