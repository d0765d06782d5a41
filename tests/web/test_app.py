"""The demo web app over ASGI, against a running embedded system."""

from __future__ import annotations

import httpx
import pytest

from evplug.core.plug import SessionClosed, State
from evplug.demo import DEMO_DRIVER, STARTING_CREDIT_CENTS
from evplug.web.app import create_app
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


async def test_page_lists_plugs_and_buttons_drive_them(demo_system) -> None:
    system = await demo_system()
    await system.start()
    app = create_app(system.mothership, DEMO_DRIVER)
    plug_id = system.simulated[0].info.plug_id(0)
    plug = system.mothership.plug(plug_id)
    closed: list[SessionClosed] = []
    system.mothership.events.attach(
        lambda e: closed.append(e) if isinstance(e, SessionClosed) else None
    )
    await wait_for(lambda: plug.state is State.ACCOUNT_NULL)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://evplug.test"
    ) as client:
        page = await client.get("/")
        assert page.status_code == 200 and '<meta charset="utf-8">' in page.text
        plugs = (await client.get("/api/plugs")).json()
        assert [p["plug_id"] for p in plugs] == sorted(system.mothership.plugs)
        assert plugs[0]["prompts"] == ["Enable Socket"]

        enabled = await client.post(
            f"/api/plugs/{plug_id}/prompts", json={"prompt": "Enable Socket"}
        )
        assert enabled.status_code == 200, enabled.text
        assert enabled.json()["prompts"] == ["Disable Socket"]
        await wait_for(lambda: plug.state is State.CHARGING)
        live = (await client.get(f"/api/plugs/{plug_id}")).json()
        assert live["state"] == "CHARGING" and live["power_w"] > 1000

        again = await client.post(f"/api/plugs/{plug_id}/prompts", json={"prompt": "Enable Socket"})
        assert again.status_code == 409
        assert (await client.get("/api/plugs/nope")).status_code == 404
        bad = await client.post(f"/api/plugs/{plug_id}/prompts", json={"prompt": "Explode"})
        assert bad.status_code == 422

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
    app = create_app(system.mothership, DEMO_DRIVER)
    plug_id = system.simulated[0].info.plug_id(0)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://evplug.test"
    ) as client:
        assert (await client.get(f"/plugs/{plug_id}")).status_code == 200
        missing = await client.get("/plugs/shelly:000000000000:9")
        assert missing.status_code == 404 and "check the code" in missing.text
