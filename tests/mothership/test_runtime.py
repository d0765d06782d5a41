"""The mothership with its real parts (memory bus, SQLite, simulated relays) in fast time."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator

import pytest

from evplug.assembly import System
from evplug.bus.base import Message
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack, unpack
from evplug.core import ledger
from evplug.core.plug import Effect, MeterAnomaly, Prompt, SessionClosed, State, Transitioned
from evplug.core.pricing import affordable_wh
from evplug.demo import DEMO_DRIVER, DEMO_SITE, STARTING_CREDIT_CENTS
from evplug.metrics import value
from evplug.mothership.actions import ActionRefused
from evplug.mothership.registry import UnknownPlug
from evplug.mothership.runtime import Mothership
from evplug.store.database import make_engine, sqlite_url
from evplug.store.repository import Repository
from evplug.store.telemetry import ReadingSink
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


CAR_NEED_WH = 400.0  # the demo_system fixture's car


class RelayCounter:
    """One plug's energy counter as its relay reported it on the bus, by reading time, and what
    the plug's meter said of it: the truth a bill is checked against, reading by reading.

    Every Wh the counter counted in a session is billed or reported discarded (a meter anomaly:
    more than the socket's rated power could deliver between the two readings' stamps, a 1 s
    slack included). The demo's time runs 300 times faster than the machine's, so a loaded
    machine's latency between a relay's measurement and its reading's stamp (20 ms: 6 s of demo
    time) can exceed that slack; at real speed it is a thousandth of it.
    """

    def __init__(self, plug_id: str) -> None:
        self.plug_id = plug_id
        self.wh_at: dict[int, float] = {}
        self.effects: list[Effect] = []  # the mothership's, attached to its events

    async def on_chunk(self, msg: Message) -> None:
        for r in unpack(msg.data, pb.ReadingChunk).readings:
            if r.plug_id == self.plug_id and r.HasField("energy_wh"):
                self.wh_at[r.timestamp_ms] = r.energy_wh
        await msg.ack()

    def reading_before(self, at_ms: int) -> int:
        return max(t for t in self.wh_at if t < at_ms)

    def counted(self, from_ms: int, to_ms: int) -> float:
        """What it counted from its last reading before ``from_ms`` to its reading at ``to_ms``."""
        return self.wh_at[to_ms] - self.wh_at[self.reading_before(from_ms)]

    def billable(self, from_ms: int, to_ms: int) -> float:
        """What it counted less what the plug reported it discarded, up to ``to_ms``."""
        discarded = sum(
            e.discarded_wh
            for e in self.effects
            if isinstance(e, MeterAnomaly) and e.plug_id == self.plug_id and e.at_ms <= to_ms
        )
        return self.counted(from_ms, to_ms) - discarded

    @property
    def closed(self) -> bool:
        return any(isinstance(e, SessionClosed) for e in self.effects)

    def transition_to(self, state: State) -> Transitioned:
        [found] = [e for e in self.effects if isinstance(e, Transitioned) and e.to_state is state]
        return found


@contextlib.asynccontextmanager
async def relay_counter(system: System, plug_id: str) -> AsyncIterator[RelayCounter]:
    """Watch ``plug_id``'s counter, and the mothership's effects, from a reading taken now."""
    counter = RelayCounter(plug_id)
    system.mothership.events.attach(counter.effects.append)
    subject = subjects.for_site(subjects.TELEMETRY, DEMO_SITE)
    watching = await system.bus.subscribe(subject, "test-relay-counter", counter.on_chunk)
    try:
        await wait_for(lambda: bool(counter.wh_at))
        yield counter
    finally:
        await watching.stop()


async def test_a_session_survives_a_restart_and_is_billed_once(demo_system, tmp_path) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    first = system.mothership
    async with relay_counter(system, plug_id) as counter:
        await first.choose(plug_id, Prompt.ENABLE_SOCKET, DEMO_DRIVER)
        plug = first.plug(plug_id)
        await wait_for(lambda: plug.state is State.CHARGING and plug.energy_wh > 50)
        session_id = plug.session_id

        await first.stop()  # the process dies mid-session; the relay carries on publishing
        energy_at_stop = plug.energy_wh

        engine = make_engine(sqlite_url(tmp_path / "evplug.sqlite3"))
        repo = Repository(engine)
        second = Mothership(system.bus, repo, ReadingSink(engine), system.clock)
        system.mothership = second  # so the fixture stops the one that runs
        second.events.attach(counter.effects.append)
        await second.start()
        revived = second.plug(plug_id)
        assert revived.state is State.CHARGING
        assert revived.session_id == session_id
        assert revived.energy_wh >= energy_at_stop * 0.9  # at least up to the last checkpoint

        await wait_for(lambda: counter.closed, timeout_s=30)
    session = await repo.sessions.get_session(session_id)
    assert session is not None and session.ended_ms is not None
    assert session.end_reason == "complete"
    # What the relay counted up to the reading that ended the session, once, nothing lost
    # across the restart; and what it counted is what the car needed.
    ended_ms = counter.transition_to(State.CHARGE_COMPLETE).at_ms
    assert session.energy_wh == pytest.approx(counter.billable(session.started_ms, ended_ms))
    assert counter.counted(session.started_ms, ended_ms) == pytest.approx(CAR_NEED_WH, abs=1.0)
    charges = [e for e in await repo.ledger.entries(DEMO_DRIVER) if e.kind == "session_charge"]
    assert [e.idempotency_key for e in charges] == [f"session:{session_id}"]
    assert charges[0].amount_cents == -session.cost_cents
    balance = await repo.ledger.balance(DEMO_DRIVER)
    assert (
        balance
        == STARTING_CREDIT_CENTS - session.cost_cents
        == await repo.ledger.ledger_sum(DEMO_DRIVER)
    )
    await engine.dispose()


async def test_credit_running_out_switches_the_socket_off(demo_system) -> None:
    system = await demo_system(car_need_wh=20_000.0)
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)

    # Leave the driver 10 cents: a third of a kWh.
    await system.repo.ledger.post(
        ledger.adjustment(DEMO_DRIVER, "t", 10 - STARTING_CREDIT_CENTS, 0, "test", "leave 10 c")
    )
    async with relay_counter(system, plug_id) as counter:
        await system.mothership.choose(plug_id, Prompt.ENABLE_SOCKET, DEMO_DRIVER)

        def seen() -> list[State]:
            return [e.to_state for e in counter.effects if isinstance(e, Transitioned)]

        await wait_for(
            lambda: State.INSUFFICIENT_CREDIT in seen() and seen()[-1] is State.ACCOUNT_NULL
        )
    assert not system.simulated[0].sockets[0].relay_on
    session = (await system.repo.sessions.sessions_of_user(DEMO_DRIVER))[0]
    assert session.end_reason == "insufficient_credit"
    # Stopped at the first reading past the credit, billed what the relay counted up to it.
    crossed_ms = counter.transition_to(State.INSUFFICIENT_CREDIT).at_ms
    started_ms, before_ms = session.started_ms, counter.reading_before(crossed_ms)
    credit_wh = affordable_wh(10, session.price_cents_per_kwh)
    assert counter.billable(started_ms, before_ms) < credit_wh <= session.energy_wh
    assert session.energy_wh == pytest.approx(counter.billable(started_ms, crossed_ms))
    assert session.cost_cents >= 10
    assert await system.repo.ledger.balance(DEMO_DRIVER) == 10 - session.cost_cents


REJECTED_CHUNK = ("invalid", "foreign_site")
REJECTED_READING = ("unknown_plug", "future")


async def test_bad_telemetry_is_counted_and_changes_nothing(demo_system) -> None:
    system = await demo_system()
    await system.start()
    ms = system.mothership
    subject = subjects.for_site(subjects.TELEMETRY, DEMO_SITE)
    stranger = pb.ReadingChunk(site_id=DEMO_SITE, seq=1)
    stranger.readings.add(plug_id="shelly:ffffffffffff:0", timestamp_ms=1, active_power_w=9)
    forged = pb.ReadingChunk(site_id="other-site", seq=2)

    def rejected() -> tuple[float, ...]:
        chunks = [value("evplug_chunks_rejected_total", reason=r) for r in REJECTED_CHUNK]
        readings = [value("evplug_readings_rejected_total", reason=r) for r in REJECTED_READING]
        return (*chunks, *readings)

    before = rejected()
    await system.bus.publish(subject, b"garbage")
    await system.bus.publish(subject, gzip.compress(b"\0" * 50_000_000))
    await system.bus.publish(subject, pack(forged))
    await system.bus.publish(subject, pack(stranger))
    moved = (2, 1, 1, 0)  # garbage and a gzip bomb; a forged site; a plug never announced
    await wait_for(lambda: rejected() == tuple(b + m for b, m in zip(before, moved, strict=True)))
    plug_id = system.simulated[0].info.plug_id(0)
    ahead = pb.ReadingChunk(site_id=DEMO_SITE, seq=3)
    far = system.clock.now_ms() + 24 * 3_600_000
    ahead.readings.add(plug_id=plug_id, timestamp_ms=far, actual_state=pb.ACTUAL_STATE_OFF)
    await system.bus.publish(subject, pack(ahead))
    await wait_for(lambda: rejected()[3] == before[3] + 1)
    assert ms.plug(plug_id).last_reading_ms < far  # later true readings still count
    assert "shelly:ffffffffffff:0" not in ms.plugs
    await wait_for(lambda: system.bus.pending_count("mothership-telemetry") == 0)


async def test_driver_errors_are_clear(demo_system) -> None:
    system = await demo_system()
    await system.start()
    ms = system.mothership
    plug_id = system.simulated[0].info.plug_id(0)
    with pytest.raises(UnknownPlug):
        await ms.choose("nope", Prompt.ENABLE_SOCKET, DEMO_DRIVER)
    await ms.choose(plug_id, Prompt.ENABLE_SOCKET, DEMO_DRIVER)
    with pytest.raises(ActionRefused, match="already have a session"):
        await ms.choose(plug_id, Prompt.ENABLE_SOCKET, DEMO_DRIVER)


async def test_a_close_the_store_refuses_once_is_parked_and_billed_on_retry(demo_system) -> None:
    system = await demo_system()
    await system.start()
    ms, repo = system.mothership, system.repo
    plug_id = system.simulated[0].info.plug_id(0)
    real_write = repo.effects.write
    failures: list[str] = []

    async def flaky_close(batch, now_ms):  # the database is briefly unavailable
        closes = [e for w in batch for e in w.effects if isinstance(e, SessionClosed)]
        if closes and not failures:
            failures.append(closes[0].session_id)
            raise ConnectionError("database unavailable")
        return await real_write(batch, now_ms)

    repo.effects.write = flaky_close  # type: ignore[method-assign]
    billed: list[SessionClosed] = []
    ms.events.attach(lambda e: billed.append(e) if isinstance(e, SessionClosed) else None)
    await ms.choose(plug_id, Prompt.ENABLE_SOCKET, DEMO_DRIVER)
    await wait_for(lambda: bool(billed), timeout_s=30)
    assert failures == [billed[0].session_id]
    session = await repo.sessions.get_session(billed[0].session_id)
    assert session is not None and session.ended_ms is not None
    charges = [e for e in await repo.ledger.entries(DEMO_DRIVER) if e.kind == "session_charge"]
    assert len(charges) == 1
    assert await repo.ledger.balance(DEMO_DRIVER) == await repo.ledger.ledger_sum(DEMO_DRIVER)


async def test_two_enables_of_one_plug_at_once_give_one_session(demo_system) -> None:
    system = await demo_system()
    await system.start()
    ms, repo = system.mothership, system.repo
    real_get_user = repo.users.get_user

    async def slow_get_user(user_id):  # a database a few milliseconds away, as PostgreSQL is
        await asyncio.sleep(0.005)
        return await real_get_user(user_id)

    repo.users.get_user = slow_get_user  # type: ignore[method-assign]
    plug_id = system.simulated[0].info.plug_id(0)
    results = await asyncio.gather(
        ms.choose(plug_id, Prompt.ENABLE_SOCKET, DEMO_DRIVER),
        ms.choose(plug_id, Prompt.ENABLE_SOCKET, DEMO_DRIVER),
        return_exceptions=True,
    )
    assert sum(isinstance(r, ActionRefused) for r in results) == 1
    assert sum(1 for p in ms.plugs.values() if p.user_id == DEMO_DRIVER) == 1
