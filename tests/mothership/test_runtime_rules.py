"""The runtime's money and safety rules on a fake clock: admission, order of effects, retries."""

from __future__ import annotations

import asyncio
import gzip

import pytest
import structlog

from evplug import metrics
from evplug.bus.base import Message
from evplug.clock import settle
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import MAX_DEVICES_PER_ANNOUNCEMENT, pack, unpack
from evplug.core import ledger
from evplug.core.plug import Prompt, SessionClosed, State, Transitioned
from tests.mothership.conftest import MakeSite
from tests.mothership.harness import CREDIT_CENTS, SITE, FakeMessage, Site


def ons(site: Site) -> list[str]:
    return [c.plug_id for c in site.commands if c.requested_state == pb.REQUESTED_STATE_ON]


@pytest.mark.parametrize(("limit_a", "allowed"), [(10.0, 1), (20.0, 2), (32.0, 3)])
async def test_admission_never_exceeds_the_circuit_limit(
    make_site: MakeSite, limit_a: float, allowed: int
) -> None:
    site = await make_site(plugs=4, circuit_limit_a=limit_a)
    for n, plug_id in enumerate(site.plug_ids):
        await site.add_driver(f"d{n}")
        await site.enable(plug_id, f"d{n}")
        site.sockets[plug_id].power_w = 2300.0
    for _ in range(4):  # switch-ons are staggered; each car is seen charging before the next
        await site.answer()
        await site.read()
        await site.advance(3)
    await site.answer()
    assert len(ons(site)) == allowed
    queued = [p for p in site.plug_ids if site.ms.plug(p).state is State.IN_QUEUE]
    assert len(queued) == 4 - allowed
    assert sum(s.on for s in site.sockets.values()) == allowed

    # One driver leaves: the oldest in the queue takes the freed place, and no more.
    first = site.plug_ids[0]
    await site.ms.choose(first, Prompt.DISABLE_SOCKET, "d0")
    await site.answer()
    await site.advance(1)
    await site.answer()
    if queued:
        assert ons(site)[-1] == queued[0]
    assert sum(s.on for s in site.sockets.values()) == allowed


async def test_the_session_is_on_disk_before_the_relay_is_switched_on(make_site: MakeSite) -> None:
    site = await make_site()
    await site.add_driver("d")
    plug_id = site.plug_ids[0]
    publish = site.bus.publish
    seen_on_disk: list[tuple[str, str | None]] = []

    async def checking_publish(subject: str, data: bytes, msg_id: str = "") -> bool:
        if subject.startswith(subjects.COMMANDS):
            plug = site.ms.plug(plug_id)
            session = await site.repo.sessions.get_session(plug.session_id)
            stored = {r.id: r.state for r in await site.repo.sites.load_plugs()}[plug_id]
            seen_on_disk.append((stored, session and session.id))
        return await publish(subject, data, msg_id)

    site.bus.publish = checking_publish  # type: ignore[method-assign]
    await site.enable(plug_id, "d")
    session_id = site.ms.plug(plug_id).session_id
    assert seen_on_disk == [("SENSING_START_ISSUED_LOCALLY", session_id)]


async def test_effects_the_store_refused_are_retried_on_tick(make_site: MakeSite) -> None:
    site = await make_site()
    await site.add_driver("d")
    plug_id = site.plug_ids[0]
    site.sockets[plug_id].power_w = 2300.0
    await site.enable(plug_id, "d")
    await site.answer()
    await site.advance(60)
    await site.read(60)

    real_write = site.repo.effects.write
    refusals: list[str] = []

    async def close_once_refused(batch, now_ms):  # the database restarts at that moment
        closes = [e for w in batch for e in w.effects if isinstance(e, SessionClosed)]
        if closes and not refusals:
            refusals.append(closes[0].session_id)
            raise ConnectionError("database unavailable")
        return await real_write(batch, now_ms)

    site.repo.effects.write = close_once_refused  # type: ignore[method-assign]
    await site.ms.choose(plug_id, Prompt.DISABLE_SOCKET, "d")
    await site.answer()  # the relay confirms OFF: the close is attempted and refused
    assert refusals and site.ms.plug(plug_id).state is State.ACCOUNT_NULL
    assert site.ms.pending.waiting(plug_id) > 0
    session = await site.repo.sessions.get_session(refusals[0])
    assert session is not None and session.ended_ms is None

    await site.advance(2)  # no reading, no driver: only the tick can apply it
    session = await site.repo.sessions.get_session(refusals[0])
    assert session is not None and session.ended_ms is not None and session.cost_cents
    assert site.ms.pending.waiting(plug_id) == 0
    assert await site.repo.ledger.balance("d") == CREDIT_CENTS - session.cost_cents


