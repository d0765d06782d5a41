"""The driver's JSON API under /api/v1: the same operations the pages use, for the signed-in
driver only (``CurrentUserId``), described by the OpenAPI document at /api/openapi.json."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from evplug.core.plug import Prompt
from evplug.payments.provider import GUEST_MIN_HOLD_CENTS, MAX_TOP_UP_CENTS, MIN_TOP_UP_CENTS
from evplug.web.auth import Anyone, CurrentPrincipal, CurrentUserId
from evplug.web.driver_ops import DriverOps

# How long (ms) a browser waits before it reconnects a dropped event stream.
SSE_RETRY_MS = 2_000
# Where a provider's page sends the driver back (providers make a path absolute as they need).
MONEY_PAGE = "/money"


def driver_ops(request: Request) -> DriverOps:
    return request.app.state.driver_ops


Ops = Annotated[DriverOps, Depends(driver_ops)]


class Problem(BaseModel):
    detail: str


class PlugOut(BaseModel):
    plug_id: str
    site_id: str
    site_name: str
    state: str
    words: str = Field(description="the state in plain words, e.g. 'Charging'")
    mine: bool = Field(description="the signed-in driver's session runs on this plug")
    in_use: bool = Field(description="another driver's session runs on it: no controls")
    not_responding: bool
    top_up_needed: bool = Field(description="the balance is too low to start: top up first")
    prompts: list[str] = Field(description="exactly the choices the plug offers this driver")
    power_w: float
    energy_wh: float
    cost_cents: int
    price_cents_per_kwh: int
    currency: str
    elapsed_ms: int
    queue_text: str
    kw: str
    kwh: str
    cost: str
    elapsed: str
    price: str


class PromptChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: Prompt


class FoundPlug(BaseModel):
    plug_id: str
    url: str


class HomeOut(BaseModel):
    balance_cents: int
    balance: str
    low_balance: bool
    email_verified: bool
    plugs: list[PlugOut]


class SessionOut(BaseModel):
    session_id: str
    plug_id: str
    site_name: str
    started: str
    ended: str
    duration: str
    running: bool
    energy_wh: float
    kwh: str
    cost_cents: int | None
    cost: str
    price_cents_per_kwh: int
    price: str
    end_reason: str
    ended_words: str


class SessionsOut(BaseModel):
    sessions: list[SessionOut]
    page: int
    next_page: int | None


class TransactionOut(BaseModel):
    when: str
    kind: str
    amount_cents: int
    amount: str
    memo: str
    receipt_url: str = Field(description="its receipt page; empty for an entry without one")


class AutoTopUpOut(BaseModel):
    on: bool
    threshold_cents: int
    amount_cents: int
    paused_reason: str = Field(description="why auto top-up is paused (empty while it works)")


class AutoTopUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on: bool
    threshold_cents: int = Field(ge=0, le=MAX_TOP_UP_CENTS)
    amount_cents: int = Field(ge=MIN_TOP_UP_CENTS, le=MAX_TOP_UP_CENTS)


class CardOut(BaseModel):
    id: str
    brand: str
    last4: str
    default: bool


class MoneyOut(BaseModel):
    balance_cents: int
    balance: str
    currency: str
    min_top_up_cents: int
    payments: bool
    provider: str = Field(description='the payments provider; "demo" moves no money')
    auto_top_up: AutoTopUpOut
    cards: list[CardOut]
    transactions: list[TransactionOut]


class GuestHoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_cents: int = Field(ge=GUEST_MIN_HOLD_CENTS, le=MAX_TOP_UP_CENTS)
    email: str = Field("", max_length=320, pattern=r"^$|^[^@\s]+@[^@\s]+$")


class GuestHoldOut(BaseModel):
    redirect_url: str = Field(description="the provider's page where the visitor pays")
    follow_url: str = Field(description="the plug's page, to follow the session")


class TopUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_cents: int = Field(ge=MIN_TOP_UP_CENTS, le=MAX_TOP_UP_CENTS)


class RedirectOut(BaseModel):
    redirect_url: str = Field(description="where to send the browser next (the provider's page)")


ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem} for code in (401, 403, 404, 409, 422, 503)
}


def create_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["driver"], responses=ERRORS)

    @router.get("/plugs/lookup")
    async def find_plug(ops: Ops, _: CurrentUserId, code: str = Query(max_length=300)) -> FoundPlug:
        """The plug a label's short code (or a QR code's URL) names."""
        plug_id = ops.find_plug(code)
        return FoundPlug(plug_id=plug_id, url=f"/plug/{plug_id}")

    @router.get("/plugs/{plug_id}")
    async def get_plug(plug_id: str, ops: Ops, user_id: CurrentUserId) -> PlugOut:
        return PlugOut(**(await ops.plug(user_id, plug_id)).as_json())

    @router.post("/plugs/{plug_id}/prompts")
    async def choose(
        plug_id: str, choice: PromptChoice, ops: Ops, user_id: CurrentUserId
    ) -> PlugOut:
        """Choose one of the plug's prompts ("Enable Socket", "Disable Socket", ...)."""
        return PlugOut(**(await ops.choose(user_id, plug_id, choice.prompt)).as_json())

    @router.get("/plugs/{plug_id}/events", response_class=EventSourceResponse)
    async def plug_events(plug_id: str, ops: Ops, user_id: CurrentUserId) -> EventSourceResponse:
        """The plug as this driver sees it, now and at each change (server-sent events)."""
        ops.status(plug_id)  # an unknown plug is a 404, not an empty stream

        async def views() -> AsyncIterator[dict[str, object]]:
            async for view in ops.follow(user_id, plug_id):
                yield {"event": "plug", "data": json.dumps(view.as_json()), "retry": SSE_RETRY_MS}

        return EventSourceResponse(views(), ping=15)

    @router.get("/me")
    async def home(ops: Ops, principal: CurrentPrincipal) -> HomeOut:
        """Balance, warnings, and the plugs this driver is using now."""
        home = await ops.home(principal.user_id)
        return HomeOut(
            balance_cents=home.balance_cents,
            balance=home.balance,
            low_balance=home.low_balance,
            email_verified=principal.email_verified,
            plugs=[PlugOut(**p.as_json()) for p in home.plugs],
        )

    @router.get("/sessions")
    async def sessions(
        ops: Ops, user_id: CurrentUserId, page: int = Query(1, ge=1, le=100_000)
    ) -> SessionsOut:
        """This driver's sessions, newest first, a page at a time."""
        rows, more = await ops.sessions(user_id, page)
        return SessionsOut(
            sessions=[SessionOut.model_validate(r, from_attributes=True) for r in rows],
            page=page,
            next_page=page + 1 if more else None,
        )

    @router.get("/sessions.csv", response_class=Response)
    async def sessions_csv(ops: Ops, user_id: CurrentUserId) -> Response:
        """Every session of this driver as CSV."""
        return Response(
            await ops.sessions_csv(user_id),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="evplug-sessions.csv"'},
        )

    @router.get("/sessions/{session_id}")
    async def session(session_id: str, ops: Ops, user_id: CurrentUserId) -> SessionOut:
        row, _ = await ops.session(user_id, session_id)
        return SessionOut.model_validate(row, from_attributes=True)

    @router.get("/money")
    async def money(ops: Ops, user_id: CurrentUserId) -> MoneyOut:
        found = await ops.money(user_id)
        return MoneyOut(
            balance_cents=found.balance_cents,
            balance=found.balance,
            currency=found.currency,
            min_top_up_cents=found.min_top_up_cents,
            payments=found.payments,
            provider=found.provider,
            auto_top_up=AutoTopUpOut.model_validate(found.auto_top_up, from_attributes=True),
            cards=[CardOut.model_validate(c, from_attributes=True) for c in found.cards],
            transactions=[
                TransactionOut.model_validate(t, from_attributes=True) for t in found.transactions
            ],
        )

    @router.put("/auto-top-up")
    async def set_auto_top_up(body: AutoTopUpIn, ops: Ops, user_id: CurrentUserId) -> AutoTopUpOut:
        """Switch auto top-up on (a paused one resumes) or off; while a session runs, the card
        is charged ``amount_cents`` when the balance falls below ``threshold_cents``."""
        chosen = await ops.set_auto_top_up(
            user_id, body.on, body.threshold_cents, body.amount_cents
        )
        return AutoTopUpOut.model_validate(chosen, from_attributes=True)

    @router.post("/plugs/{plug_id}/guest-holds")
    async def guest_hold(plug_id: str, body: GuestHoldIn, ops: Ops, _: Anyone) -> GuestHoldOut:
        """Pay by card without an account: a hold for the most the visitor will spend; the
        socket starts when the hold succeeds, exactly the cost is taken and the rest released."""
        redirect = await ops.guest_hold(plug_id, body.amount_cents, body.email)
        return GuestHoldOut(redirect_url=redirect.url, follow_url=f"/plug/{plug_id}")

    @router.post("/top-ups")
    async def top_up(
        body: TopUpIn, ops: Ops, request: Request, user_id: CurrentUserId
    ) -> RedirectOut:
        """Start a top-up: the provider's checkout comes back to the money page."""
        redirect = await ops.top_up(user_id, body.amount_cents, MONEY_PAGE)
        return RedirectOut(redirect_url=redirect.url)

    @router.post("/payment-methods/portal")
    async def payment_methods(ops: Ops, request: Request, user_id: CurrentUserId) -> RedirectOut:
        """The provider's page where this driver manages their cards."""
        redirect = await ops.manage_payment_methods(user_id, MONEY_PAGE)
        return RedirectOut(redirect_url=redirect.url)

    return router
