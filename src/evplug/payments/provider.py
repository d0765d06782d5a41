"""What the web app and the mothership need from a payments provider.

Two providers implement it: the demo provider of the embedded default (a local checkout page, no
money moves) and Stripe. Either way a payment reaches the balance only through the ledger, keyed on
the provider's payment id, so a replayed or duplicated confirmation credits nothing extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# The original's minimum top-up: anything smaller costs more in card fees than it is worth.
MIN_TOP_UP_CENTS = 1_000


@dataclass(frozen=True, slots=True)
class Redirect:
    """Where to send the driver's browser next (a checkout or billing-portal page)."""

    url: str


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
