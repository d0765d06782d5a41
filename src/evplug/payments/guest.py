"""Guests paying by card: a hold for the most they want to spend, exactly the cost taken.

A guest's hold is the credit of an account of its own (``guest-<payment intent>``): the socket
starts when the hold is authorized, the session stops when its cost reaches the hold as any
session stops when credit runs out, and when it ends exactly its cost is captured and the rest
released, each step a ledger entry, so the guest's account ends at zero.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from evplug.clock import Clock
from evplug.core import ledger
from evplug.payments.events import hold_of_guest
from evplug.payments.provider import PaymentsProvider
from evplug.store.repository import Repository

log = structlog.get_logger(__name__)

RELEASED_BY = "evplug"

# Sends one email (to, subject, text): the accounts' mailer, as the assembly wires it.
SendMail = Callable[[str, str, str], Awaitable[None]]


class GuestHolds:
    def __init__(
        self, provider: PaymentsProvider, repo: Repository, clock: Clock, send_mail: SendMail
    ) -> None:
        self.provider = provider
        self.repo = repo
        self.clock = clock
        self.send_mail = send_mail

    async def settle(self, user_id: str, cost_cents: int, receipt: str = "") -> int | None:
        """Capture what the guest's session cost (at most the hold), release the rest; the
        captured cents, or None when ``user_id`` is not a guest's or was settled before."""
        payment_intent_id = hold_of_guest(user_id)
        if payment_intent_id is None:
            return None
        intent = await self.repo.payments.intent(payment_intent_id)
        if intent is not None and intent.captured_cents is not None:
            return None  # settled before (a close applied twice)
        held = await self.repo.ledger.entry(ledger.top_up_key(payment_intent_id))
        if held is None:
            raise LookupError(f"no hold {payment_intent_id} was credited to {user_id}")
        taken = min(max(cost_cents, 0), held.amount_cents)
        await self.provider.capture_hold(payment_intent_id, taken)
        left = await self.repo.ledger.balance(user_id)
        now_ms = self.clock.now_ms()
        if left > 0:
            await self.repo.ledger.post(
                ledger.refund(
                    user_id,
                    f"release-{payment_intent_id}",
                    left,
                    now_ms,
                    RELEASED_BY,
                    "the unused part of the card hold was released",
                )
            )
        elif left < 0:
            log.error(
                "guest.debt",
                user_id=user_id,
                debt_cents=-left,
                fix="the session ran past its hold: check why the credit check was late",
            )
        await self.repo.payments.set_captured(payment_intent_id, taken, now_ms)
        log.info("guest.settled", payment_intent=payment_intent_id, captured_cents=taken)
        if intent is not None and intent.email:
            await self.send_mail(intent.email, "Your charging receipt", receipt or f"Paid {taken}.")
        return taken
