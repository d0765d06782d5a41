"""The whole demo through a real broker: every message between the parts crosses nats-server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from evplug.bus.broker import Broker, free_port, start_broker
from evplug.core.plug import State
from evplug.demo import DemoOptions, build, smoke
from tests.bus.nats_state import stored_messages, wipe
from tests.conftest import on_broker, until, wait_for
from tests.web.conftest import web_client

pytestmark = pytest.mark.integration
OPTIONS = DemoOptions(plugs=2, speed=300.0, car_need_wh=400.0)


async def test_the_smoke_session_runs_through_the_broker_to_a_bill(
    tmp_path: Path, nats_broker: Broker
) -> None:
    await wipe(nats_broker)
    settings = on_broker(tmp_path, nats_broker)
    result = await smoke(settings, OPTIONS, timeout_s=30)
    assert result["states"][-1] == "ACCOUNT_NULL" and "CHARGING" in result["states"]
    assert result["kwh"] == pytest.approx(0.4, abs=0.02)
    assert result["balance_after_cents"] == result["balance_before_cents"] - result["cents"] > 0
    stored = await stored_messages(nats_broker)
    # Announce and its ack, the Enable and Disable commands with their responses, the readings.
    assert stored["ANNOUNCE"] >= 1 and stored["ANNOUNCE_ACK"] >= 1
    assert stored["COMMANDS"] >= 2 and stored["RESPONSES"] >= 2
    assert stored["TELEMETRY"] > 10


async def test_the_web_app_follows_and_drives_the_plugs_through_the_broker(
    tmp_path: Path, nats_broker: Broker
) -> None:
    await wipe(nats_broker)
    system = await build(on_broker(tmp_path, nats_broker), OPTIONS)
    try:
        await system.start()
        plug_id = system.simulated[0].info.plug_id(0)
        await wait_for(lambda: system.mothership.plug(plug_id).state is State.ACCOUNT_NULL)
        async with web_client(system) as client:  # its live view: the KV bucket on the broker
            enabled = await client.post(  # a request the mothership answers over the broker
                f"/api/v1/plugs/{plug_id}/prompts", json={"prompt": "Enable Socket"}
            )
            assert enabled.status_code == 200, enabled.text

            async def charging() -> bool:
                live = (await client.get(f"/api/v1/plugs/{plug_id}")).json()
                return live["state"] == "CHARGING" and live["power_w"] > 1000

            await until(charging)
    finally:
        await system.stop()


async def test_the_system_stops_cleanly_while_its_broker_is_away(tmp_path: Path) -> None:
    broker = start_broker("127.0.0.1", free_port(), tmp_path / "nats")
    try:
        system = await build(on_broker(tmp_path, broker), OPTIONS)
        await system.start()
        plug_id = system.simulated[0].info.plug_id(0)
        await wait_for(lambda: system.mothership.plug(plug_id).state is State.ACCOUNT_NULL)
    finally:
        broker.stop()
    await asyncio.wait_for(system.stop(), 60)  # SIGTERM during an outage: still a clean exit
