"""The driver's pages over ASGI against a running system: finding a plug by its code, the money
page handing off to the payments provider (a recording double of the provider interface here;
the real providers are tested with the payments work), history, weight and installability."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI

from evplug.assembly import System
from evplug.core.plug import SessionClosed, SessionOpened
from evplug.payments.provider import Redirect
from tests.web.conftest import (
    DEMO,
    client_for,
    credit,
    every_plug_live,
    make_web_app,
    sign_in,
)

pytestmark = pytest.mark.integration

# The ceiling for a page with its stylesheets and scripts, before images.
MAX_PAGE_BYTES = 100 * 1024


@dataclass
class RecordingProvider:
    """Implements ``PaymentsProvider``: records what it was asked, answers with a checkout URL."""

    name: str = "recording"
    customers: dict[str, str] = field(default_factory=dict)
    top_ups: list[tuple[str, int, str, str]] = field(default_factory=list)
    portals: list[str] = field(default_factory=list)

    async def ensure_customer(self, user_id: str, email: str) -> str:
        return self.customers.setdefault(user_id, f"cus_{len(self.customers)}")

    async def start_top_up(
        self, user_id: str, amount_cents: int, currency: str, return_url: str
    ) -> Redirect:
        self.top_ups.append((user_id, amount_cents, currency, return_url))
        return Redirect(f"https://pay.example/checkout/{len(self.top_ups)}")

    async def manage_payment_methods(self, user_id: str, return_url: str) -> Redirect:
        self.portals.append(user_id)
        return Redirect("https://pay.example/portal")


@asynccontextmanager
async def driver(
    system: System, provider: RecordingProvider | str | None = DEMO
) -> AsyncIterator[tuple[httpx.AsyncClient, str, FastAPI]]:
    app = make_web_app(system, payments=provider)
    async with app.router.lifespan_context(app), client_for(app) as client:
        user_id = await sign_in(client, "ana@example.com")
        await every_plug_live(app, system)
        yield client, user_id, app


async def test_a_typed_code_or_a_scanned_url_opens_its_plug(demo_system) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    async with driver(system) as (client, _, _):
        for code in (plug_id, f"  {plug_id.upper()} ", f"http://evplug.test/plug/{plug_id}"):
            found = await client.get("/plugs", params={"code": code})
            assert found.status_code == 303 and found.headers["location"] == f"/plug/{plug_id}"
        lost = await client.get("/plugs", params={"code": "no-such-plug"})
        assert lost.status_code == 404 and "type it as printed on the label" in lost.text
        api = await client.get("/api/v1/plugs/lookup", params={"code": plug_id.upper()})
        assert api.json() == {"plug_id": plug_id, "url": f"/plug/{plug_id}"}
        old = await client.get(f"/plugs/{plug_id}")  # codes printed for the skeleton's page
        assert old.status_code == 301 and old.headers["location"] == f"/plug/{plug_id}"


async def test_top_up_hands_off_to_the_provider_for_the_chosen_amount(demo_system) -> None:
    system = await demo_system()
    await system.start()
    provider = RecordingProvider()
    async with driver(system, provider) as (client, user_id, _):
        page = await client.get("/money")
        assert page.status_code == 200
        for text in ("Balance", "Top up $10.00", "Top up $20.00", "Manage payment methods"):
            assert text in page.text
        preset = await client.post("/money/top-up", data={"amount": "20"})
        assert preset.status_code == 303
        assert preset.headers["location"] == "https://pay.example/checkout/1"
        custom = await client.post("/money/top-up", data={"amount": "$25.50"})
        assert custom.status_code == 303
        low = await client.post("/money/top-up", data={"amount": "9.99"})
        assert low.status_code == 422 and "at least $10.00" in low.text
        junk = await client.post("/money/top-up", data={"amount": "ten"})
        assert junk.status_code == 422 and "is not an amount" in junk.text
        api = await client.post("/api/v1/top-ups", json={"amount_cents": 5_000})
        assert api.json() == {"redirect_url": "https://pay.example/checkout/3"}
        api_low = await client.post("/api/v1/top-ups", json={"amount_cents": 999})
        assert api_low.status_code == 422 and "amount_cents" in api_low.json()["detail"]
        cards = await client.post("/money/payment-methods")
        assert cards.headers["location"] == "https://pay.example/portal"
    assert [(u, cents) for u, cents, _, _ in provider.top_ups] == [
        (user_id, 2_000),
        (user_id, 2_550),
        (user_id, 5_000),
    ]
    assert all(back.endswith("/money") for *_, back in provider.top_ups)
    assert provider.portals == [user_id] and list(provider.customers) == [user_id]


async def test_without_a_provider_the_money_page_says_so(demo_system) -> None:
    system = await demo_system()
    await system.start()
    async with driver(system, None) as (client, _, _):
        assert "Payments are not set up" in (await client.get("/money")).text
        refused = await client.post("/api/v1/top-ups", json={"amount_cents": 2_000})
        assert refused.status_code == 503 and "operator" in refused.json()["detail"]


async def test_history_is_mine_only_paged_with_a_chart_and_csv(demo_system) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    snapshot = system.mothership.plug(plug_id).snapshot()
    async with driver(system) as (client, user_id, app):
        await credit(system, user_id, 10_000)
        for n in range(25):  # more than a page
            opened = SessionOpened(f"s{n:02d}", plug_id, user_id, 1_000_000 * (n + 1), 30)
            await system.repo.sessions.open_session(opened, snapshot)
            closed = SessionClosed(
                opened.session_id, plug_id, user_id, opened.started_ms,
                opened.started_ms + 600_000, 1_000.0, 30, 30, "complete",
            )  # fmt: skip
            await system.repo.sessions.close_session(closed, snapshot)
        first = (await client.get("/api/v1/sessions")).json()
        assert [s["session_id"] for s in first["sessions"]][:2] == ["s24", "s23"]
        assert first["next_page"] == 2
        second = (await client.get("/api/v1/sessions", params={"page": 2})).json()
        assert len(second["sessions"]) == 5 and second["next_page"] is None
        page = await client.get("/sessions")
        assert "Sessions" in page.text and 'rel="next"' in page.text
        one = await client.get("/sessions/s03")
        assert "<svg" in one.text and "$0.30 per kWh" in one.text and "1.000 kWh" in one.text
        csv = (await client.get("/api/v1/sessions.csv")).text.splitlines()
        assert len(csv) == 26 and csv[0].startswith("session_id,")
        assert ",10.0,1.000,0.30,AUD,30,demo-site," in csv[1]
        async with client_for(app) as other:
            await sign_in(other, "ben@example.com")
            assert (await other.get("/sessions/s03")).status_code == 404
            assert (await other.get("/api/v1/sessions/s03")).status_code == 404


async def test_every_page_is_light_and_the_app_installable(demo_system) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    async with driver(system, RecordingProvider()) as (client, _, _):
        assets = {}
        for path in ("/static/app.css", "/static/driver.css", "/static/app.js"):
            assets[path] = len((await client.get(path)).content)
        scripts = {
            "/plugs": "/static/scan.js",
            f"/plug/{plug_id}": "/static/plug.js",
        }
        for path in ("/", "/plugs", f"/plug/{plug_id}", "/sessions", "/money"):
            page = await client.get(path)
            assert page.status_code == 200, path
            assert '<link rel="manifest" href="/manifest.webmanifest">' in page.text
            assert '<meta name="viewport"' in page.text and '<html lang="en">' in page.text
            extra = len((await client.get(scripts[path])).content) if path in scripts else 0
            weight = len(page.content) + sum(assets.values()) + extra
            assert weight < MAX_PAGE_BYTES, (path, weight)
        manifest = json.loads((await client.get("/manifest.webmanifest")).text)
        assert manifest["display"] == "standalone" and manifest["start_url"] == "/"
        sizes = {icon["sizes"] for icon in manifest["icons"]}
        assert {"192x192", "512x512"} <= sizes
        for icon in manifest["icons"]:
            assert (await client.get(icon["src"])).status_code == 200
