"""The mothership with its real parts (memory bus, SQLite, simulated relays) in fast time."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack
from evplug.core import ledger
from evplug.core.plug import Prompt, SessionClosed, State, Transitioned
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


async def test_a_session_survives_a_restart_and_is_billed_once(demo_system, tmp_path) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    first = system.mothership
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
    await second.start()
    revived = second.plug(plug_id)
    assert revived.state is State.CHARGING
    assert revived.session_id == session_id
    assert revived.energy_wh >= energy_at_stop * 0.9  # at least up to the last checkpoint

    closed: list[SessionClosed] = []
    second.events.attach(lambda e: closed.append(e) if isinstance(e, SessionClosed) else None)
    await wait_for(lambda: bool(closed), timeout_s=30)
    session = await repo.sessions.get_session(session_id)
    assert session is not None and session.ended_ms is not None
    assert session.end_reason == "complete"
    # The car took what it needed, and the counter says so: nothing lost across the restart.
    assert session.energy_wh == pytest.approx(400, rel=0.05)
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
    seen: list[State] = []
    system.mothership.events.attach(
        lambda e: seen.append(e.to_state) if isinstance(e, Transitioned) else None
    )
    await system.mothership.choose(plug_id, Prompt.ENABLE_SOCKET, DEMO_DRIVER)
    await wait_for(lambda: State.INSUFFICIENT_CREDIT in seen and seen[-1] is State.ACCOUNT_NULL)
    assert not system.simulated[0].sockets[0].relay_on
    session = (await system.repo.sessions.sessions_of_user(DEMO_DRIVER))[0]
    assert session.end_reason == "insufficient_credit"
    # Stopped at the first reading past the credit: at most one reading's worth over.
    assert 10 <= session.cost_cents <= 11
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
