"""Receipt pages: each top-up and each session of the signed-in driver, printable and as PDF."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse, Response

from evplug.core import ledger
from evplug.core.pricing import DEFAULT_CURRENCY
from evplug.payments.receipts import (
    Receipt,
    receipt_html,
    receipt_pdf,
    session_receipt,
    top_up_receipt,
)
from evplug.store.repository import Repository
from evplug.web.auth import current_user_id

Driver = Annotated[str, Depends(current_user_id)]


def receipts_router(repo: Repository, default_currency: str = DEFAULT_CURRENCY) -> APIRouter:
    router = APIRouter()

    async def currency_of_plug(plug_id: str) -> str:
        site_id = await repo.sites.site_of_plug(plug_id)
        site = None if site_id is None else await repo.sites.get_site(site_id)
        return site.currency if site else default_currency

    async def of_session(session_id: str, user_id: str) -> Receipt:
        session = await repo.sessions.get_session(session_id)
        if session is None or session.user_id != user_id:
            raise HTTPException(404, f"no session {session_id!r} of yours")
        return session_receipt(session, await currency_of_plug(session.plug_id))

    async def of_top_up(payment_id: str, user_id: str) -> Receipt:
        entry = await repo.ledger.entry(ledger.top_up_key(payment_id))
        if entry is None or entry.user_id != user_id:
            raise HTTPException(404, f"no top-up {payment_id!r} of yours")
        return top_up_receipt(entry, default_currency)

    @router.get("/receipts/sessions/{session_id}.pdf")
    async def session_pdf(session_id: str, user_id: Driver) -> Response:
        return _pdf(await of_session(session_id, user_id))

    @router.get("/receipts/sessions/{session_id}", response_class=HTMLResponse)
    async def session_page(session_id: str, user_id: Driver) -> str:
        receipt = await of_session(session_id, user_id)
        return receipt_html(receipt, f"/receipts/sessions/{session_id}.pdf")

    @router.get("/receipts/top-ups/{payment_id}.pdf")
    async def top_up_pdf(payment_id: str, user_id: Driver) -> Response:
        return _pdf(await of_top_up(payment_id, user_id))

    @router.get("/receipts/top-ups/{payment_id}", response_class=HTMLResponse)
    async def top_up_page(payment_id: str, user_id: Driver) -> str:
        receipt = await of_top_up(payment_id, user_id)
        return receipt_html(receipt, f"/receipts/top-ups/{payment_id}.pdf")

    return router


def _pdf(receipt: Receipt) -> Response:
    return Response(
        receipt_pdf(receipt),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="receipt-{receipt.number}.pdf"'},
    )
