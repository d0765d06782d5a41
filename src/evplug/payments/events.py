"""Provider events, in Stripe's shape, applied to the store exactly once.

Stripe's webhooks and the demo checkout both end here, so a demo top-up takes the very path a
card payment does. Each event is recorded by its id in the transaction that applies it; a credit
is keyed on its payment intent, so a replayed, duplicated, late or out-of-order event credits
nothing extra. An event about something that is not ours (an unknown driver, a payment we did
not ask for) changes nothing, and says why in its recorded outcome and in the log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from evplug import metrics
from evplug.clock import Clock
from evplug.core import ledger
from evplug.store.payments import EventWork
from evplug.store.repository import Repository

log = structlog.get_logger(__name__)

# Payment purposes, as put in each payment intent's metadata when we create it.
TOP_UP = "top_up"
AUTO_TOP_UP = "auto_top_up"
GUEST_HOLD = "guest_hold"

# Who a refund that arrived from the provider is attributed to.
PROVIDER_ACTOR = "payments provider"


class PaymentEventError(ValueError):
    """An event that cannot be read: refused (400), nothing changed."""


@dataclass(frozen=True, slots=True)
class Processed:
    event_id: str
    event_type: str
    first_time: bool
    outcome: str
    # (user id, ledger key) of each entry the event posted: their balances changed.
    posted: tuple[tuple[str, str], ...] = ()
    # (payment intent, plug id, guest's user id) of each card hold authorized: start the socket.
    holds: tuple[tuple[str, str, str], ...] = ()


Handler = Callable[[EventWork, Mapping[str, Any]], Awaitable[str]]


class PaymentEvents:
    def __init__(self, repo: Repository, clock: Clock) -> None:
        self.repo = repo
        self.clock = clock
        self._handlers: dict[str, Handler] = {
            "checkout.session.completed": _checkout_completed,
            "payment_intent.succeeded": _intent_succeeded,
            "payment_intent.payment_failed": _intent_failed,
            "payment_intent.canceled": _intent_canceled,
            "payment_intent.amount_capturable_updated": _hold_authorized,
            "payment_method.attached": _method_attached,
            "payment_method.detached": _method_detached,
            "customer.updated": _customer_updated,
            "charge.refunded": _charge_refunded,
        }

    async def process(self, event: Mapping[str, Any]) -> Processed:
        event_id, event_type, obj = _parts(event)
        handler = self._handlers.get(event_type)
        if handler is None:
            metrics.PAYMENT_EVENTS.labels(event_type, "ignored").inc()
            return Processed(event_id, event_type, False, "not a type evplug handles")

        async def work(doing: EventWork) -> str:
            try:
                return await handler(doing, obj)
            except ledger.LedgerError:
                raise
            except (KeyError, TypeError, ValueError) as exc:
                raise PaymentEventError(
                    f"{event_type} {event_id}: field {exc} missing or of the wrong type"
                ) from None

        try:
            applied = await self.repo.payments.apply_event(
                event_id, event_type, self.clock.now_ms(), work
            )
        except ledger.LedgerError as exc:
            raise PaymentEventError(f"{event_type} {event_id}: {exc}") from None
        if applied is None:
            metrics.PAYMENT_EVENTS.labels(event_type, "duplicate").inc()
            log.info("payments.duplicate_event", event_id=event_id, type=event_type)
            return Processed(event_id, event_type, False, "applied before")
        result = "ignored" if applied.outcome.startswith("ignored") else "applied"
        metrics.PAYMENT_EVENTS.labels(event_type, result).inc()
        log.info("payments.event", event_id=event_id, type=event_type, outcome=applied.outcome)
        return Processed(event_id, event_type, True, applied.outcome, applied.posted, applied.holds)


def intent_event(event_id: str, event_type: str, intent: Mapping[str, Any]) -> dict[str, Any]:
    """A payment intent's event as the provider sends it: for a result known at once (an
    off-session charge, the demo's checkout) that must take the webhook's path."""
    return {"id": event_id, "type": event_type, "data": {"object": dict(intent)}}


def _parts(event: Mapping[str, Any]) -> tuple[str, str, Mapping[str, Any]]:
    try:
        event_id, event_type = event["id"], event["type"]
        obj = event["data"]["object"]
    except (KeyError, TypeError):
        raise PaymentEventError("not an event: it needs id, type and data.object") from None
    if not (isinstance(event_id, str) and event_id and isinstance(event_type, str)):
        raise PaymentEventError("an event's id and type are non-empty strings")
    if not isinstance(obj, Mapping):
        raise PaymentEventError(f"{event_type} {event_id}: data.object is not an object")
    return event_id, event_type, obj


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


async def _credit(
    doing: EventWork, user_id: str | None, payment_intent_id: str, cents: int, currency: str
) -> str:
    if not user_id or not await doing.user_exists(user_id):
        log.warning("payments.unknown_driver", payment_intent=payment_intent_id, user_id=user_id)
        return f"ignored: payment {payment_intent_id} names no driver we know ({user_id!r})"
    entry = ledger.top_up(
        user_id, payment_intent_id, int(cents), doing.now_ms, f"top-up {currency.upper()}"
    )
    await doing.intent_status(payment_intent_id, "succeeded")
    if await doing.post(entry):
        return f"credited {cents} to {user_id}"
    return f"payment {payment_intent_id} was credited before"


async def _checkout_completed(doing: EventWork, obj: Mapping[str, Any]) -> str:
    if obj.get("mode") != "payment" or obj.get("payment_status") != "paid":
        return f"ignored: checkout {obj['id']} is not a paid payment"
    user_id = _metadata(obj).get("user_id") or obj.get("client_reference_id")
    return await _credit(
        doing, user_id, obj["payment_intent"], obj["amount_total"], obj["currency"]
    )


async def _intent_succeeded(doing: EventWork, obj: Mapping[str, Any]) -> str:
    purpose = _metadata(obj).get("purpose", TOP_UP)
    received = obj.get("amount_received") or obj["amount"]
    if purpose == GUEST_HOLD:
        await doing.intent_status(obj["id"], "captured", captured_cents=int(received))
        return f"guest hold {obj['id']} captured {received}"
    return await _credit(doing, _metadata(obj).get("user_id"), obj["id"], received, obj["currency"])


def failure_reason(error: Mapping[str, Any] | None) -> str:
    """A payment error in the words the driver is shown, with its code."""
    if not error:
        return "the payment failed"
    code = error.get("decline_code") or error.get("code") or "failed"
    message = error.get("message") or "the card was declined"
    return f"{message} ({code})"


async def _intent_failed(doing: EventWork, obj: Mapping[str, Any]) -> str:
    reason = failure_reason(obj.get("last_payment_error"))
    if not await doing.intent_status(obj["id"], "failed", reason):
        return f"ignored: payment {obj['id']} is not one evplug asked for"
    metadata = _metadata(obj)
    if metadata.get("purpose") == AUTO_TOP_UP and metadata.get("user_id"):
        await doing.pause_auto_top_up(metadata["user_id"], reason)
        return f"auto top-up of {metadata['user_id']} paused: {reason}"
    return f"payment {obj['id']} failed: {reason}"


async def _intent_canceled(doing: EventWork, obj: Mapping[str, Any]) -> str:
    reason = obj.get("cancellation_reason") or "canceled"
    if not await doing.intent_status(obj["id"], "canceled", reason):
        return f"ignored: payment {obj['id']} is not one evplug asked for"
    return f"payment {obj['id']} canceled ({reason})"


def guest_user_id(payment_intent_id: str) -> str:
    """The account of the guest whose card hold this is."""
    return f"guest-{payment_intent_id}"


def hold_of_guest(user_id: str) -> str | None:
    """The card hold a guest's account stands for (None: not a guest)."""
    return user_id.removeprefix("guest-") if user_id.startswith("guest-") else None


