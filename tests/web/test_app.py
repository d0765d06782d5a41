"""The driver's API over ASGI against a running embedded system: it reaches the mothership only
through the bus (plug statuses from the status store, choices as requests), and only a signed-in
driver, the plug's own, controls it."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from evplug.core.plug import SessionClosed, State
from evplug.demo import STARTING_CREDIT_CENTS
from tests.conftest import until, wait_for
from tests.web.conftest import (
    client_for,
    credit,
    every_plug_live,
    make_web_app,
    sign_in,
    web_client,
)

pytestmark = pytest.mark.integration


async def test_a_driver_enables_watches_and_disables_and_is_billed(demo_system) -> None:
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
        url = f"/api/v1/plugs/{plug_id}"
        idle = (await client.get(url)).json()
        assert idle["prompts"] == ["Enable Socket"] and idle["words"] == "Available"
        assert "user_id" not in idle  # a plug never names its driver

        enabled = await client.post(f"{url}/prompts", json={"prompt": "Enable Socket"})
        assert enabled.status_code == 200, enabled.text
        assert enabled.json()["prompts"] == ["Disable Socket"] and enabled.json()["mine"]

        async def charging() -> bool:
            live = (await client.get(url)).json()
            return live["words"] == "Charging" and live["power_w"] > 1000

        await until(charging)
        home = (await client.get("/api/v1/me")).json()
        assert [p["plug_id"] for p in home["plugs"]] == [plug_id]

        again = await client.post(f"{url}/prompts", json={"prompt": "Enable Socket"})
        assert again.status_code == 409 and "already have a session" in again.json()["detail"]
        missing = await client.get("/api/v1/plugs/nope")
        assert missing.status_code == 404 and "check the code" in missing.json()["detail"]
        bad = await client.post(f"{url}/prompts", json={"prompt": "Explode"})
        assert bad.status_code == 422 and bad.json()["detail"].startswith("prompt:")
        extra = await client.post(
            f"{url}/prompts", json={"prompt": "Disable Socket", "user_id": "x"}
        )
        assert extra.status_code == 422 and "user_id" in extra.json()["detail"]

        stopped = await client.post(f"{url}/prompts", json={"prompt": "Disable Socket"})
        assert stopped.status_code == 200
        await wait_for(lambda: bool(closed))
        [session] = (await client.get("/api/v1/sessions")).json()["sessions"]
        assert session["session_id"] == closed[0].session_id
        assert session["end_reason"] == "driver" and session["cost_cents"] == closed[0].cost_cents
        money = (await client.get("/api/v1/money")).json()
        assert money["balance_cents"] == STARTING_CREDIT_CENTS - closed[0].cost_cents
        csv = await client.get("/api/v1/sessions.csv")
        assert csv.headers["content-type"].startswith("text/csv")
        assert closed[0].session_id in csv.text


async def test_another_driver_sees_in_use_and_is_refused_403(demo_system) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    await wait_for(lambda: system.mothership.plug(plug_id).state is State.ACCOUNT_NULL)
    url = f"/api/v1/plugs/{plug_id}"
    app = make_web_app(system)
    async with (
        app.router.lifespan_context(app),
        client_for(app) as first,
        client_for(app) as second,
    ):
        await credit(system, await sign_in(first, "first@example.com"), 2_000)
        await sign_in(second, "second@example.com")
        await every_plug_live(app, system)
        assert (await first.post(f"{url}/prompts", json={"prompt": "Enable Socket"})).is_success
        seen = (await second.get(url)).json()
        assert seen["words"] == "In use" and seen["prompts"] == [] and seen["in_use"]
        assert seen["power_w"] == 0 and seen["cost_cents"] == 0
        for prompt in ("Disable Socket", "Enable Socket"):
            refused = await second.post(f"{url}/prompts", json={"prompt": prompt})
            assert refused.status_code == 403, refused.text
            assert "in use by another driver" in refused.json()["detail"]
        page = await second.get(f"/plug/{plug_id}")
        assert page.status_code == 200 and "In use" in page.text
        assert "Disable Socket" not in page.text
        assert (await second.get("/api/v1/sessions")).json()["sessions"] == []
    assert system.mothership.plug(plug_id).state is not State.ACCOUNT_NULL


async def test_a_driver_with_no_money_is_told_to_top_up_and_the_socket_stays_off(
    demo_system,
) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    plug = system.mothership.plug(plug_id)
    await wait_for(lambda: plug.state is State.ACCOUNT_NULL)
    async with web_client(system, credit_cents=0) as client:
        seen = (await client.get(f"/api/v1/plugs/{plug_id}")).json()
        assert seen["top_up_needed"] and seen["prompts"] == []
        page = await client.get(f"/plug/{plug_id}")
        assert "top up first" in page.text and 'href="/money"' in page.text
        forced = await client.post(
            f"/api/v1/plugs/{plug_id}/prompts", json={"prompt": "Enable Socket"}
        )
        assert forced.status_code == 409 and "top up" in forced.json()["detail"]
    assert plug.state is State.ACCOUNT_NULL


async def test_without_sign_in_the_api_says_401_and_pages_offer_sign_in(demo_system) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    app = make_web_app(system)
    async with app.router.lifespan_context(app), client_for(app) as client:
        api = await client.get(f"/api/v1/plugs/{plug_id}")
        assert api.status_code == 401 and "sign in" in api.json()["detail"]
        await every_plug_live(app, system)
        page = await client.get(f"/plug/{plug_id}")  # a visitor: sign in, or pay by card
        assert page.status_code == 200 and "Pay by card" in page.text
        assert f"/signin?next=/plug/{plug_id}" in unquote(page.text)
        money = await client.get("/money")
        assert money.status_code == 303
        assert unquote(money.headers["location"]) == "/signin?next=/money"
        welcome = await client.get("/")
        assert welcome.status_code == 200 and "Sign in" in welcome.text


async def test_without_a_mothership_a_choice_names_the_fix(demo_system) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    async with web_client(system) as client:
        await system.mothership.stop()
        refused = await client.post(
            f"/api/v1/plugs/{plug_id}/prompts", json={"prompt": "Enable Socket"}
        )
        assert refused.status_code == 503
        assert "evplug mothership" in refused.json()["detail"]
