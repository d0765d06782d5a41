"""Telemetry the bus delivers again (its first delivery was not acked within the ack wait): its
readings are repeats, never a relay whose clock stepped back, so they bill nothing twice and
decide nothing about the session."""

from __future__ import annotations

import pytest

from evplug.contracts import evplug_pb2 as pb
from evplug.core.plug import Prompt, State
from tests.mothership.conftest import MakeSite
from tests.mothership.harness import CREDIT_CENTS, FakeMessage, Site

ACK_WAIT_S = 30  # the bus's default: a chunk comes back this long after it was delivered


async def redeliver(site: Site, messages: list[FakeMessage]) -> None:
    """The bus delivers ``messages`` again, in order, as it does when their acks are late."""
    for message in messages:
        again = FakeMessage(message.subject, message.data, message.msg_id, message.deliveries + 1)
        await site.ms.handlers.on_telemetry(again)
    await site.ms.pending.idle()
    await site.ms.sink.flush()


async def test_a_backlog_delivered_again_bills_the_relays_counter_once(make_site: MakeSite) -> None:
    site = await make_site(plugs=1)
    await site.add_driver("d")
    plug_id = site.plug_ids[0]
    socket = site.sockets[plug_id]  # a new relay: its counter starts from zero
    socket.power_w = 2400.0
    await site.enable(plug_id, "d")
    unacked = [await site.read()]
    await site.advance(2)
    unacked.append(await site.read())  # the ON is on its way: the relay reads OFF, counts zero
    await site.answer()
    for _ in range(ACK_WAIT_S // 2):
        await site.advance(2)
        unacked.append(await site.read())
    plug = site.ms.plug(plug_id)
    assert plug.state is State.CHARGING

    await redeliver(site, unacked)
    for _ in range(5):
        await site.advance(2)
        await site.read()
    assert plug.state is State.CHARGING
    assert plug.energy_wh == pytest.approx(socket.counter_wh)

    await site.ms.choose(plug_id, Prompt.DISABLE_SOCKET, "d")
    await site.answer()
    await site.advance(2)
    await site.read()
    [session] = await site.repo.sessions.sessions_of_user("d")
    assert session.end_reason == "driver"
    assert session.energy_wh == pytest.approx(socket.counter_wh)  # the counter's delta, once
    ons = [c for c in site.commands if c.requested_state == pb.REQUESTED_STATE_ON]
    assert len(ons) == 1  # the old OFF readings were not taken for a relay switched off
    assert await site.repo.ledger.balance("d") == CREDIT_CENTS - session.cost_cents
