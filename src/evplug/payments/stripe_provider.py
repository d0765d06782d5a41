"""Stripe, through the official SDK: customers, Checkout top-ups that save the card, the Billing
Portal, off-session auto top-ups and guests' card holds.

The SDK's calls block, so each runs in a worker thread. Every call that creates something carries
an idempotency key, so a retried request creates nothing twice. Payments are credited by their
events (``payments.events``), never by the redirect that follows a checkout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import stripe

from evplug.clock import Clock
from evplug.payments.events import AUTO_TOP_UP, GUEST_HOLD, TOP_UP, failure_reason
from evplug.payments.provider import (
    GUEST_MIN_HOLD_CENTS,
    Charge,
    PaymentsError,
    Redirect,
    check_amount,
)
from evplug.store.records import PaymentIntentRecord
from evplug.store.repository import Repository

# What a declined off-session charge is called when the bank wants the driver present.
AUTHENTICATION_REQUIRED = "authentication_required"


class StripeProvider:
    name = "stripe"

    def __init__(
        self, repo: Repository, clock: Clock, secret_key: str, api_base: str, public_url: str
    ) -> None:
        self.repo = repo
        self.clock = clock
        self.public_url = public_url.rstrip("/")
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base},
            max_network_retries=2,
        )

    async def ensure_customer(self, user_id: str, email: str) -> str:
        existing = await self.repo.payments.customer(user_id)
        if existing is not None:
            return existing.customer_id
        customer = await self._call(
            self.client.v1.customers.create,
            {"email": email, "metadata": {"user_id": user_id}},
            f"evplug-customer:{user_id}",
        )
        return await self.repo.payments.ensure_customer(user_id, self.name, customer.id)

    async def start_top_up(
        self, user_id: str, amount_cents: int, currency: str, return_url: str
    ) -> Redirect:
        check_amount(amount_cents)
        customer_id = await self._customer_of(user_id)
        metadata = {"user_id": user_id, "purpose": TOP_UP}
        back = self._absolute(return_url)
        session = await self._call(
            self.client.v1.checkout.sessions.create,
            {
                "mode": "payment",
                "customer": customer_id,
                "client_reference_id": user_id,
                "line_items": [
                    {
                        "price_data": {
                            "currency": currency.lower(),
                            "unit_amount": amount_cents,
                            "product_data": {"name": "Charging credit"},
                        },
                        "quantity": 1,
                    }
                ],
                # Saved for auto top-ups during a session, with the driver away.
                "payment_intent_data": {"setup_future_usage": "off_session", "metadata": metadata},
                "metadata": metadata,
                "success_url": back,
                "cancel_url": back,
            },
        )
        return Redirect(session.url)

    async def manage_payment_methods(self, user_id: str, return_url: str) -> Redirect:
        customer_id = await self._customer_of(user_id)
        portal = await self._call(
            self.client.v1.billing_portal.sessions.create,
            {"customer": customer_id, "return_url": self._absolute(return_url)},
        )
        return Redirect(portal.url)

    async def charge_off_session(
        self, user_id: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        customer_id = await self._customer_of(user_id)
        method = await self._card_of(customer_id)
        if method is None:
            return Charge("", "declined", "no saved card: top up once to save one", {})
        params = {
            "amount": check_amount(amount_cents, 1),
            "currency": currency.lower(),
            "customer": customer_id,
            "payment_method": method,
            "off_session": True,
            "confirm": True,
            "metadata": {"user_id": user_id, "purpose": AUTO_TOP_UP},
        }
        try:
            intent = await self._call(
                self.client.v1.payment_intents.create, params, idempotency_key, raw=True
            )
        except stripe.CardError as exc:
            error = exc.error.to_dict() if exc.error is not None else {}
            failed = error.get("payment_intent") or {}
            status = AUTHENTICATION_REQUIRED if exc.code == AUTHENTICATION_REQUIRED else "declined"
            if failed.get("id"):
                await self._record(failed["id"], AUTO_TOP_UP, user_id, amount_cents, currency)
            return Charge(failed.get("id", ""), status, failure_reason(error), failed)
        paid = intent.to_dict()
        await self._record(intent.id, AUTO_TOP_UP, user_id, amount_cents, currency)
        if paid["status"] == "succeeded":
            return Charge(intent.id, "succeeded", "", paid)
        reason = failure_reason(paid.get("last_payment_error"))
        return Charge(intent.id, AUTHENTICATION_REQUIRED, reason, paid)

    async def start_guest_hold(
        self, plug_id: str, amount_cents: int, currency: str, email: str, return_url: str
    ) -> Redirect:
        check_amount(amount_cents, GUEST_MIN_HOLD_CENTS)
        metadata = {"plug_id": plug_id, "purpose": GUEST_HOLD, "email": email}
        back = self._absolute(return_url)
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": amount_cents,
                        "product_data": {"name": "Charging, up to this amount"},
                    },
                    "quantity": 1,
                }
            ],
            # Held, not taken: the session's cost is captured when it ends.
            "payment_intent_data": {"capture_method": "manual", "metadata": metadata},
            "metadata": metadata,
            "success_url": back,
            "cancel_url": back,
        }
        if email:
            params["customer_email"] = email
        session = await self._call(self.client.v1.checkout.sessions.create, params)
        return Redirect(session.url)

    async def capture_hold(self, payment_intent_id: str, cents: int) -> None:
        await self.capture(payment_intent_id, cents)

    async def hold(
        self, plug_id: str, amount_cents: int, currency: str, email: str, payment_method: str
    ) -> dict[str, Any]:
        """A guest's card hold for up to ``amount_cents`` (captured later for the cost)."""
        params = {
            "amount": check_amount(amount_cents, 100),
            "currency": currency.lower(),
            "payment_method": payment_method,
            "capture_method": "manual",
            "confirm": True,
            "metadata": {"plug_id": plug_id, "purpose": GUEST_HOLD},
        }
        intent = await self._call(self.client.v1.payment_intents.create, params, raw=True)
        await self.repo.payments.record_intent(
            PaymentIntentRecord(
                intent.id,
                GUEST_HOLD,
                None,
                amount_cents,
                currency,
                intent.status,
                self.clock.now_ms(),
                plug_id=plug_id,
                email=email,
            )
        )
        return intent.to_dict()

    async def capture(self, payment_intent_id: str, cents: int) -> dict[str, Any]:
        """Take ``cents`` of a hold and release the rest; nothing taken cancels the hold."""
        if cents <= 0:
            intent = await self._call(
                self.client.v1.payment_intents.cancel, {}, target=payment_intent_id
            )
        else:
            intent = await self._call(
                self.client.v1.payment_intents.capture,
                {"amount_to_capture": cents},
                f"evplug-capture:{payment_intent_id}",
                target=payment_intent_id,
            )
        return intent.to_dict()

    async def _customer_of(self, user_id: str) -> str:
        customer = await self.repo.payments.customer(user_id)
        if customer is not None:
            return customer.customer_id
        user = await self.repo.users.get_user(user_id)
        return await self.ensure_customer(user_id, user.email)

    async def _card_of(self, customer_id: str) -> str | None:
        """The customer's default card, else their first saved one, as Stripe has them now."""
        customer = await self._call(self.client.v1.customers.retrieve, {}, target=customer_id)
        settings = customer.to_dict().get("invoice_settings") or {}
        default = settings.get("default_payment_method")
        if default:
            return default if isinstance(default, str) else default["id"]
        cards = await self._call(
            self.client.v1.payment_methods.list, {"customer": customer_id, "type": "card"}
        )
        listed = cards.to_dict().get("data") or []
        return listed[0]["id"] if listed else None

    async def _record(
        self, intent_id: str, purpose: str, user_id: str, cents: int, currency: str
    ) -> None:
        await self.repo.payments.record_intent(
            PaymentIntentRecord(
                intent_id, purpose, user_id, cents, currency, "created", self.clock.now_ms()
            )
        )

    def _absolute(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.public_url}{path}"

    async def _call(
        self,
        method: Callable[..., Any],
        params: dict[str, Any],
        idempotency_key: str | None = None,
        target: str | None = None,
        raw: bool = False,
    ) -> Any:
        """One SDK call in a worker thread; Stripe's refusal as a PaymentsError unless ``raw``."""
        options: dict[str, Any] = {}
        if idempotency_key:
            options["idempotency_key"] = idempotency_key
        args = (target,) if target is not None else ()
        try:
            return await asyncio.to_thread(method, *args, params=params, options=options)
        except stripe.StripeError as exc:
            if raw and isinstance(exc, stripe.CardError):
                raise
            raise PaymentsError(
                f"Stripe refused ({type(exc).__name__}: {exc.user_message or exc}): check"
                " STRIPE_SECRET_KEY and STRIPE_API_BASE, and Stripe's dashboard log"
            ) from None
