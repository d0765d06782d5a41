"""With STRIPE_* set, the demo takes payments through Stripe (a localstripe here)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import stripe

from evplug import assembly
from evplug.demo import DEMO_DRIVER, DemoOptions, build
from evplug.payments.stripe_provider import StripeProvider
from evplug.payments.stripe_webhooks import sign
from evplug.settings import Settings
from tests.payments.conftest import event, intent
from tests.web.conftest import client_for

pytestmark = pytest.mark.integration


async def test_the_demo_with_stripe_keys_makes_customers_and_refuses_forged_webhooks(
    tmp_path: Path, localstripe_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_demo")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_demo")
    monkeypatch.setenv("STRIPE_API_BASE", localstripe_url)
    settings = Settings(data_dir=tmp_path)
    system = await build(settings, DemoOptions(plugs=1))
    try:
        assert isinstance(system.payments, StripeProvider)
        customer = await system.repo.payments.customer(DEMO_DRIVER)
        assert customer is not None and customer.provider == "stripe"
        sdk = stripe.StripeClient("sk_test_demo", base_addresses={"api": localstripe_url})
        user = await system.repo.users.get_user(DEMO_DRIVER)
        assert sdk.v1.customers.retrieve(customer.customer_id).email == user.email

        app = assembly.make_web_app(settings, system.bus, system.store)
        payload = json.dumps(event("evt_1", "payment_intent.succeeded", intent("pi_1", 9_000)))
        forged = sign(payload.encode(), "whsec_not_stripes", int(time.time()))
        before = await system.repo.ledger.balance(DEMO_DRIVER)
        async with client_for(app) as client:
            refused = await client.post(
                "/webhooks/stripe", content=payload, headers={"Stripe-Signature": forged}
            )
        assert refused.status_code == 400
        assert await system.repo.ledger.balance(DEMO_DRIVER) == before
    finally:
        await system.stop()


async def test_without_a_key_the_demo_provider_is_used(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    system = await build(settings, DemoOptions(plugs=1))
    try:
        assert system.payments is not None and system.payments.name == "demo"
    finally:
        await system.stop()
