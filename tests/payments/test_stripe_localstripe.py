"""The Stripe provider with the official SDK against a real localstripe on loopback.

What localstripe lacks (Checkout Sessions, the Billing Portal) is tested against recorded
responses in test_stripe_recorded.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack, unpack
from evplug.core.plug import Plug
from evplug.payments.auto_top_up import AutoTopUps
from evplug.payments.events import PaymentEvents
from evplug.payments.guest import GuestHolds
from evplug.payments.stripe_provider import StripeProvider
from evplug.payments.stripe_webhooks import sign
from evplug.store.database import create_schema, make_engine, sqlite_url
from evplug.store.repository import Repository
from evplug.web.app import create_app
from evplug.web.mail import LogMailer, text_sender
from tests.web.conftest import accounts_config, as_driver, client_for, sign_in

pytestmark = pytest.mark.integration

KEY = "sk_test_evplug"
SECRET = "whsec_evplug_test"
CARD_OK = "4242424242424242"
CARD_DECLINED_ON_CHARGE = "4000000000000341"  # attaches, then every charge is declined


class Stripe:
    """The provider, its webhook endpoint, and a client to play the card holder with."""

    def __init__(self, repo: Repository, api_base: str) -> None:
        self.repo = repo
        self.clock = FakeClock()
        self.provider = StripeProvider(repo, self.clock, KEY, api_base, "http://evplug.test")
        self.events = PaymentEvents(repo, self.clock)
        self.auto = AutoTopUps(self.provider, self.events, self.clock)
        self.sdk = stripe.StripeClient(KEY, base_addresses={"api": api_base})
        self.bus = MemoryBus(self.clock)
        self.started: list[str] = []
        self.mailer = LogMailer(shows_links=True)
        accounts = accounts_config(
            clock=self.clock, mailer=self.mailer, on_sign_up=self.provider.ensure_customer
        )
        self.app = create_app(self.bus, repo, None, accounts, self.provider, SECRET)

    def card(self, customer_id: str, number: str = CARD_OK) -> str:
        """A card saved on the customer, as Checkout's setup_future_usage leaves it."""
        method = self.sdk.v1.payment_methods.create(
            {
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"},
            }
        )
        self.sdk.v1.payment_methods.attach(method.id, {"customer": customer_id})
        return method.id

    async def deliver(self, client: httpx.AsyncClient, event_type: str, obj: Any) -> Any:
        """The signed webhook Stripe would send for ``obj`` (signed as Stripe signs it)."""
        data = obj.to_dict() if hasattr(obj, "to_dict") else obj
        body = {
            "id": f"evt_{event_type}_{data['id']}",
            "type": event_type,
            "data": {"object": data},
        }
        payload = json.dumps(body).encode()
        headers = {"Stripe-Signature": sign(payload, SECRET, int(time.time()))}
        return await client.post("/webhooks/stripe", content=payload, headers=headers)


@pytest.fixture
async def site(
    tmp_path: Path, localstripe_url: str
) -> AsyncIterator[tuple[Stripe, httpx.AsyncClient]]:
    engine = make_engine(sqlite_url(tmp_path / "pay.sqlite3"))
    await create_schema(engine)
    repo = Repository(engine)
    await repo.users.ensure_user("u", "Driver", "driver@example.invalid")
    await repo.sites.ensure_site("site", "Site", 30, "AUD")
    await repo.sites.register_plug("p1", "site", "f", "sim", Plug("p1", "f").snapshot())
    stripe_site = Stripe(repo, localstripe_url)

    async def mothership(subject: str, data: bytes) -> bytes:  # every socket starts
        stripe_site.started.append(unpack(data, pb.DriverRequest).user_id)
        return pack(pb.DriverReply(code=pb.DriverReplyCode.DRIVER_REPLY_CODE_OK))

    await stripe_site.bus.serve(subjects.for_site(subjects.DRIVER, "site"), mothership)
    async with client_for(stripe_site.app) as client:
        yield stripe_site, client
    await engine.dispose()


async def test_a_driver_gets_one_customer_with_their_email(site) -> None:
    s, _ = site
    first = await s.provider.ensure_customer("u", "driver@example.invalid")
    assert await s.provider.ensure_customer("u", "driver@example.invalid") == first
    customer = s.sdk.v1.customers.retrieve(first)
    assert customer.email == "driver@example.invalid"
    assert customer.metadata["user_id"] == "u"


async def test_a_new_driver_gets_a_stripe_customer_with_their_email_at_sign_up(site) -> None:
    s, client = site
    user_id = await sign_in(client, "newcomer@example.com")
    await s.app.state.accounts.service.welcomed()
    customer = await s.repo.payments.customer(user_id)
    assert customer is not None and customer.provider == "stripe"
    on_stripe = s.sdk.v1.customers.retrieve(customer.customer_id)
    assert (on_stripe.email, on_stripe.metadata["user_id"]) == ("newcomer@example.com", user_id)


