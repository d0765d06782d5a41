"""The accounts JSON API under ``/api/v1/auth``: the operations the account pages use too."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from evplug.web.accounts import AccountError
from evplug.web.accounts_web import AccountsWeb, accounts_web, client_ip
from evplug.web.auth import CurrentPrincipal, authenticator, start_session

router = APIRouter(prefix="/api/v1/auth", tags=["accounts"])
Web = Annotated[AccountsWeb, Depends(accounts_web)]

CHECK_MAIL = "check your email: if the address can be used, a message with a link is on its way"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignUp(_Body):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    name: str = Field("", max_length=200)


class Credentials(_Body):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class EmailOnly(_Body):
    email: str = Field(max_length=320)
    next: str = Field("/", max_length=2000)


class TokenOnly(_Body):
    token: str = Field(max_length=200)


class NewPassword(_Body):
    token: str = Field(max_length=200)
    password: str = Field(max_length=1024)


class PasswordChange(_Body):
    current_password: str = Field("", max_length=1024)
    new_password: str = Field(max_length=1024)


class EmailChange(_Body):
    new_email: str = Field(max_length=320)
    password: str = Field("", max_length=1024)


def _sent(link: str | None) -> dict[str, Any]:
    # demo_link: only where no mail leaves the machine (the embedded default).
    return {"message": CHECK_MAIL} | ({"demo_link": link} if link else {})


async def _me(request: Request) -> dict[str, Any]:
    principal = await authenticator(request).principal(request)
    assert principal is not None
    account = await accounts_web(request).service.accounts.get(principal.user_id)
    return {
        "user_id": account.id,
        "email": account.email,
        "name": account.name,
        "role": account.role,
        "email_verified": account.email_verified,
    }


def _bad_link() -> HTTPException:
    return HTTPException(
        400, "this link is expired, used or wrong: ask for a new one from the sign-in page"
    )


@router.post("/signup", status_code=202)
async def sign_up(body: SignUp, request: Request, web: Web, bg: BackgroundTasks) -> dict[str, Any]:
    """Creates an unverified account and mails a verification link (or, for an address that has
    an account, a sign-in link): the answer is the same either way."""
    mail = await web.service.sign_up(body.email, body.password, client_ip(request), body.name)
    return _sent(web.deliver(bg, mail))


@router.post("/verify")
async def verify(body: TokenOnly, request: Request, response: Response, web: Web) -> dict[str, Any]:
    user_id = await web.service.verify_email(body.token)
    if user_id is None:
        raise _bad_link()
    await start_session(request, response, user_id)
    return await _me(request)


@router.post("/verify/resend", status_code=202)
async def resend_verification(
    who: CurrentPrincipal, request: Request, web: Web, bg: BackgroundTasks
) -> dict[str, Any]:
    mail = await web.service.resend_verification(who.user_id, client_ip(request))
    return _sent(web.deliver(bg, mail))


@router.post("/signin")
async def sign_in(
    body: Credentials, request: Request, response: Response, web: Web
) -> dict[str, Any]:
    user_id = await web.service.sign_in(body.email, body.password, client_ip(request))
    if user_id is None:
        raise HTTPException(401, "wrong email or password: try again, or reset the password")
    await start_session(request, response, user_id)
    return await _me(request)


@router.post("/signin/link", status_code=202)
async def send_sign_in_link(
    body: EmailOnly, request: Request, web: Web, bg: BackgroundTasks
) -> dict[str, Any]:
    mail = await web.service.send_sign_in_link(body.email, client_ip(request), body.next)
    return _sent(web.deliver(bg, mail))


@router.post("/signin/link/confirm")
async def sign_in_by_link(
    body: TokenOnly, request: Request, response: Response, web: Web
) -> dict[str, Any]:
    user_id = await web.service.sign_in_by_link(body.token)
    if user_id is None:
        raise _bad_link()
    await start_session(request, response, user_id)
    return await _me(request)


@router.post("/signout", status_code=204)
async def sign_out(request: Request, response: Response) -> None:
    await authenticator(request).end_session(request, response)


@router.get("/me")
async def me(_: CurrentPrincipal, request: Request) -> dict[str, Any]:
    return await _me(request)


@router.post("/password/forgot", status_code=202)
async def forgot_password(
    body: EmailOnly, request: Request, web: Web, bg: BackgroundTasks
) -> dict[str, Any]:
    mail = await web.service.request_reset(body.email, client_ip(request))
    return _sent(web.deliver(bg, mail))


@router.post("/password/reset")
async def reset_password(
    body: NewPassword, request: Request, response: Response, web: Web
) -> dict[str, Any]:
    """Sets the new password, signs every device out, and signs this one in."""
    user_id = await web.service.reset_password(body.token, body.password)
    if user_id is None:
        raise _bad_link()
    await start_session(request, response, user_id)
    return await _me(request)


@router.post("/password/change", status_code=204)
async def change_password(body: PasswordChange, who: CurrentPrincipal, web: Web) -> None:
    """Other devices are signed out; this one stays signed in."""
    await web.service.change_password(
        who.user_id, body.current_password, body.new_password, who.session_id
    )


@router.post("/email/change", status_code=202)
async def change_email(
    body: EmailChange, who: CurrentPrincipal, request: Request, web: Web, bg: BackgroundTasks
) -> dict[str, Any]:
    """Mails a confirmation link to the new address; the change happens when it is opened."""
    mail = await web.service.request_email_change(
        who.user_id, body.new_email, body.password, client_ip(request)
    )
    return _sent(web.deliver(bg, mail))


@router.post("/email/confirm")
async def confirm_email(body: TokenOnly, request: Request, web: Web) -> dict[str, Any]:
    try:
        user_id = await web.service.confirm_email_change(body.token)
    except AccountError as exc:
        raise HTTPException(409, str(exc)) from None
    if user_id is None:
        raise _bad_link()
    return {"user_id": user_id, "message": "your email address is changed"}


@router.get("/devices")
async def devices(who: CurrentPrincipal, web: Web) -> list[dict[str, Any]]:
    """The signed-in devices (sessions) of this account, most recently seen first."""
    return [
        {
            "id": d.id,
            "user_agent": d.user_agent,
            "created_ms": d.created_ms,
            "last_seen_ms": d.last_seen_ms,
            "this_device": d.id == who.session_id,
        }
        for d in await web.service.accounts.devices(who.user_id)
    ]


@router.delete("/devices/{session_id}", status_code=204)
async def revoke_device(session_id: str, who: CurrentPrincipal, web: Web) -> None:
    if not await web.service.accounts.revoke(who.user_id, session_id):
        raise HTTPException(404, "no such signed-in device: reload the list")
