"""The provider's side of money: the Stripe webhook and the demo checkout pages (the driver's
money operations are on /api/v1, in ``driver_api``).

The webhook applies a signed event through the payment events (once by event id, a credit once
by payment intent) and tells the mothership of each balance it changed, on the bus.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import structlog
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from evplug import metrics
from evplug.bus.base import Bus, NoResponders, RequestTimeout
from evplug.clock import Clock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack, unpack
from evplug.core.plug import Prompt
from evplug.payments.demo import DemoPaymentError, DemoProvider
from evplug.payments.events import GUEST_HOLD, PaymentEventError, PaymentEvents, Processed
from evplug.payments.guest import GuestHolds, SendMail
from evplug.payments.provider import (
    PaymentsProvider,
)
from evplug.payments.stripe_webhooks import BadSignature, verify_event
from evplug.web.auth import Anyone
from evplug.web.csrf import csrf_input

log = structlog.get_logger(__name__)

GUEST_START_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class PaymentsWeb:
    provider: PaymentsProvider
    events: PaymentEvents
    bus: Bus
    clock: Clock
    send_mail: SendMail  # the guest's receipt, when a hold is released
    webhook_secret: str | None = None


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

    guests = GuestHolds(web.provider, web.events.repo, web.clock, web.send_mail)

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

    if isinstance(web.provider, DemoProvider):
        _demo_checkout(router, web.provider, apply)
    return router


def _demo_checkout(router: APIRouter, demo: DemoProvider, apply: Any) -> None:
    @router.get("/pay/demo/cards", response_class=HTMLResponse, include_in_schema=False)
    async def demo_cards(return_to: str = "/") -> str:
        back = html.escape(local_path(return_to))
        return _page(
            "Cards (demo)",
            f"<p>The demo keeps no cards: every demo payment succeeds.</p>"
            f'<p><a href="{back}">Back</a></p>',
        )

    @router.get("/pay/demo/{intent_id}", response_class=HTMLResponse, include_in_schema=False)
    async def demo_checkout(
        request: Request, intent_id: str, who: Anyone, return_to: str = "/"
    ) -> str:
        """A driver's own top-up, or a guest's card hold (open to whoever has its link)."""
        try:
            intent = await demo.checkout(who.user_id if who else "", intent_id)
        except DemoPaymentError as exc:
            raise HTTPException(404, str(exc)) from None
        amount = f"{intent.amount_cents / 100:.2f} {intent.currency.upper()}"
        back = html.escape(quote(local_path(return_to)))
        hold = intent.purpose == GUEST_HOLD
        title, what = (
            ("Pay by card (demo)", "Hold at most") if hold else ("Top up (demo)", "Top up")
        )
        return _page(
            title,
            f"<p>{what} <strong>{amount}</strong>.</p>"
            f'<form method="post" action="?return_to={back}">{csrf_input(request)}'
            f'<button type="submit">Pay {amount} (demo — no money moves)</button></form>',
        )

    @router.post("/pay/demo/{intent_id}", include_in_schema=False)
    async def demo_pay(intent_id: str, who: Anyone, return_to: str = "/") -> RedirectResponse:
        try:
            event = await demo.pay(who.user_id if who else "", intent_id)
        except DemoPaymentError as exc:
            raise HTTPException(404, str(exc)) from None
        await apply(event)
        back = local_path(return_to)
        if event["data"]["object"]["metadata"].get("purpose") == GUEST_HOLD:
            back += ("&" if "?" in back else "?") + f"guest={quote(intent_id)}"
        return RedirectResponse(back, status_code=303)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body>"
        '<p role="note"><strong>demo — no money moves</strong></p>'
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
