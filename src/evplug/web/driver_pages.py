"""The driver's pages: home, a plug (what its QR code opens), finding a plug, sessions, money.

Server-rendered with the shared layout; each works without script (forms post back and the
server redirects), and ``/static/plug.js`` keeps a plug page live over server-sent events.
A refusal is shown on the page it came from, in words, with the status it deserves.
"""

from __future__ import annotations

import json
import re
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from evplug.core.plug import Prompt
from evplug.web.auth import Anyone, CurrentUserId, optional_principal, sign_in_url
from evplug.web.driver_api import MONEY_PAGE, Ops
from evplug.web.driver_ops import DriverError, dollars_to_cents
from evplug.web.pages import render

MANIFEST = {
    "name": "evplug — charge your car",
    "short_name": "evplug",
    "description": "Scan a socket's code, charge, watch and pay.",
    "start_url": "/",
    "scope": "/",
    "display": "standalone",
    "background_color": "#f6f8fa",
    "theme_color": "#0b6e4f",
    "icons": [
        {"src": "/static/icon.svg", "sizes": "any", "type": "image/svg+xml", "purpose": "any"},
        {"src": "/static/icon-192.png", "sizes": "192x192", "type": "image/png"},
        {"src": "/static/icon-512.png", "sizes": "512x512", "type": "image/png"},
    ],
}


GUEST_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+")


def plug_path(plug_id: str) -> str:
    return f"/plug/{quote(plug_id, safe=':')}"


