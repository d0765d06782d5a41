"""The whole system in one process: the site's uplink goes away mid-session, the relay manager
ends the session itself when it has run unsupervised too long, and once the uplink is back the
mothership bills what the relay metered, outage included, once, and says why it ended."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from evplug.bus.base import Bus, BusError, Outgoing
from evplug.core.plug import EndReason, Prompt, State
from evplug.demo import DEMO_DRIVER, EDGE_REAL_S, STARTING_CREDIT_CENTS, DemoOptions, build
from evplug.settings import Settings
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SPEED = 60.0
UNSUPERVISED_S = EDGE_REAL_S * SPEED  # the demo's shortest


class Uplink:
    """The relay manager's way onto the bus; while ``down`` the broker takes nothing from it."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.down = False

    async def publish(self, subject: str, data: bytes, msg_id: str = "") -> bool:
        if self.down:
            raise BusError("uplink down")
        return await self.bus.publish(subject, data, msg_id=msg_id)

    async def publish_many(self, messages: Sequence[Outgoing]) -> list[bool | BaseException]:
        if self.down:
            return [BusError("uplink down") for _ in messages]
        return await self.bus.publish_many(messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bus, name)


async def test_a_session_ended_at_the_edge_during_an_outage_is_billed_once_in_full(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, relay={"unsupervised_max_s": UNSUPERVISED_S})
    system = await build(settings, DemoOptions(plugs=1, speed=SPEED, car_need_wh=50_000))
    uplink = Uplink(system.relay.bus)
    system.relay.bus = uplink  # type: ignore[assignment]
    socket = system.simulated[0].sockets[0]
    try:
        await system.start()
        plug_id = next(iter(system.relay.channels))

        def state() -> State:
            return system.mothership.plug(plug_id).state

        await wait_for(lambda: state() is State.ACCOUNT_NULL)
        await system.mothership.choose(plug_id, Prompt.ENABLE_SOCKET, DEMO_DRIVER)
        await wait_for(lambda: state() is State.CHARGING)
        uplink.down = True
        await wait_for(lambda: bool(system.relay.edge.stops), timeout_s=4 * EDGE_REAL_S)
        assert not socket.relay_on
        metered_wh = socket.energy_wh
        assert state() is State.CHARGING  # the mothership has heard nothing of it yet
        uplink.down = False
        await wait_for(lambda: state() is State.ACCOUNT_NULL, timeout_s=30)
    finally:
        await system.stop()
    [session] = await system.repo.sessions.sessions_of_user(DEMO_DRIVER)
    balance = await system.repo.ledger.balance(DEMO_DRIVER)
    await system.repo.engine.dispose()
    assert session.end_reason == EndReason.UNSUPERVISED_TOO_LONG
    # What the relay's counter metered, the outage's share too (about 400 Wh), once.
    assert metered_wh > 300
    assert session.energy_wh == pytest.approx(metered_wh, abs=0.5)
    assert balance == STARTING_CREDIT_CENTS - session.cost_cents
