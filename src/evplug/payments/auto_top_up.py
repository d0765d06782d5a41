"""Auto top-up: charge the driver's saved card off-session when their credit runs low.

A success is applied as its ``payment_intent.succeeded`` event would be (credited once, keyed on
the payment intent, whichever comes first: this or the webhook). A decline or a bank asking for
the driver (authentication_required) pauses auto top-up with the reason, for the money page to
show; it stays paused until the driver sets it again.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from evplug.clock import Clock
from evplug.payments.events import PaymentEvents, intent_event
from evplug.payments.provider import PaymentsError, PaymentsProvider

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TopUpResult:
    status: str  # succeeded, declined, authentication_required, off, paused, unavailable
    reason: str = ""
    payment_intent_id: str = ""
    # (user id, ledger key) of the credit, when this call posted it.
    posted: tuple[tuple[str, str], ...] = ()


class AutoTopUps:
    def __init__(self, provider: PaymentsProvider, events: PaymentEvents, clock: Clock) -> None:
        self.provider = provider
        self.events = events
        self.repo = events.repo
        self.clock = clock

    async def charge(self, user_id: str, idempotency_key: str, currency: str) -> TopUpResult:
        """Charge the driver's auto top-up amount once per ``idempotency_key``."""
        settings = await self.repo.payments.auto_top_up(user_id)
        if settings is None:
            return TopUpResult("off")
        if settings.paused_reason:
            return TopUpResult("paused", settings.paused_reason)
        try:
            charge = await self.provider.charge_off_session(
                user_id, settings.amount_cents, currency, idempotency_key
            )
        except PaymentsError as exc:  # the provider is away: not the card's fault, try later
            log.warning("payments.auto_top_up_unavailable", user_id=user_id, error=str(exc))
            return TopUpResult("unavailable", str(exc))
        if charge.status == "succeeded":
            processed = await self.events.process(
                intent_event(
                    f"charge_{charge.payment_intent_id}", "payment_intent.succeeded", charge.intent
                )
            )
            log.info("payments.auto_top_up", user_id=user_id, cents=settings.amount_cents)
            return TopUpResult("succeeded", "", charge.payment_intent_id, processed.posted)
        reason = f"auto top-up {charge.status.replace('_', ' ')}: {charge.reason}"
        await self.repo.payments.pause_auto_top_up(user_id, reason, self.clock.now_ms())
        log.warning("payments.auto_top_up_paused", user_id=user_id, reason=reason)
        return TopUpResult(charge.status, reason, charge.payment_intent_id)