async def test_store_outage_with_overlapping_applies_loses_no_effect(make_site: MakeSite) -> None:
    site = await make_site()
    await site.add_driver("d")
    plug_id = site.plug_ids[0]
    site.sockets[plug_id].power_w = 2300.0
    applied: list[object] = []
    site.ms.events.attach(applied.append)
    await site.enable(plug_id, "d")
    await site.answer()
    await site.read()

    real_write = site.repo.effects.write
    down = True

    async def flaky_write(batch, now_ms):  # a slow, failing database
        await asyncio.sleep(0)
        if down:
            raise ConnectionError("database unavailable")
        return await real_write(batch, now_ms)

    site.repo.effects.write = flaky_write  # type: ignore[method-assign]
    await site.advance(2)
    # A reading that starts the charge and the driver's Disable race each other.
    await asyncio.gather(
        site.read(), site.ms.choose(plug_id, Prompt.DISABLE_SOCKET, "d"), return_exceptions=True
    )
    await site.advance(5)
    # Nothing is commanded before the store has what it follows from: the OFF waits too.
    assert site.ms.plug(plug_id).state is State.ACCOUNT_REMOVAL_ISSUED_LOCALLY
    assert site.ms.pending.waiting(plug_id) > 0 and await site.answer() == []

    down = False
    await site.advance(20)  # past the longest backoff so far
    assert {c.requested_state for c in await site.answer()} == {pb.REQUESTED_STATE_OFF}
    assert site.ms.pending.waiting(plug_id) == 0
    path = [e.to_state for e in applied if isinstance(e, Transitioned)]
    assert path[-1] is State.ACCOUNT_NULL
    assert State.CHARGING in path and State.ACCOUNT_REMOVAL_ISSUED_LOCALLY in path
    closed = [e for e in applied if isinstance(e, SessionClosed)]
    assert len(closed) == 1
    session = await site.repo.sessions.get_session(closed[0].session_id)
    assert session is not None and session.ended_ms is not None
    assert await site.repo.ledger.balance("d") == CREDIT_CENTS - closed[0].cost_cents


async def test_a_plug_that_can_never_be_written_holds_up_no_other(make_site: MakeSite) -> None:
    site = await make_site(plugs=2)
    broken, healthy = site.plug_ids
    for plug_id, driver in ((broken, "a"), (healthy, "b")):
        await site.add_driver(driver)
        site.sockets[plug_id].power_w = 2300.0
    await site.enable(broken, "a")
    await site.answer()
    real_write = site.repo.effects.write

    async def refuse_broken(batch, now_ms):  # e.g. a row the database rejects for good
        if any(w.plug_id == broken for w in batch):
            raise ValueError("value too long for column")
        return await real_write(batch, now_ms)

    site.repo.effects.write = refuse_broken  # type: ignore[method-assign]
    await site.advance(2)
    await site.read()  # the broken plug starts charging: its transition cannot be written
    assert site.ms.pending.waiting(broken) > 0

    await site.enable(healthy, "b")
    # The healthy plug's relay never answers: only ticks move it on, and they still do.
    await site.advance(61)
    assert site.ms.plug(healthy).state is State.SENSING_START_NOT_RESPONDING
    assert site.ms.pending.waiting(healthy) == 0
    assert site.ms.pending.stuck(broken) and site.ms.pending.waiting(broken) > 0


async def test_a_close_beyond_the_balance_is_recorded_as_debt_and_alerted(
    make_site: MakeSite,
) -> None:
    site = await make_site()
    await site.add_driver("d", credit_cents=100)
    plug_id = site.plug_ids[0]
    site.sockets[plug_id].power_w = 2300.0
    await site.enable(plug_id, "d")
    await site.answer()
    for _ in range(10):
        await site.advance(60)
        await site.read(60)
    # A card payment is disputed mid-session: the balance drops under what is being charged.
    await site.repo.ledger.post(ledger.adjustment("d", "dispute:1", -95, 0, "ops", "card disputed"))
    debt_before = metrics.value("evplug_debt_cents_total")
    with structlog.testing.capture_logs() as logs:
        await site.ms.choose(plug_id, Prompt.DISABLE_SOCKET, "d")
        await site.answer()
    session = (await site.repo.sessions.sessions_of_user("d"))[0]
    assert session.cost_cents is not None and session.cost_cents > 5
    owed = session.cost_cents - 5
    assert await site.repo.ledger.balance("d") == -owed == await site.repo.ledger.ledger_sum("d")
    assert metrics.value("evplug_debt_cents_total") - debt_before == owed
    alert = next(e for e in logs if e["event"] == "session.debt")
    assert alert["log_level"] == "error" and alert["debt_cents"] == owed


