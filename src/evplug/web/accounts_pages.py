"""The account pages: /signin, /signup, /verify, /forgot, /reset, /account.

Plain HTML forms posting back to the same paths (no script needed); each calls the same
service as the JSON API. A link from a mail opens a page with one button, so a mail scanner
that fetches links does not use them up.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from evplug.web.accounts import AccountError, TooManyAttempts, safe_next
from evplug.web.accounts_web import AccountsWeb, accounts_web, client_ip
from evplug.web.auth import CurrentPrincipal, authenticator, start_session
from evplug.web.oidc import CALLBACK_PATH as OIDC_CALLBACK
from evplug.web.oidc import OidcFailed
from evplug.web.pages import render

router = APIRouter(include_in_schema=False)
Web = Annotated[AccountsWeb, Depends(accounts_web)]
Field = Annotated[str, Form(max_length=1024)]
OptionalField = Annotated[str, Form(max_length=2000)]

SENT = "Check your email: if the address can be used, a message with a link is on its way."
BAD_LINK = "This link is expired, used or wrong: ask for a new one below."


async def _page(
    request: Request, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    oidc = accounts_web(request).oidc
    context.setdefault("oidc_name", oidc.config.name if oidc else None)
    return await render(request, template, context, status_code)


async def _signed_in_to(request: Request, user_id: str, next_path: str | None) -> RedirectResponse:
    response = RedirectResponse(safe_next(next_path), status_code=303)
    await start_session(request, response, user_id)
    return response


def _too_many(exc: TooManyAttempts) -> str:
    return f"Too many attempts: wait {exc.retry_after_s:.0f} seconds and try again."


# -- sign in ---------------------------------------------------------------------------------


@router.get("/signin", response_class=HTMLResponse)
async def sign_in_page(request: Request, web: Web, next: str = "/") -> Response:
    return await _page(request, "signin.html", next=safe_next(next), demo=web.demo)


@router.post("/signin", response_class=HTMLResponse)
async def sign_in(
    request: Request, web: Web, email: Field, password: Field, next: OptionalField = "/"
) -> Response:
    try:
        user_id = await web.service.sign_in(email, password, client_ip(request))
    except TooManyAttempts as exc:
        return await _page(
            request,
            "signin.html",
            429,
            next=safe_next(next),
            demo=web.demo,
            email=email,
            error=_too_many(exc),
        )
    if user_id is None:
        return await _page(
            request,
            "signin.html",
            401,
            next=safe_next(next),
            demo=web.demo,
            email=email,
            error="Wrong email or password. Try again, or sign in by email link below.",
        )
    return await _signed_in_to(request, user_id, next)


@router.post("/signin/email", response_class=HTMLResponse)
async def send_sign_in_link(
    request: Request, web: Web, bg: BackgroundTasks, email: Field, next: OptionalField = "/"
) -> Response:
    status, context = 200, {"notice": SENT}
    try:
        mail = await web.service.send_sign_in_link(email, client_ip(request), next)
        context["demo_link"] = web.deliver(bg, mail)
    except AccountError as exc:
        status, context = 422, {"error": str(exc)}
    except TooManyAttempts as exc:
        status, context = 429, {"error": _too_many(exc)}
    return await _page(
        request, "signin.html", status, next=safe_next(next), demo=web.demo, email=email, **context
    )


@router.get("/signin/link", response_class=HTMLResponse)
async def sign_in_link_page(request: Request, token: str = "", next: str = "/") -> Response:
    return await _page(
        request,
        "confirm.html",
        title="Sign in",
        action="/signin/link",
        token=token,
        next=safe_next(next),
        button="Sign in",
    )


@router.post("/signin/link", response_class=HTMLResponse)
async def sign_in_by_link(
    request: Request, web: Web, token: Field, next: OptionalField = "/"
) -> Response:
    user_id = await web.service.sign_in_by_link(token)
    if user_id is None:
        return await _page(request, "signin.html", 400, next="/", demo=web.demo, error=BAD_LINK)
    return await _signed_in_to(request, user_id, next)


@router.get("/signin/oidc")
async def sign_in_with_oidc(request: Request, web: Web, next: str = "/") -> Response:
    if web.oidc is None:
        return await _page(
            request,
            "signin.html",
            404,
            next=safe_next(next),
            demo=web.demo,
            error="Sign-in with another account is not set up here: use your email.",
        )
    try:
        return RedirectResponse(await web.oidc.start(next), status_code=303)
    except OidcFailed as exc:
        return await _page(
            request, "signin.html", 502, next=safe_next(next), demo=web.demo, error=str(exc)
        )


@router.get(OIDC_CALLBACK)
async def oidc_callback(
    request: Request, web: Web, code: str = "", state: str = "", error: str = ""
) -> Response:
    try:
        if web.oidc is None or error or not code or not state:
            raise OidcFailed("the sign-in was cancelled or did not complete: start it again")
        user_id, next_path = await web.oidc.finish(code, state)
    except OidcFailed as exc:
        return await _page(request, "signin.html", 400, next="/", demo=web.demo, error=str(exc))
    return await _signed_in_to(request, user_id, next_path)


@router.post("/signout")
async def sign_out(request: Request) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    await authenticator(request).end_session(request, response)
    return response


# -- sign up and verify ----------------------------------------------------------------------


@router.get("/signup", response_class=HTMLResponse)
async def sign_up_page(request: Request) -> Response:
    return await _page(request, "signup.html")


@router.post("/signup", response_class=HTMLResponse)
async def sign_up(
    request: Request, web: Web, bg: BackgroundTasks, email: Field, password: Field
) -> Response:
    try:
        mail = await web.service.sign_up(email, password, client_ip(request))
    except AccountError as exc:
        return await _page(request, "signup.html", 422, email=email, error=str(exc))
    except TooManyAttempts as exc:
        return await _page(request, "signup.html", 429, email=email, error=_too_many(exc))
    return await _page(
        request, "sent.html", title="Sign up", notice=SENT, demo_link=web.deliver(bg, mail)
    )


@router.get("/verify", response_class=HTMLResponse)
async def verify_page(request: Request, token: str = "") -> Response:
    return await _page(
        request,
        "confirm.html",
        title="Verify your email",
        action="/verify",
        token=token,
        next="/",
        button="Verify my email",
    )


@router.post("/verify", response_class=HTMLResponse)
async def verify(request: Request, web: Web, token: Field) -> Response:
    user_id = await web.service.verify_email(token)
    if user_id is None:
        return await _page(request, "signin.html", 400, next="/", demo=web.demo, error=BAD_LINK)
    return await _signed_in_to(request, user_id, "/")


# -- forgot and reset ------------------------------------------------------------------------


@router.get("/forgot", response_class=HTMLResponse)
async def forgot_page(request: Request) -> Response:
    return await _page(request, "forgot.html")


@router.post("/forgot", response_class=HTMLResponse)
async def forgot(request: Request, web: Web, bg: BackgroundTasks, email: Field) -> Response:
    try:
        mail = await web.service.request_reset(email, client_ip(request))
    except AccountError as exc:
        return await _page(request, "forgot.html", 422, email=email, error=str(exc))
    except TooManyAttempts as exc:
        return await _page(request, "forgot.html", 429, email=email, error=_too_many(exc))
    return await _page(
        request, "sent.html", title="Reset password", notice=SENT, demo_link=web.deliver(bg, mail)
    )


@router.get("/reset", response_class=HTMLResponse)
async def reset_page(request: Request, token: str = "") -> Response:
    return await _page(request, "reset.html", token=token)


@router.post("/reset", response_class=HTMLResponse)
async def reset(request: Request, web: Web, token: Field, password: Field) -> Response:
    try:
        user_id = await web.service.reset_password(token, password)
    except AccountError as exc:
        return await _page(request, "reset.html", 422, token=token, error=str(exc))
    if user_id is None:
        return await _page(request, "forgot.html", 400, error=BAD_LINK)
    return await _signed_in_to(request, user_id, "/account")


# -- the account -----------------------------------------------------------------------------


async def _account_page(
    request: Request, web: Web, who: CurrentPrincipal, status_code: int = 200, **context: Any
) -> Response:
    account = await web.service.accounts.get(who.user_id)
    devices = await web.service.accounts.devices(who.user_id)
    return await _page(
        request,
        "account.html",
        status_code,
        account=account,
        devices=devices,
        this_device=who.session_id,
        **context,
    )


@router.get("/account", response_class=HTMLResponse)
async def account_page(request: Request, web: Web, who: CurrentPrincipal) -> Response:
    return await _account_page(request, web, who)


@router.post("/account/verify", response_class=HTMLResponse)
async def resend_verification(
    request: Request, web: Web, who: CurrentPrincipal, bg: BackgroundTasks
) -> Response:
    try:
        mail = await web.service.resend_verification(who.user_id, client_ip(request))
    except TooManyAttempts as exc:
        return await _account_page(request, web, who, 429, error=_too_many(exc))
    return await _account_page(request, web, who, notice=SENT, demo_link=web.deliver(bg, mail))


@router.post("/account/password", response_class=HTMLResponse)
async def change_password(
    request: Request,
    web: Web,
    who: CurrentPrincipal,
    new_password: Field,
    current_password: Field = "",
) -> Response:
    try:
        await web.service.change_password(
            who.user_id, current_password, new_password, who.session_id
        )
    except AccountError as exc:
        return await _account_page(request, web, who, 422, error=str(exc))
    return await _account_page(
        request, web, who, notice="Password changed; your other devices are signed out."
    )


@router.post("/account/email", response_class=HTMLResponse)
async def change_email(
    request: Request,
    web: Web,
    who: CurrentPrincipal,
    bg: BackgroundTasks,
    new_email: Field,
    password: Field = "",
) -> Response:
    try:
        mail = await web.service.request_email_change(
            who.user_id, new_email, password, client_ip(request)
        )
    except AccountError as exc:
        return await _account_page(request, web, who, 422, error=str(exc))
    except TooManyAttempts as exc:
        return await _account_page(request, web, who, 429, error=_too_many(exc))
    return await _account_page(
        request,
        web,
        who,
        notice=f"Open the link we sent to {mail.to} to use it from now on.",
        demo_link=web.deliver(bg, mail),
    )


@router.get("/account/email/confirm", response_class=HTMLResponse)
async def confirm_email_page(request: Request, token: str = "") -> Response:
    return await _page(
        request,
        "confirm.html",
        title="Confirm your new email",
        action="/account/email/confirm",
        token=token,
        next="/account",
        button="Use this address",
    )


@router.post("/account/email/confirm", response_class=HTMLResponse)
async def confirm_email(request: Request, web: Web, token: Field) -> Response:
    try:
        user_id = await web.service.confirm_email_change(token)
    except AccountError as exc:
        return await _page(
            request, "sent.html", 409, title="Confirm your new email", error=str(exc)
        )
    if user_id is None:
        return await _page(
            request, "sent.html", 400, title="Confirm your new email", error=BAD_LINK
        )
    return RedirectResponse("/account", status_code=303)


@router.post("/account/devices/{session_id}/revoke")
async def revoke_device(
    session_id: str, request: Request, web: Web, who: CurrentPrincipal
) -> Response:
    await web.service.accounts.revoke(who.user_id, session_id)
    if session_id == who.session_id:  # signed this very device out
        return RedirectResponse("/signin", status_code=303)
    return RedirectResponse("/account#devices", status_code=303)
