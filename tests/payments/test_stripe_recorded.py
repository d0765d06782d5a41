"""Checkout Sessions and the Billing Portal, which localstripe lacks, against recorded Stripe
responses (tests/payments/recorded/) served on loopback: what the provider asks Stripe for, and
what it does with the answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from evplug.bus.broker import free_port
from evplug.clock import FakeClock
from evplug.payments.events import PaymentEvents
from evplug.payments.stripe_provider import StripeProvider
from evplug.store.repository import Repository

RECORDED = Path(__file__).parent / "recorded"


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / f"{name}.json").read_text(encoding="utf-8"))


class RecordedStripe:
    """Answers each endpoint with its recorded response, keeping the requests it was sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], str]] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/checkout/sessions", self._answer("checkout_session_create"))
        self.app.router.add_post(
            "/v1/billing_portal/sessions", self._answer("billing_portal_session_create")
        )

    def _answer(self, name: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            form = dict(parse_qsl(await request.text()))
            self.requests.append((request.path, form, request.headers.get("Idempotency-Key", "")))
            return web.json_response(recorded(name))

        return handle


@pytest.fixture
async def stripe_api(repo: Repository) -> AsyncIterator[tuple[RecordedStripe, StripeProvider]]:
    api = RecordedStripe()
    runner = web.AppRunner(api.app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await repo.payments.ensure_customer("u", "stripe", "cus_recorded")
    provider = StripeProvider(
        repo, FakeClock(), "sk_test_recorded", f"http://127.0.0.1:{port}", "http://evplug.test"
    )
    yield api, provider
    await runner.cleanup()


async def test_a_top_up_is_a_payment_checkout_that_saves_the_card(stripe_api) -> None:
    api, provider = stripe_api
    redirect = await provider.start_top_up("u", 2_500, "AUD", "/money")
    assert redirect.url == recorded("checkout_session_create")["url"]
    ((path, form, _),) = api.requests
    assert path == "/v1/checkout/sessions"
    assert form["mode"] == "payment" and form["customer"] == "cus_recorded"
    assert form["payment_intent_data[setup_future_usage]"] == "off_session"
    assert form["payment_intent_data[metadata][user_id]"] == "u"
    assert form["line_items[0][price_data][unit_amount]"] == "2500"
    assert form["line_items[0][price_data][currency]"] == "aud"
    assert form["success_url"] == "http://evplug.test/money"
    with pytest.raises(ValueError, match="from 1000"):
        await provider.start_top_up("u", 999, "AUD", "/money")
    assert len(api.requests) == 1


async def test_manage_cards_opens_the_portal_of_the_drivers_own_customer(stripe_api) -> None:
    api, provider = stripe_api
    redirect = await provider.manage_payment_methods("u", "/money")
    assert redirect.url == recorded("billing_portal_session_create")["url"]
    ((path, form, _),) = api.requests
    assert (path, form["customer"]) == ("/v1/billing_portal/sessions", "cus_recorded")


async def test_a_completed_checkout_credits_its_payment_intent_once(repo: Repository) -> None:
    events = PaymentEvents(repo, FakeClock())
    completed = recorded("checkout_session_completed_event")
    assert (await events.process(completed)).posted == (("u", "pi:pi_1RecordedTopUp0001"),)
    assert not (await events.process(completed)).first_time
    assert await repo.ledger.balance("u") == 2_500