async def test_each_plug_status_is_in_the_store_and_names_no_driver(make_site: MakeSite) -> None:
    site = await make_site()
    await site.add_driver("driver-7f3a")
    plug_id = site.plug_ids[0]
    store = await site.bus.key_value(subjects.PLUG_STATUS_BUCKET)
    key = subjects.status_key(SITE, plug_id)

    async def stored() -> pb.PlugStatus:
        await site.ms.status.flush()
        entry = await store.get(key)
        assert entry is not None
        return unpack(entry.value, pb.PlugStatus)

    assert (await stored()).prompts == ["Enable Socket"]
    site.sockets[plug_id].power_w = 2300.0
    await site.enable(plug_id, "driver-7f3a")
    await site.answer()
    await site.advance(2)
    await site.read()
    status = await stored()
    assert status.state == "CHARGING" and status.active_power_w == 2300.0
    assert b"driver-7f3a" not in status.SerializeToString()
    assert status.session_id and status.prompts == ["Disable Socket"]

    revision = (await store.get(key)).revision  # type: ignore[union-attr]
    await site.ms.status.flush()  # nothing changed: nothing put
    assert (await store.get(key)).revision == revision  # type: ignore[union-attr]


async def test_a_driver_request_on_the_bus_is_answered_with_a_reason(make_site: MakeSite) -> None:
    site = await make_site()
    await site.add_driver("d", credit_cents=0)
    plug_id = site.plug_ids[0]
    subject = subjects.for_site(subjects.DRIVER, SITE)

    async def ask(prompt: str, user_id: str = "d", plug: str = plug_id) -> pb.DriverReply:
        request = pb.DriverRequest(request_id="r", user_id=user_id, plug_id=plug, prompt=prompt)
        return unpack(await site.bus.request(subject, pack(request)), pb.DriverReply)

    low = await ask("Enable Socket")
    assert low.code == pb.DRIVER_REPLY_CODE_REFUSED and "top up" in low.reason
    assert (await ask("Enable Socket", plug="sim:nope:0")).code == pb.DRIVER_REPLY_CODE_UNKNOWN_PLUG
    assert (await ask("Explode")).code == pb.DRIVER_REPLY_CODE_BAD_REQUEST
    assert (await ask("Enable Socket", user_id="")).code == pb.DRIVER_REPLY_CODE_BAD_REQUEST
    garbage = unpack(await site.bus.request(subject, b"junk"), pb.DriverReply)
    assert garbage.code == pb.DRIVER_REPLY_CODE_BAD_REQUEST
    assert site.ms.plug(plug_id).state is State.ACCOUNT_NULL  # nothing changed

    await site.add_driver("rich")
    ok = await ask("Enable Socket", user_id="rich")
    assert ok.code == pb.DRIVER_REPLY_CODE_OK and ok.status.prompts == ["Disable Socket"]
    other = await ask("Disable Socket", user_id="d")
    assert other.code == pb.DRIVER_REPLY_CODE_REFUSED and "another driver" in other.reason


async def announce(site: Site, devices: list[pb.Device]) -> pb.DeviceAnnouncementAck:
    acks: list[pb.DeviceAnnouncementAck] = []

    async def collect(msg: Message) -> None:
        acks.append(unpack(msg.data, pb.DeviceAnnouncementAck))
        await msg.ack()

    sub = await site.bus.subscribe(subjects.for_site(subjects.ANNOUNCE_ACK, SITE), "t", collect)
    announcement = pb.DeviceAnnouncement(site_id=SITE, announcement_id="a2", devices=devices)
    await site.ms.handlers.on_announce(
        FakeMessage(subjects.for_site(subjects.ANNOUNCE, SITE), pack(announcement))
    )
    await settle()
    await sub.stop()
    return next(a for a in acks if a.announcement_id == "a2")


async def test_announced_devices_are_checked_one_by_one(make_site: MakeSite) -> None:
    site = await make_site()
    circuits_before = dict(site.ms.registry.circuit_limits)
    ack = await announce(
        site,
        [
            pb.Device(plug_id="", fuze_id="main"),
            pb.Device(plug_id="x" * 5_000, fuze_id="main"),
            pb.Device(plug_id="sim:bad.id:0"),
            pb.Device(plug_id="sim:ok:1", fuze_id="a/b"),
            pb.Device(plug_id="sim:ok:2", model="m" * 500),
            pb.Device(plug_id="sim:ok:3", fuze_id="main", model="fake"),
        ],
    )
    assert list(ack.accepted_plug_ids) == ["sim:ok:3"]
    assert len(ack.rejected_plug_ids) == 5
    assert "may not be empty" in ack.rejected_reasons[""]
    assert "use at most 128" in ack.rejected_reasons["x" * 5_000]
    assert "'.'" in ack.rejected_reasons["sim:bad.id:0"]
    assert "x" * 5_000 not in site.ms.plugs and "sim:ok:1" not in site.ms.plugs
    assert site.ms.registry.circuit_limits == circuits_before  # no circuit made for the bad


