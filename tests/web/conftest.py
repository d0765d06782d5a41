from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI, HTTPException

from evplug.assembly import credit_driver
from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock
from evplug.demo import STARTING_CREDIT_CENTS, System
from evplug.payments.demo import DemoProvider
from evplug.store.database import create_schema, make_engine, sqlite_url
from evplug.store.repository import Repository
from evplug.web.accounts import AccountPolicy
from evplug.web.accounts_web import AccountsConfig
from evplug.web.app import DriverConfig, create_app
from evplug.web.auth import Principal, Role, current_principal, optional_principal
from evplug.web.csrf import CSRF_COOKIE, CSRF_HEADER
from evplug.web.mail import LogMailer, Mail
from tests.conftest import wait_for

PASSWORD = "correct horse battery"
PUBLIC_URL = "http://evplug.test"
# Cheap argon2 for tests: the cost parameters are not what these tests are about.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


async def _send_csrf(request: httpx.Request, client: httpx.AsyncClient) -> None:
    # What a page's script does: send back the token the server set (or one of its own, as a
    # browser that has not loaded a page yet; it is checked against the cookie either way).
    if request.method in ("GET", "HEAD", "OPTIONS") or CSRF_HEADER in request.headers:
        return
    token = client.cookies.get(CSRF_COOKIE)
    if token is None:
        token = secrets.token_urlsafe(32)
        client.cookies.set(CSRF_COOKIE, token, domain=request.url.host)
        request.headers["cookie"] = f"{CSRF_COOKIE}={token}" + (
            f"; {request.headers['cookie']}" if "cookie" in request.headers else ""
        )
    request.headers[CSRF_HEADER] = token


def client_for(app: Any, base_url: str = PUBLIC_URL, csrf: bool = True) -> httpx.AsyncClient:
    """A client of the app; with ``csrf``, sending the CSRF token as the pages' script does."""
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=base_url, follow_redirects=False
    )
    if csrf:

        async def hook(request: httpx.Request) -> None:
            await _send_csrf(request, client)

        client.event_hooks["request"].append(hook)
    return client


DRIVER_EMAIL = "driver@example.com"
DEMO = "demo"  # make_web_app's default provider, as in the embedded default


def make_web_app(system: System, **config: Any) -> FastAPI:
    """The web app of a running system, as the assembly builds it (the demo provider unless
    ``payments`` names another, a new driver's customer made at sign-up); cheap hashing."""
    payments = config.pop("payments", DEMO)
    if payments == DEMO:
        payments = DemoProvider(system.repo, system.clock)
    if payments is not None:
        config.setdefault("on_sign_up", payments.ensure_customer)
    # The bus runs on the demo's sped-up clock: a request may take 5 s of real time.
    driver = DriverConfig(request_timeout_s=5.0 * system.clock.factor)
    return create_app(system.bus, system.repo, driver, accounts_config(**config), payments)


async def every_plug_live(app: FastAPI, system: System) -> None:
    """Until the app's live view has every plug of the system."""

    def listed() -> bool:
        live = getattr(app.state, "live", None)
        return live is not None and len(live.statuses) == len(system.mothership.plugs)

    await wait_for(listed)


@asynccontextmanager
async def web_client(
    system: System, credit_cents: int = STARTING_CREDIT_CENTS, email: str = DRIVER_EMAIL
) -> AsyncIterator[httpx.AsyncClient]:
    """A driver signed in (through the real endpoints) to the web app of a running system, with
    ``credit_cents`` posted to their balance, once the app's live view has every plug."""
    app = make_web_app(system)
    async with app.router.lifespan_context(app), client_for(app) as client:
        user_id = await sign_in(client, email)
        if credit_cents:
            await credit(system, user_id, credit_cents)
        await every_plug_live(app, system)
        yield client


async def credit(system: System, user_id: str, cents: int) -> None:
    """Money on a driver's balance, posted to the ledger as an operator's adjustment."""
    await credit_driver(
        system.repo, user_id, cents, f"test:{secrets.token_hex(8)}", system.clock.now_ms(), "test"
    )


def accounts_config(**config: Any) -> AccountsConfig:
    """As in the demo: mails logged and their links shown in the answers (``sign_in`` uses
    them); cheap password hashing."""
    config.setdefault("mailer", LogMailer(shows_links=True))
    policy = config.pop("policy", AccountPolicy(PUBLIC_URL, hasher=CHEAP_HASHER))
    return AccountsConfig(policy, **config)


def as_driver(app: FastAPI, user_id: str | None) -> FastAPI:
    """An app without accounts whose requests come from ``user_id`` (None: a visitor), for
    routes tested on their own; the sign-in itself is tested with the accounts."""
    principal = None if user_id is None else Principal(user_id, Role.DRIVER, True)

    async def signed_in() -> Principal:
        if principal is None:
            raise HTTPException(401, "not signed in")
        return principal

    async def anyone() -> Principal | None:
        return principal

    app.dependency_overrides[current_principal] = signed_in
    app.dependency_overrides[optional_principal] = anyone
    return app


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, verified: bool = True
) -> str:
    """Sign ``email`` up and in through the real endpoints; the user id.

    With ``verified``, the address is verified by the link the sign-up mail carries (shown in
    the answer while no SMTP server is configured, as in the demo).
    """
    signed_up = await client.post(
        "/api/v1/auth/signup", json={"email": email, "password": password}
    )
    assert signed_up.status_code == 202, signed_up.text
    if verified:
        link = signed_up.json()["demo_link"]
        answer = await client.post("/api/v1/auth/verify", json={"token": token_of(link)})
    else:
        answer = await client.post(
            "/api/v1/auth/signin", json={"email": email, "password": password}
        )
    assert answer.status_code == 200, answer.text
    return answer.json()["user_id"]


@pytest.fixture
def signed_in() -> Callable[..., Awaitable[str]]:
    """``await signed_in(client, email)``: that address signed up and in on ``client``."""
    return sign_in


@pytest.fixture
async def accounts_repo(tmp_path: Path) -> AsyncIterator[Repository]:
    engine = make_engine(sqlite_url(tmp_path / "accounts.sqlite3"))
    await create_schema(engine)
    yield Repository(engine)
    await engine.dispose()


@pytest.fixture
def web_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_accounts_app(accounts_repo: Repository, web_clock: FakeClock) -> Callable[..., FastAPI]:
    """The web app on a fresh store, its accounts on a fake clock (no mothership running)."""

    def make(**config: Any) -> FastAPI:
        accounts = accounts_config(clock=web_clock, **config)
        return create_app(MemoryBus(web_clock), accounts_repo, accounts=accounts)

    return make


@pytest.fixture
async def accounts_client(
    make_accounts_app: Callable[..., FastAPI],
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_accounts_app()) as client:
        yield client


class RecordingMailer:
    """Keeps what would be mailed, as a mail server would (the answers show no links)."""

    shows_links = False

    def __init__(self) -> None:
        self.sent: list[Mail] = []

    async def send(self, mail: Mail) -> None:
        self.sent.append(mail)


def link_to(mailer: LogMailer | RecordingMailer, email: str) -> str:
    """The link of the last mail to ``email``."""
    return next(m.link for m in reversed(mailer.sent) if m.to == email)