async def _hold_authorized(doing: EventWork, obj: Mapping[str, Any]) -> str:
    intent = await doing.intent(obj["id"])
    # A hold made through Checkout is known by its metadata only (its id comes with the event).
    plug_id = intent.plug_id if intent else _metadata(obj).get("plug_id", "")
    if _metadata(obj).get("purpose", intent and intent.purpose) != GUEST_HOLD or not plug_id:
        return f"ignored: hold {obj['id']} is not one evplug asked for"
    held = int(obj.get("amount_capturable") or obj["amount"])
    await doing.intent_status(obj["id"], "requires_capture")
    guest = guest_user_id(obj["id"])
    await doing.ensure_guest(guest)
    # The hold is the guest's credit: the session stops when its cost reaches it.
    if await doing.post(ledger.top_up(guest, obj["id"], held, doing.now_ms, "card hold")):
        doing.holds.append((obj["id"], plug_id, guest))
    return f"hold {obj['id']} authorized for {held}"


async def _method_attached(doing: EventWork, obj: Mapping[str, Any]) -> str:
    user_id = await doing.user_of_customer(obj.get("customer") or "")
    if user_id is None:
        return f"ignored: card {obj['id']} is not a customer of ours"
    card = obj.get("card") or {}
    await doing.add_method(user_id, obj["id"], card.get("brand", ""), card.get("last4", ""))
    return f"card {obj['id']} saved for {user_id}"


async def _method_detached(doing: EventWork, obj: Mapping[str, Any]) -> str:
    await doing.remove_method(obj["id"])
    return f"card {obj['id']} removed"


async def _customer_updated(doing: EventWork, obj: Mapping[str, Any]) -> str:
    user_id = await doing.user_of_customer(obj["id"])
    if user_id is None:
        return f"ignored: customer {obj['id']} is not ours"
    default = (obj.get("invoice_settings") or {}).get("default_payment_method") or ""
    await doing.set_default_method(user_id, default)
    return f"default card of {user_id}: {default or 'none'}"


async def _charge_refunded(doing: EventWork, obj: Mapping[str, Any]) -> str:
    # Whose credit it refunds; a refund delivered before its payment is known by its customer.
    user_id = await doing.user_of_credit(obj.get("payment_intent") or "")
    if user_id is None:
        user_id = await doing.user_of_customer(obj.get("customer") or "")
    if user_id is None:
        return f"ignored: charge {obj['id']} credited no balance (a guest's, or not ours)"
    refunds = (obj.get("refunds") or {}).get("data") or []
    taken = 0
    for refund in refunds:
        if refund.get("status", "succeeded") != "succeeded":
            continue
        reason = f"refunded at the provider: {refund.get('reason') or 'no reason given'}"
        entry = ledger.refund(
            user_id, refund["id"], int(refund["amount"]), doing.now_ms, PROVIDER_ACTOR, reason
        )
        if await doing.post(entry):
            taken += int(refund["amount"])
    return f"refunded {taken} from {user_id}"
