"""The demo signs nobody in by itself; its sign-in page offers the seeded driver's
credentials, and they sign in to the driver that has the demo's starting credit."""

from __future__ import annotations

import pytest

from evplug import assembly
from evplug.demo import DEMO_DRIVER, DEMO_EMAIL, DEMO_PASSWORD
from evplug.settings import Settings
from evplug.web.accounts_web import DemoCredentials
from tests.web.conftest import client_for

pytestmark = pytest.mark.integration


async def test_the_demo_offers_its_driver_on_the_sign_in_page(demo_system, tmp_path) -> None:
    system = await demo_system()
    app = assembly.make_web_app(
        Settings(data_dir=tmp_path),
        system.bus,
        system.store,
        demo=DemoCredentials(DEMO_EMAIL, DEMO_PASSWORD),
    )
    async with client_for(app) as client:
        assert (await client.get("/api/v1/auth/me")).status_code == 401
        page = await client.get("/signin")
        assert DEMO_EMAIL in page.text and DEMO_PASSWORD in page.text
        signed = await client.post(
            "/api/v1/auth/signin", json={"email": DEMO_EMAIL, "password": DEMO_PASSWORD}
        )
        assert signed.status_code == 200, signed.text
        assert signed.json()["user_id"] == DEMO_DRIVER and signed.json()["email_verified"]
        # No mail server in the demo: the answer carries the link the mail would.
        sent = await client.post("/api/v1/auth/signin/link", json={"email": DEMO_EMAIL})
        assert "/signin/link?token=" in sent.json()["demo_link"]


async def test_outside_the_demo_a_page_never_shows_a_mailed_link(demo_system, tmp_path) -> None:
    system = await demo_system()
    app = assembly.make_web_app(Settings(data_dir=tmp_path), system.bus, system.store)
    async with client_for(app) as client:
        sent = await client.post("/api/v1/auth/signin/link", json={"email": DEMO_EMAIL})
        assert sent.status_code == 202 and "demo_link" not in sent.json()
        page = await client.get("/signin")
        assert DEMO_PASSWORD not in page.text