def create_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/manifest.webmanifest")
    async def manifest() -> Response:
        return Response(json.dumps(MANIFEST), media_type="application/manifest+json")

    @router.get("/", response_class=HTMLResponse)
    async def home(request: Request, ops: Ops) -> Response:
        principal = await optional_principal(request)
        if principal is None:
            return await render(request, "welcome.html")
        return await render(request, "home.html", {"home": await ops.home(principal.user_id)})

    @router.get("/plugs", response_class=HTMLResponse)
    async def find_plug(
        request: Request,
        ops: Ops,
        _: CurrentUserId,
        code: Annotated[str | None, Query(max_length=300)] = None,
    ) -> Response:
        if code:
            try:
                return RedirectResponse(plug_path(ops.find_plug(code)), status_code=303)
            except DriverError as exc:
                return await render(
                    request, "find_plug.html", {"error": exc.message, "code": code}, exc.status
                )
        return await render(request, "find_plug.html", {"code": ""})

    @router.get("/plugs/{plug_id}")
    async def old_plug_url(plug_id: str) -> Response:
        # Codes printed before the app had its own plug page point here.
        return RedirectResponse(plug_path(plug_id), status_code=301)

    @router.get("/plug/{plug_id}", response_class=HTMLResponse)
    async def plug(
        request: Request,
        plug_id: str,
        ops: Ops,
        who: Anyone,
        guest: Annotated[str, Query(max_length=100)] = "",
    ) -> Response:
        """A driver's plug page; a visitor sees it without controls, offered sign-in or "Pay by
        card", and, back from paying (``guest``: the card hold's id), follows the session."""
        try:
            if who is None:
                view = await ops.visitor_plug(plug_id, guest)
                context = {"plug": view, "guest": guest, "next": sign_in_url(plug_path(plug_id))}
                return await render(request, "plug_visitor.html", context)
            view = await ops.plug(who.user_id, plug_id)
        except DriverError as exc:
            return await render(request, "problem.html", {"error": exc.message}, exc.status)
        return await render(request, "plug.html", {"plug": view})

    @router.post("/plug/{plug_id}/pay-by-card", response_class=HTMLResponse)
    async def pay_by_card(
        request: Request,
        plug_id: str,
        ops: Ops,
        _: Anyone,
        amount: Annotated[str, Form(max_length=20)],
        email: Annotated[str, Form(max_length=320)] = "",
    ) -> Response:
        try:
            email = email.strip()
            if email and not GUEST_EMAIL.fullmatch(email):
                raise DriverError(422, f"{email[:80]!r} is not an email address: leave it empty")
            redirect = await ops.guest_hold(plug_id, dollars_to_cents(amount), email)
        except DriverError as exc:
            try:
                view = await ops.visitor_plug(plug_id)
            except DriverError:
                return await render(request, "problem.html", {"error": exc.message}, exc.status)
            context = {
                "plug": view,
                "guest": "",
                "next": sign_in_url(plug_path(plug_id)),
                "error": exc.message,
            }
            return await render(request, "plug_visitor.html", context, exc.status)
        return RedirectResponse(redirect.url, status_code=303)

    @router.post("/plug/{plug_id}", response_class=HTMLResponse)
    async def choose(
        request: Request,
        plug_id: str,
        ops: Ops,
        user_id: CurrentUserId,
        prompt: Annotated[str, Form(max_length=40)],
    ) -> Response:
        try:
            chosen = Prompt(prompt)
        except ValueError:
            chosen = None
        try:
            if chosen is None:
                raise DriverError(422, f"{prompt!r} is not a choice this page offers")
            await ops.choose(user_id, plug_id, chosen)
        except DriverError as exc:
            try:
                view = await ops.plug(user_id, plug_id)
            except DriverError:
                return await render(request, "problem.html", {"error": exc.message}, exc.status)
            return await render(
                request, "plug.html", {"plug": view, "error": exc.message}, exc.status
            )
        return RedirectResponse(plug_path(plug_id), status_code=303)

    @router.get("/sessions", response_class=HTMLResponse)
    async def sessions(
        request: Request,
        ops: Ops,
        user_id: CurrentUserId,
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    ) -> Response:
        rows, more = await ops.sessions(user_id, page)
        return await render(
            request, "sessions.html", {"sessions": rows, "page": page, "more": more}
        )

    @router.get("/sessions/{session_id}", response_class=HTMLResponse)
    async def session(
        request: Request, session_id: str, ops: Ops, user_id: CurrentUserId
    ) -> Response:
        try:
            row, chart = await ops.session(user_id, session_id)
        except DriverError as exc:
            return await render(request, "problem.html", {"error": exc.message}, exc.status)
        return await render(request, "session.html", {"session": row, "chart": chart})

    @router.get("/money", response_class=HTMLResponse)
    async def money(request: Request, ops: Ops, user_id: CurrentUserId) -> Response:
        return await render(request, "money.html", {"money": await ops.money(user_id)})

    @router.post("/money/top-up", response_class=HTMLResponse)
    async def top_up(
        request: Request,
        ops: Ops,
        user_id: CurrentUserId,
        amount: Annotated[str, Form(max_length=20)],
    ) -> Response:
        try:
            redirect = await ops.top_up(user_id, dollars_to_cents(amount), MONEY_PAGE)
        except DriverError as exc:
            context = {"money": await ops.money(user_id), "error": exc.message}
            return await render(request, "money.html", context, exc.status)
        return RedirectResponse(redirect.url, status_code=303)

    @router.post("/money/auto-top-up", response_class=HTMLResponse)
    async def auto_top_up(
        request: Request,
        ops: Ops,
        user_id: CurrentUserId,
        threshold: Annotated[str, Form(max_length=20)],
        amount: Annotated[str, Form(max_length=20)],
        on: Annotated[str, Form(max_length=5)] = "",
    ) -> Response:
        try:
            await ops.set_auto_top_up(
                user_id, on == "on", dollars_to_cents(threshold), dollars_to_cents(amount)
            )
        except DriverError as exc:
            context = {"money": await ops.money(user_id), "error": exc.message}
            return await render(request, "money.html", context, exc.status)
        return RedirectResponse(MONEY_PAGE, status_code=303)

    @router.post("/money/payment-methods", response_class=HTMLResponse)
    async def payment_methods(request: Request, ops: Ops, user_id: CurrentUserId) -> Response:
        try:
            redirect = await ops.manage_payment_methods(user_id, MONEY_PAGE)
        except DriverError as exc:
            context = {"money": await ops.money(user_id), "error": exc.message}
            return await render(request, "money.html", context, exc.status)
        return RedirectResponse(redirect.url, status_code=303)

    return router
