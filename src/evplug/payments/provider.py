"""What the web app and the mothership need from a payments provider.

Two providers implement it: the demo provider of the embedded default (a local checkout page, no
money moves) and Stripe. Either way a payment reaches the balance only through the ledger, keyed on
the provider's payment id, so a replayed or duplicated confirmation credits nothing extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

# The original's minimum top-up: anything smaller costs more in card fees than it is worth.
MIN_TOP_UP_CENTS = 1_000
# The most one top-up or hold may be (the ledger's cap on one entry is higher).
MAX_TOP_UP_CENTS = 100_000
# A guest's smallest card hold: the socket runs until its cost reaches the hold.
GUEST_MIN_HOLD_CENTS = 500


class PaymentsError(RuntimeError):
    """The provider refused or could not be reached; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """Where to send the driver's browser next (a checkout or billing-portal page)."""

    url: str


@dataclass(frozen=True, slots=True)
class Charge:
    """An off-session charge's result: the payment intent, in the provider's event shape.

    ``status`` is succeeded, declined or authentication_required; ``reason`` says why not.
    """

    payment_intent_id: str
    status: str
    reason: str
    intent: dict[str, Any]


def check_amount(amount_cents: int, minimum: int = MIN_TOP_UP_CENTS) -> int:
    if not isinstance(amount_cents, int) or not minimum <= amount_cents <= MAX_TOP_UP_CENTS:
        raise ValueError(
            f"an amount is whole cents from {minimum} to {MAX_TOP_UP_CENTS}, not {amount_cents!r}"
        )
    return amount_cents


class PaymentsProvider(Protocol):
    name: str

    async def ensure_customer(self, user_id: str, email: str) -> str:
        """The provider's customer for this driver, created once however often it is asked."""
        ...

    async def start_top_up(
        self, user_id: str, amount_cents: int, currency: str, return_url: str
    ) -> Redirect:
        """A checkout for ``amount_cents`` (>= MIN_TOP_UP_CENTS) that saves the card."""
        ...

    async def manage_payment_methods(self, user_id: str, return_url: str) -> Redirect:
        """The provider's page where this driver, and only this driver, manages their cards."""
        ...

    async def charge_off_session(
        self, user_id: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        """Charge the driver's default (else first) saved card, the driver not present.

        One ``idempotency_key`` charges once, however often asked.
        """
        ...

    async def start_guest_hold(
        self, plug_id: str, amount_cents: int, currency: str, email: str, return_url: str
    ) -> Redirect:
        """A checkout that holds up to ``amount_cents`` on a guest's card (manual capture)."""
        ...

    async def capture_hold(self, payment_intent_id: str, cents: int) -> None:
        """Take exactly ``cents`` of the hold and release the rest (0: release it all)."""
        ...
