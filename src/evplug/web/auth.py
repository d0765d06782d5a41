"""Who is asking: server-side sessions behind a cookie, and the dependencies every route uses
to state who may use it.

A route names what it needs and nothing else::

    @router.get("/api/v1/me")
    async def me(user_id: CurrentUserId) -> ...             # any signed-in account

    @router.post("/api/v1/sites/{site_id}/commission")
    async def commission(who: Annotated[Principal, Depends(require_role(Role.TECHNICIAN))]): ...

Without a live session an API request (path under ``/api/``) gets 401 JSON; a page request is
sent to ``/signin?next=<path>`` and comes back there once signed in. The session cookie holds a
random token; the store keeps only its SHA-256, so sessions are listed ("signed-in devices") and
revoked on the server, and a stolen database signs nobody in.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import RedirectResponse

from evplug.clock import Clock
from evplug.store.accounts import Accounts
from evplug.store.records import AccountRecord

SESSION_COOKIE = "evplug_session"


class Role(StrEnum):
    """What an account may do. Every account has one from the start; routes ask for them."""

    DRIVER = "driver"
    TECHNICIAN = "technician"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in account behind a request."""

    user_id: str
    role: Role
    email_verified: bool
    session_id: str = ""  # the signed-in device, so its owner can tell "this device" apart


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How sessions and their cookies behave.

    ``secure_cookies`` None marks cookies Secure exactly when the request came over https
    (behind a proxy: run uvicorn with ``--proxy-headers``).
    """

    secure_cookies: bool | None = None
    idle_s: float = 30 * 24 * 3600
    # A session's last-seen time is written at most this often, not on every request.
    touch_every_s: float = 60.0


class Authenticator:
    """The sessions of one app: opened on sign-in, looked up on each request, closed on sign-out.

    ``install_auth`` puts it on ``app.state.auth``; the dependencies below find it there.
    """

    def __init__(self, accounts: Accounts, clock: Clock, policy: SessionPolicy) -> None:
        self.accounts = accounts
        self.clock = clock
        self.policy = policy

    def secure(self, request: Request) -> bool:
        if self.policy.secure_cookies is not None:
            return self.policy.secure_cookies
        return request.url.scheme == "https"

    async def principal(self, request: Request) -> Principal | None:
        """The request's principal, resolved once per request; None when nobody is signed in."""
        if hasattr(request.state, "principal"):
            return request.state.principal
        found: Principal | None = None
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            live = await self.accounts.live_session(
                hash_token(token),
                self.clock.now_ms(),
                round(self.policy.idle_s * 1000),
                round(self.policy.touch_every_s * 1000),
            )
            if live is not None:
                device, account = live
                found = principal_of(account, device.id)
        request.state.principal = found
        return found

    async def start_session(
        self, request: Request, response: Response, user_id: str, user_agent: str | None = None
    ) -> Principal:
        """Sign ``user_id`` in on this device: a new server-side session and its cookie.

        A session this device had is closed: one browser is one signed-in device.
        """
        previous = await self.principal(request)
        if previous is not None:
            await self.accounts.revoke(previous.user_id, previous.session_id)
        token = secrets.token_urlsafe(32)
        session_id = uuid.uuid4().hex
        agent = request.headers.get("user-agent", "") if user_agent is None else user_agent
        await self.accounts.open_session(
            session_id, hash_token(token), user_id, agent, self.clock.now_ms()
        )
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=round(self.policy.idle_s),
            path="/",
            secure=self.secure(request),
            httponly=True,
            samesite="lax",
        )
        account = await self.accounts.get(user_id)
        request.state.principal = principal_of(account, session_id)
        return request.state.principal

    async def end_session(self, request: Request, response: Response) -> None:
        """Sign this device out (its session revoked on the server) and drop the cookie."""
        principal = await self.principal(request)
        if principal is not None:
            await self.accounts.revoke(principal.user_id, principal.session_id)
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=self.secure(request), httponly=True, samesite="lax"
        )
        request.state.principal = None


def hash_token(token: str) -> str:
    """What the store keeps of a session or one-time token: enough to find it, not to use it."""
    return hashlib.sha256(token.encode()).hexdigest()


def principal_of(account: AccountRecord, session_id: str) -> Principal:
    return Principal(account.id, Role(account.role), account.email_verified, session_id)


class SignInRequired(Exception):
    """A page needs a signed-in account: the handler sends the browser to sign in."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def install_auth(app: FastAPI, authenticator: Authenticator) -> None:
    app.state.auth = authenticator

    @app.exception_handler(SignInRequired)
    async def _to_sign_in(_: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(sign_in_url(exc.next_path), status_code=303)


def sign_in_url(next_path: str) -> str:
    return f"/signin?next={quote(next_path, safe='/')}"


def authenticator(request: Request) -> Authenticator:
    return request.app.state.auth


def is_api(request: Request) -> bool:
    """A program's request (the JSON API, a provider's webhook): answered in JSON, not pages."""
    return request.url.path.startswith(("/api/", "/webhooks/"))


async def optional_principal(request: Request) -> Principal | None:
    """For pages that show more to a signed-in account but are open to everyone."""
    return await authenticator(request).principal(request)


async def current_principal(request: Request) -> Principal:
    """The signed-in account; 401 for the API, a trip through the sign-in page for a page."""
    principal = await authenticator(request).principal(request)
    if principal is not None:
        return principal
    if is_api(request):
        raise HTTPException(
            401,
            "not signed in: sign in (POST /api/v1/auth/signin) and send the session cookie",
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise SignInRequired(target)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
# Open to everyone, a visitor without an account included (a guest paying by card).
Anyone = Annotated[Principal | None, Depends(optional_principal)]


async def current_user_id(principal: CurrentPrincipal) -> str:
    """The signed-in account's user id (what the ledger, sessions and payments key on)."""
    return principal.user_id


CurrentUserId = Annotated[str, Depends(current_user_id)]


def require_role(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency letting in only accounts with one of ``roles`` (403 for the others)."""
    if not roles:
        raise ValueError("require_role needs at least one role, e.g. require_role(Role.OPERATOR)")
    allowed = frozenset(roles)

    async def allowed_principal(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            names = " or ".join(sorted(allowed))
            raise HTTPException(403, f"this needs a {names} account; yours is a {principal.role}")
        return principal

    return allowed_principal


async def start_session(
    request: Request, response: Response, user_id: str, user_agent: str | None = None
) -> Principal:
    """Sign ``user_id`` in on this device (see ``Authenticator.start_session``)."""
    return await authenticator(request).start_session(request, response, user_id, user_agent)
