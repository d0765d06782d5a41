"""Money routes: top-ups, card management, the Stripe webhook and the demo checkout.

The webhook applies a signed event through the payment events (once by event id, a credit once
by payment intent) and tells the mothership of each balance it changed, on the bus.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from evplug import metrics
from evplug.bus.base import Bus, NoResponders, RequestTimeout
from evplug.clock import Clock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack, unpack
from evplug.core.plug import Prompt
from evplug.payments.demo import DemoPaymentError, DemoProvider
from evplug.payments.events import PaymentEventError, PaymentEvents, Processed
from evplug.payments.guest import GuestHolds
from evplug.payments.provider import (
    GUEST_MIN_HOLD_CENTS,
    MAX_TOP_UP_CENTS,
    MIN_TOP_UP_CENTS,
    PaymentsError,
    PaymentsProvider,
)
from evplug.payments.stripe_webhooks import BadSignature, verify_event
from evplug.web.auth import current_user_id

log = structlog.get_logger(__name__)

Driver = Annotated[str, Depends(current_user_id)]
GUEST_START_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class PaymentsWeb:
    provider: PaymentsProvider
    events: PaymentEvents
    bus: Bus
    clock: Clock
    currency: str
    webhook_secret: str | None = None


class TopUp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_cents: int = Field(ge=MIN_TOP_UP_CENTS, le=MAX_TOP_UP_CENTS)
    return_url: str = "/"


class GuestHold(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_cents: int = Field(ge=GUEST_MIN_HOLD_CENTS, le=MAX_TOP_UP_CENTS)
    email: str = Field("", max_length=320, pattern=r"^$|^[^@\s]+@[^@\s]+$")


class ReturnTo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    return_url: str = "/"


class AutoTopUpChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold_cents: int = Field(ge=0, le=MAX_TOP_UP_CENTS)
    amount_cents: int = Field(ge=MIN_TOP_UP_CENTS, le=MAX_TOP_UP_CENTS)


def local_path(url: str) -> str:
    """Only a path on this site may be returned to: never another site (an open redirect)."""
    if url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return "/"


async def publish_balance_changes(bus: Bus, processed: Processed, now_ms: int) -> None:
    """Each balance the event changed, to the mothership: a session's credit follows it."""
    for user_id, key in processed.posted:
        change = pb.BalanceChanged(user_id=user_id, ledger_key=key, timestamp_ms=now_ms)
        await bus.publish(subjects.BALANCE_CHANGED, pack(change), msg_id=f"balance:{key}")


async def start_guest_session(
    web: PaymentsWeb, guests: GuestHolds, plug_id: str, guest: str
) -> None:
    """The hold succeeded: switch the socket on for the guest; refused, release the hold."""
    site_id = await web.events.repo.sites.site_of_plug(plug_id)
    reason = f"no plug {plug_id!r}"
    if site_id is not None:
        request = pb.DriverRequest(
            request_id=uuid.uuid4().hex,
            user_id=guest,
            plug_id=plug_id,
            prompt=Prompt.ENABLE_SOCKET.value,
        )
        try:
            data = await web.bus.request(
                subjects.for_site(subjects.DRIVER, site_id), pack(request), GUEST_START_TIMEOUT_S
            )
            reply = unpack(data, pb.DriverReply)
            if reply.code == pb.DriverReplyCode.DRIVER_REPLY_CODE_OK:
                return
            reason = reply.reason
        except (NoResponders, RequestTimeout) as exc:
            reason = f"the charging server is not answering ({type(exc).__name__})"
    log.warning("guest.not_started", plug_id=plug_id, guest=guest, reason=reason)
    await guests.settle(guest, 0)


