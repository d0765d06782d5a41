"""The demo provider of the embedded default: a local checkout page, and no money moves.

Its payments go through the same event path as Stripe's: the demo checkout page confirms a
payment intent by applying a ``payment_intent.succeeded`` event in Stripe's shape, so the ledger
sees a demo top-up exactly as it sees a card payment.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any
from urllib.parse import quote

from evplug.clock import Clock
from evplug.payments.events import AUTO_TOP_UP, GUEST_HOLD, TOP_UP, intent_event
from evplug.payments.provider import GUEST_MIN_HOLD_CENTS, Charge, Redirect, check_amount
from evplug.store.records import PaymentIntentRecord
from evplug.store.repository import Repository

DEMO_CHECKOUT_PATH = "/pay/demo"


class DemoPaymentError(LookupError):
    """A demo checkout that is not this driver's, or not waiting for payment."""


class DemoProvider:
    name = "demo"

    def __init__(self, repo: Repository, clock: Clock) -> None:
        self.repo = repo
        self.clock = clock

    async def ensure_customer(self, user_id: str, email: str) -> str:
        return await self.repo.payments.ensure_customer(user_id, self.name, f"demo_cus_{user_id}")

    async def start_top_up(
        self, user_id: str, amount_cents: int, currency: str, return_url: str
    ) -> Redirect:
        check_amount(amount_cents)
        intent_id = f"demo_pi_{uuid.uuid4().hex[:24]}"
        await self._record(intent_id, TOP_UP, user_id, amount_cents, currency)
        return Redirect(f"{DEMO_CHECKOUT_PATH}/{intent_id}?return_to={quote(return_url)}")

    async def manage_payment_methods(self, user_id: str, return_url: str) -> Redirect:
        return Redirect(f"{DEMO_CHECKOUT_PATH}/cards?return_to={quote(return_url)}")

    async def charge_off_session(
        self, user_id: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        # One key, one intent id: asked twice, the same payment is credited once.
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        intent_id = f"demo_pi_{digest}"
        await self._record(intent_id, AUTO_TOP_UP, user_id, amount_cents, currency)
        intent = succeeded_intent(intent_id, AUTO_TOP_UP, user_id, amount_cents, currency)
        return Charge(intent_id, "succeeded", "", intent)

    async def start_guest_hold(
        self, plug_id: str, amount_cents: int, currency: str, email: str, return_url: str
    ) -> Redirect:
        check_amount(amount_cents, GUEST_MIN_HOLD_CENTS)
        intent_id = f"demo_pi_{uuid.uuid4().hex[:24]}"
        await self.repo.payments.record_intent(
            PaymentIntentRecord(
                intent_id,
                GUEST_HOLD,
                None,
                amount_cents,
                currency,
                "requires_payment_method",
                self.clock.now_ms(),
                plug_id=plug_id,
                email=email,
            )
        )
        return Redirect(f"{DEMO_CHECKOUT_PATH}/{intent_id}?return_to={quote(return_url)}")

    async def capture_hold(self, payment_intent_id: str, cents: int) -> None:
        return None  # no money moves: the ledger records what was taken and released

    async def checkout(self, user_id: str, intent_id: str) -> PaymentIntentRecord:
        """The demo checkout ``intent_id``: this driver's top-up, or a guest's hold (whoever
        has its link), waiting for payment (else DemoPaymentError)."""
        intent = await self.repo.payments.intent(intent_id)
        if intent is None or not (
            (intent.purpose == TOP_UP and intent.user_id == user_id) or intent.purpose == GUEST_HOLD
        ):
            raise DemoPaymentError(f"no demo checkout {intent_id!r} of yours: start a top-up")
        return intent

    async def pay(self, user_id: str, intent_id: str) -> dict[str, Any]:
        """The event that the demo checkout's "Pay" confirms, for the payment events to apply."""
        intent = await self.checkout(user_id, intent_id)
        if intent.purpose == GUEST_HOLD:
            held = {
                "id": intent.id,
                "object": "payment_intent",
                "amount": intent.amount_cents,
                "amount_capturable": intent.amount_cents,
                "currency": intent.currency.lower(),
                "status": "requires_capture",
                "metadata": {"purpose": GUEST_HOLD, "plug_id": intent.plug_id},
            }
            event_type = "payment_intent.amount_capturable_updated"
            return intent_event(f"evt_demo_{intent.id}", event_type, held)
        paid = succeeded_intent(intent.id, TOP_UP, user_id, intent.amount_cents, intent.currency)
        return intent_event(f"evt_demo_{intent.id}", "payment_intent.succeeded", paid)

    async def _record(
        self, intent_id: str, purpose: str, user_id: str, cents: int, currency: str
    ) -> None:
        await self.repo.payments.record_intent(
            PaymentIntentRecord(
                intent_id,
                purpose,
                user_id,
                cents,
                currency,
                "requires_payment_method",
                self.clock.now_ms(),
            )
        )


def succeeded_intent(
    intent_id: str, purpose: str, user_id: str, cents: int, currency: str
) -> dict[str, Any]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": cents,
        "amount_received": cents,
        "currency": currency.lower(),
        "status": "succeeded",
        "metadata": {"user_id": user_id, "purpose": purpose},
    }
