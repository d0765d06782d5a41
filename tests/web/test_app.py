"""The web app over ASGI against a running embedded system: it reaches the mothership only
through the bus (plug statuses from the status store, choices as requests)."""

from __future__ import annotations

import pytest

from evplug.core.plug import SessionClosed, State
from evplug.demo import STARTING_CREDIT_CENTS
from tests.conftest import until, wait_for
from tests.web.conftest import web_client

pytestmark = pytest.mark.integration


async def test_page_lists_plugs_and_buttons_drive_them(demo_system) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    plug = system.mothership.plug(plug_id)
    closed: list[SessionClosed] = []
    system.mothership.events.attach(
        lambda e: closed.append(e) if isinstance(e, SessionClosed) else None
    )
    await wait_for(lambda: plug.state is State.ACCOUNT_NULL)
    async with web_client(system) as client:
        page = await client.get("/")
        assert page.status_code == 200 and '<meta charset="utf-8">' in page.text
        plugs = (await client.get("/api/plugs")).json()
        assert [p["plug_id"] for p in plugs] == sorted(system.mothership.plugs)
        assert plugs[0]["prompts"] == ["Enable Socket"]
        assert "user_id" not in plugs[0]  # a plug's status never names its driver

        enabled = await client.post(
            f"/api/plugs/{plug_id}/prompts", json={"prompt": "Enable Socket"}
        )
        assert enabled.status_code == 200, enabled.text
        assert enabled.json()["prompts"] == ["Disable Socket"]

        async def charging() -> bool:
            live = (await client.get(f"/api/plugs/{plug_id}")).json()
            return live["state"] == "CHARGING" and live["power_w"] > 1000

        await until(charging)

        again = await client.post(f"/api/plugs/{plug_id}/prompts", json={"prompt": "Enable Socket"})
        assert again.status_code == 409 and "already have a session" in again.json()["detail"]
        assert (await client.get("/api/plugs/nope")).status_code == 404
        bad = await client.post(f"/api/plugs/{plug_id}/prompts", json={"prompt": "Explode"})
        assert bad.status_code == 422
        extra = await client.post(
            f"/api/plugs/{plug_id}/prompts", json={"prompt": "Disable Socket", "user_id": "x"}
        )
        assert extra.status_code == 422

        stopped = await client.post(
            f"/api/plugs/{plug_id}/prompts", json={"prompt": "Disable Socket"}
        )
        assert stopped.status_code == 200
        await wait_for(lambda: bool(closed))
        me = (await client.get("/api/me")).json()
        assert me["sessions"][0]["reason"] == "driver"
        assert me["balance_cents"] == STARTING_CREDIT_CENTS - closed[0].cost_cents


async def test_a_plug_page_exists_for_each_plug_and_not_for_others(demo_system) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    async with web_client(system) as client:
        assert (await client.get(f"/plugs/{plug_id}")).status_code == 200
        missing = await client.get("/plugs/shelly:000000000000:9")
        assert missing.status_code == 404 and "check the code" in missing.text


async def test_without_a_mothership_a_choice_names_the_fix(demo_system) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    async with web_client(system) as client:
        await system.mothership.stop()
        refused = await client.post(
            f"/api/plugs/{plug_id}/prompts", json={"prompt": "Enable Socket"}
        )
        assert refused.status_code == 503
        assert "evplug mothership" in refused.json()["detail"]
