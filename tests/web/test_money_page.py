"""The money page and /api/v1 joined to the payments: auto top-up settings, the demo checkout
crediting through the ledger, receipts only their driver sees, a customer made at sign-up."""

from __future__ import annotations

import pytest

from evplug.core.plug import State
from evplug.web.mail import LogMailer
from tests.conftest import wait_for
from tests.web.conftest import client_for, every_plug_live, make_web_app, sign_in
from tests.web.test_driver_pages import driver

pytestmark = pytest.mark.integration


async def test_auto_top_up_settings_start_at_the_originals_defaults_and_show_a_pause(
    demo_system,
) -> None:
    system = await demo_system()
    await system.start()
    async with driver(system) as (client, user_id, _):
        page = (await client.get("/money")).text
        assert 'value="10.00"' in page and 'value="20.00"' in page and "checked" not in page
        saved = await client.post(
            "/money/auto-top-up", data={"on": "on", "threshold": "5", "amount": "25"}
        )
        assert saved.status_code == 303
        stored = await system.repo.payments.auto_top_up(user_id)
        assert stored is not None and (stored.threshold_cents, stored.amount_cents) == (500, 2_500)
        low = await client.post(
            "/money/auto-top-up", data={"on": "on", "threshold": "5", "amount": "9"}
        )
        assert low.status_code == 422 and "at least $10.00" in low.text
        await system.repo.payments.pause_auto_top_up(user_id, "card declined", 0)
        assert "Auto top-up is paused: card declined" in (await client.get("/money")).text
        api = (await client.get("/api/v1/money")).json()["auto_top_up"]
        assert api == {
            "on": True, "threshold_cents": 500, "amount_cents": 2_500,
            "paused_reason": "card declined",
        }  # fmt: skip
        off = await client.put(
            "/api/v1/auto-top-up", json={"on": False, "threshold_cents": 0, "amount_cents": 1_000}
        )
        assert off.json()["on"] is False
        assert await system.repo.payments.auto_top_up(user_id) is None


async def test_a_demo_top_up_credits_the_ledger_and_its_receipt_is_only_its_drivers(
    demo_system,
) -> None:
    system = await demo_system()
    await system.start()
    async with driver(system) as (client, user_id, app):
        await app.state.accounts.service.welcomed()
        customer = await system.repo.payments.customer(user_id)  # made at sign-up
        assert customer is not None and customer.provider == "demo"
        before = await system.repo.ledger.balance(user_id)
        started = await client.post("/money/top-up", data={"amount": "20"})
        checkout = started.headers["location"]
        assert checkout.startswith("/pay/demo/")
        assert "demo — no money moves" in (await client.get(checkout)).text
        paid = await client.post(checkout)
        assert paid.headers["location"] == "/money"
        assert await system.repo.ledger.balance(user_id) == before + 2_000
        money = (await client.get("/api/v1/money")).json()
        receipt = next(
            t["receipt_url"] for t in money["transactions"] if t["amount_cents"] == 2_000
        )
        assert receipt.startswith("/receipts/top-ups/demo_pi_")
        assert f'href="{receipt}"' in (await client.get("/money")).text
        assert "20.00" in (await client.get(receipt)).text
        async with client_for(app) as other:
            await sign_in(other, "other@example.com")
            assert (await other.get(receipt)).status_code == 404
            assert (await other.post(checkout)).status_code == 404  # not theirs to pay
            portal = await other.post("/api/v1/payment-methods/portal")
            assert portal.status_code == 200  # their own, never ana's


async def test_a_failing_sign_up_hook_is_logged_and_the_driver_still_signs_up(
    demo_system,
) -> None:
    system = await demo_system()
    calls: list[tuple[str, str]] = []

    async def failing(user_id: str, email: str) -> None:
        calls.append((user_id, email))
        raise ConnectionError("the provider is down")

    app = make_web_app(system, on_sign_up=failing, mailer=LogMailer(shows_links=True))
    async with client_for(app) as client:
        user_id = await sign_in(client, "early@example.com")
        await app.state.accounts.service.welcomed()
    assert calls == [(user_id, "early@example.com")]
    assert await system.repo.payments.customer(user_id) is None  # made at the first top-up


async def test_a_visitor_pays_by_card_and_follows_the_session_on_the_plug_page(
    demo_system,
) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    app = make_web_app(system)
    async with app.router.lifespan_context(app), client_for(app) as visitor:
        await every_plug_live(app, system)
        page = await visitor.get(f"/plug/{plug_id}")
        assert page.status_code == 200
        assert "Pay by card" in page.text and "Sign in to charge" in page.text
        assert "Enable Socket" not in page.text
        low = await visitor.post(f"/plug/{plug_id}/pay-by-card", data={"amount": "0.50"})
        assert low.status_code == 422 and "hold at least" in low.text
        started = await visitor.post(
            f"/plug/{plug_id}/pay-by-card", data={"amount": "20", "email": "guest@example.com"}
        )
        checkout = started.headers["location"]
        assert "demo — no money moves" in (await visitor.get(checkout)).text
        paid = await visitor.post(checkout)
        follow = paid.headers["location"]
        hold_id = checkout.removeprefix("/pay/demo/").split("?")[0]
        assert follow == f"/plug/{plug_id}?guest={hold_id}"
        assert system.mothership.plug(plug_id).state is not State.ACCOUNT_NULL
        await wait_for(lambda: app.state.live.statuses[plug_id].session_id != "")
        shown = await visitor.get(follow)
        assert 'id="figures"' in shown.text and "Pay by card" not in shown.text
        assert "Enable Socket" not in shown.text and "Disable Socket" not in shown.text


async def test_the_money_operations_are_one_api_under_api_v1(demo_system) -> None:
    system = await demo_system()
    paths = make_web_app(system).openapi()["paths"]
    for path in ("/api/v1/money", "/api/v1/top-ups", "/api/v1/payment-methods/portal"):
        assert path in paths
    assert "put" in paths["/api/v1/auto-top-up"]
    assert "post" in paths["/api/v1/plugs/{plug_id}/guest-holds"]
    assert [p for p in paths if p.startswith("/api/") and not p.startswith("/api/v1/")] == []
    assert "/webhooks/stripe" in paths and not any(p.startswith("/pay/") for p in paths)