async def test_save_a_card_top_up_and_a_replayed_webhook_credits_once(site) -> None:
    s, client = site
    customer_id = await s.provider.ensure_customer("u", "driver@example.invalid")
    card = s.card(customer_id)
    attached = await s.deliver(
        client, "payment_method.attached", s.sdk.v1.payment_methods.retrieve(card)
    )
    assert attached.status_code == 200, attached.text
    s.sdk.v1.customers.update(customer_id, {"invoice_settings": {"default_payment_method": card}})
    await s.deliver(client, "customer.updated", s.sdk.v1.customers.retrieve(customer_id))
    stored = await s.repo.payments.customer("u")
    assert stored is not None and stored.default_payment_method == card
    assert [m.last4 for m in await s.repo.payments.methods("u")] == ["4242"]

    # The top-up's payment, as Checkout makes it, then its webhook, delivered twice.
    paid = s.sdk.v1.payment_intents.create(
        {
            "amount": 2_500,
            "currency": "aud",
            "customer": customer_id,
            "payment_method": card,
            "confirm": True,
            "metadata": {"user_id": "u", "purpose": "top_up"},
        }
    )
    assert paid.status == "succeeded"
    for _ in range(2):
        delivered = await s.deliver(client, "payment_intent.succeeded", paid)
        assert delivered.status_code == 200
    assert await s.repo.ledger.balance("u") == 2_500 == await s.repo.ledger.ledger_sum("u")


async def test_an_auto_top_up_charges_the_saved_card_off_session_once(site) -> None:
    s, client = site
    await s.repo.payments.set_auto_top_up("u", 500, 2_000)
    customer_id = await s.provider.ensure_customer("u", "driver@example.invalid")
    s.card(customer_id)  # no default set: the first saved card is charged
    result = await s.auto.charge("u", "auto:u:1", "AUD")
    assert result.status == "succeeded", result.reason
    assert result.posted == (("u", f"pi:{result.payment_intent_id}"),)
    on_stripe = s.sdk.v1.payment_intents.retrieve(result.payment_intent_id)
    assert (on_stripe.amount, on_stripe.metadata["purpose"]) == (2_000, "auto_top_up")
    await s.deliver(client, "payment_intent.succeeded", on_stripe)  # the webhook, later
    assert await s.repo.ledger.balance("u") == 2_000


async def test_a_declined_off_session_charge_pauses_auto_top_up(site) -> None:
    s, client = site
    await s.repo.payments.set_auto_top_up("u", 500, 2_000)
    customer_id = await s.provider.ensure_customer("u", "driver@example.invalid")
    s.card(customer_id, CARD_DECLINED_ON_CHARGE)
    result = await s.auto.charge("u", "auto:u:2", "AUD")
    assert result.status == "declined"
    auto = await s.repo.payments.auto_top_up("u")
    assert auto is not None
    assert auto.paused_reason == "auto top-up declined: Your card was declined. (card_declined)"
    assert (await s.auto.charge("u", "auto:u:3", "AUD")).status == "paused"  # not tried again
    assert await s.repo.ledger.ledger_sum("u") == 0
    as_driver(s.app, "u")
    shown = (await client.get("/api/v1/money")).json()
    assert shown["auto_top_up"]["paused_reason"] == auto.paused_reason


async def test_a_guest_hold_is_captured_for_less_than_its_amount(site) -> None:
    s, client = site
    card = {"number": CARD_OK, "exp_month": 12, "exp_year": 2040, "cvc": "123"}
    method = s.sdk.v1.payment_methods.create({"type": "card", "card": card})
    hold = await s.provider.hold("p1", 5_000, "AUD", "guest@example.invalid", method.id)
    assert hold["status"] == "requires_capture"
    delivered = await s.deliver(client, "payment_intent.amount_capturable_updated", hold)
    assert "authorized" in delivered.json()["outcome"]
    guest = f"guest-{hold['id']}"
    assert s.started == [guest] and await s.repo.ledger.balance(guest) == 5_000
    # The session cost 12.34: exactly that is taken, the rest released.
    assert (
        await GuestHolds(s.provider, s.repo, s.clock, text_sender(s.mailer)).settle(guest, 1_234)
        == 1_234
    )
    captured = s.sdk.v1.payment_intents.retrieve(hold["id"]).to_dict()
    assert captured["status"] == "succeeded"
    (charge,) = captured["charges"]["data"]  # localstripe's shape: the charge in the intent
    assert charge["amount"] - charge["amount_refunded"] == 1_234  # the rest released
    done = await s.deliver(
        client, "payment_intent.succeeded", {**captured, "amount_received": 1_234}
    )
    assert "captured 1234" in done.json()["outcome"]
    recorded = await s.repo.payments.intent(hold["id"])
    assert recorded is not None and recorded.captured_cents == 1_234
    assert await s.repo.ledger.ledger_sum("u") == 0  # a guest's payment is no driver's credit