async def test_an_announcement_over_the_cap_is_refused_whole(make_site: MakeSite) -> None:
    site = await make_site()
    devices = [pb.Device(plug_id=f"sim:flood:{n}") for n in range(MAX_DEVICES_PER_ANNOUNCEMENT + 1)]
    ack = await announce(site, devices)
    assert not ack.accepted_plug_ids and len(ack.rejected_plug_ids) == len(devices)
    assert "split it" in ack.rejected_reasons["sim:flood:0"]
    assert len(site.ms.plugs) == 2 and len(site.ms.registry.circuit_limits) == 1


async def test_a_top_up_mid_session_raises_its_credit_limit(make_site: MakeSite) -> None:
    site = await make_site()
    await site.add_driver("d", credit_cents=10)  # a third of a kWh at 30 c/kWh
    plug_id = site.plug_ids[0]
    site.sockets[plug_id].power_w = 2300.0
    await site.enable(plug_id, "d")
    await site.answer()
    await site.read(60)
    await site.repo.ledger.post(ledger.top_up("d", "pi_topup", 1_000, 0))
    change = pb.BalanceChanged(user_id="d", ledger_key="pi:pi_topup")
    acked = FakeMessage(subjects.BALANCE_CHANGED, pack(change))
    await site.ms.handlers.on_balance_changed(acked)
    assert acked.acked
    for _ in range(15):  # 2300 W for 15 min: ~575 Wh, ~17 c, well past the first 10 c
        await site.advance(60)
        await site.read(60)
    plug = site.ms.plug(plug_id)
    assert plug.state is State.CHARGING and plug.session_cost_cents > 10


async def test_a_balance_change_of_a_driver_without_a_session_changes_nothing(
    make_site: MakeSite,
) -> None:
    site = await make_site()
    await site.add_driver("d")
    message = FakeMessage(subjects.BALANCE_CHANGED, pack(pb.BalanceChanged(user_id="d")))
    await site.ms.handlers.on_balance_changed(message)
    garbage = FakeMessage(subjects.BALANCE_CHANGED, b"junk")
    await site.ms.handlers.on_balance_changed(garbage)
    assert message.acked and garbage.acked
    assert all(site.ms.plug(p).state is State.ACCOUNT_NULL for p in site.plug_ids)


async def test_a_trip_mid_charge_bills_what_was_metered_and_releases(make_site: MakeSite) -> None:
    site = await make_site()
    await site.add_driver("d")
    plug_id = site.plug_ids[0]
    socket = site.sockets[plug_id]
    socket.power_w = 2300.0
    await site.enable(plug_id, "d")
    await site.answer()
    for _ in range(10):
        await site.advance(60)
        await site.read(60)
    metered = socket.counter_wh
    socket.on, socket.tripped = False, True  # overpower: the relay opens by itself
    await site.advance(2)
    await site.read()
    await site.answer()  # the OFF sent to be sure: the relay answers it is tripped
    await site.advance(2)
    await site.read()
    plug = site.ms.plug(plug_id)
    assert plug.state is State.ACCOUNT_NULL and not plug.session_id
    [session] = await site.repo.sessions.sessions_of_user("d")
    assert session.end_reason == "tripped" and session.energy_wh == pytest.approx(metered, rel=0.01)
    assert await site.repo.ledger.balance("d") == CREDIT_CENTS - session.cost_cents
    await site.advance(120)  # and it is never switched back on by itself
    await site.read()
    assert ons(site) == [plug_id] and not socket.on
    assert site.ms.registry.plugs_of_user("d") == []  # the account holds no plug now


@pytest.mark.parametrize(
    ("flow", "message", "handler"),
    [
        (subjects.RESPONSES, "LocalStateResponse", "on_response"),
        (subjects.ANNOUNCE, "DeviceAnnouncement", "on_announce"),
        (subjects.BALANCE, "BalanceChanged", "on_balance_changed"),
    ],
)
@pytest.mark.parametrize(
    "junk", [b"not gzip", gzip.compress(b"\xff" * 64), gzip.compress(b"\0" * 50_000_000)]
)
async def test_unreadable_messages_are_acked_counted_and_change_nothing(
    make_site: MakeSite, flow: str, message: str, handler: str, junk: bytes
) -> None:
    site = await make_site()
    before = metrics.value("evplug_messages_rejected_total", message=message)
    states = {p: site.ms.plug(p).state for p in site.plug_ids}
    msg = FakeMessage(f"{flow}.{SITE}", junk)
    await getattr(site.ms.handlers, handler)(msg)
    assert msg.acked  # it would come back forever otherwise
    assert metrics.value("evplug_messages_rejected_total", message=message) == before + 1
    assert {p: site.ms.plug(p).state for p in site.plug_ids} == states