def payments_router(web: PaymentsWeb) -> APIRouter:
    router = APIRouter()

    guests = GuestHolds(web.provider, web.events.repo, web.clock)

    async def apply(event: dict[str, Any]) -> Processed:
        processed = await web.events.process(event)
        await publish_balance_changes(web.bus, processed, web.clock.now_ms())
        for _, plug_id, guest in processed.holds:
            await start_guest_session(web, guests, plug_id, guest)
        return processed

    @router.post("/webhooks/stripe")
    async def stripe_webhook(request: Request) -> dict[str, Any]:
        payload = await request.body()
        if web.webhook_secret is None:
            metrics.PAYMENT_EVENTS.labels("unknown", "rejected").inc()
            raise HTTPException(400, "webhooks are off: set STRIPE_WEBHOOK_SECRET to take them")
        try:
            signature = request.headers.get("stripe-signature")
            event = verify_event(payload, signature, web.webhook_secret)
            processed = await apply(event)
        except (BadSignature, PaymentEventError) as exc:
            metrics.PAYMENT_EVENTS.labels("unknown", "rejected").inc()
            log.warning("payments.webhook_rejected", error=str(exc))
            raise HTTPException(400, f"webhook refused: {exc}") from None
        return {"received": True, "applied": processed.first_time, "outcome": processed.outcome}

    @router.post("/api/top-ups")
    async def start_top_up(choice: TopUp, user_id: Driver) -> dict[str, str]:
        try:
            redirect = await web.provider.start_top_up(
                user_id, choice.amount_cents, web.currency, local_path(choice.return_url)
            )
        except PaymentsError as exc:
            raise HTTPException(502, str(exc)) from None
        return {"url": redirect.url}

    @router.post("/api/payment-methods")
    async def manage_cards(choice: ReturnTo, user_id: Driver) -> dict[str, str]:
        try:
            redirect = await web.provider.manage_payment_methods(
                user_id, local_path(choice.return_url)
            )
        except PaymentsError as exc:
            raise HTTPException(502, str(exc)) from None
        return {"url": redirect.url}

    @router.post("/api/plugs/{plug_id}/guest-holds")
    async def start_guest_hold(plug_id: str, hold: GuestHold) -> dict[str, str]:
        """Pay by card without an account: a hold for the most the guest wants to spend."""
        repo = web.events.repo
        site_id = await repo.sites.site_of_plug(plug_id)
        if site_id is None:
            raise HTTPException(404, f"no plug {plug_id!r}: check the code on the socket")
        site = await repo.sites.get_site(site_id)
        currency = site.currency if site else web.currency
        try:
            redirect = await web.provider.start_guest_hold(
                plug_id, hold.amount_cents, currency, hold.email, f"/plugs/{plug_id}"
            )
        except PaymentsError as exc:
            raise HTTPException(502, str(exc)) from None
        return {"url": redirect.url, "follow": f"/plugs/{plug_id}"}

    @router.get("/api/payments")
    async def payments_status(user_id: Driver) -> dict[str, Any]:
        """What the money page shows: cards, auto top-up and why it is paused, if it is."""
        repo = web.events.repo
        customer = await repo.payments.customer(user_id)
        auto = await repo.payments.auto_top_up(user_id)
        return {
            "provider": web.provider.name,
            "default_card": customer.default_payment_method if customer else "",
            "cards": [
                {"id": m.id, "brand": m.brand, "last4": m.last4}
                for m in await repo.payments.methods(user_id)
            ],
            "auto_top_up": None
            if auto is None
            else {
                "threshold_cents": auto.threshold_cents,
                "amount_cents": auto.amount_cents,
                "paused_reason": auto.paused_reason,
            },
        }

    @router.put("/api/auto-top-up")
    async def set_auto_top_up(choice: AutoTopUpChoice, user_id: Driver) -> dict[str, Any]:
        await web.events.repo.payments.set_auto_top_up(
            user_id, choice.threshold_cents, choice.amount_cents
        )
        # The mothership reads the new settings for the sessions under way.
        change = pb.BalanceChanged(
            user_id=user_id, ledger_key="auto-top-up-settings", timestamp_ms=web.clock.now_ms()
        )
        await web.bus.publish(subjects.BALANCE_CHANGED, pack(change))
        return await payments_status(user_id)

    if isinstance(web.provider, DemoProvider):
        _demo_checkout(router, web.provider, apply)
    return router


def _demo_checkout(router: APIRouter, demo: DemoProvider, apply: Any) -> None:
    @router.get("/pay/demo/cards", response_class=HTMLResponse)
    async def demo_cards(return_to: str = "/") -> str:
        back = html.escape(local_path(return_to))
        return _page(
            "Cards (demo)",
            f"<p>The demo keeps no cards: every demo payment succeeds.</p>"
            f'<p><a href="{back}">Back</a></p>',
        )

    @router.get("/pay/demo/{intent_id}", response_class=HTMLResponse)
    async def demo_checkout(intent_id: str, user_id: Driver, return_to: str = "/") -> str:
        try:
            intent = await demo.checkout(user_id, intent_id)
        except DemoPaymentError as exc:
            raise HTTPException(404, str(exc)) from None
        amount = f"{intent.amount_cents / 100:.2f} {intent.currency.upper()}"
        back = html.escape(quote(local_path(return_to)))
        return _page(
            "Top up (demo)",
            f"<p>Top up <strong>{amount}</strong>.</p>"
            f'<form method="post" action="?return_to={back}">'
            f'<button type="submit">Pay {amount} (demo — no money moves)</button></form>',
        )

    @router.post("/pay/demo/{intent_id}")
    async def demo_pay(intent_id: str, user_id: Driver, return_to: str = "/") -> RedirectResponse:
        try:
            event = await demo.pay(user_id, intent_id)
        except DemoPaymentError as exc:
            raise HTTPException(404, str(exc)) from None
        await apply(event)
        return RedirectResponse(local_path(return_to), status_code=303)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body>"
        '<p role="note"><strong>demo — no money moves</strong></p>'
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
