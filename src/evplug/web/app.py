"""The web app: the driver's pages and JSON API, accounts, talking to the mothership only over
the bus.

Plug statuses come from the live view (the bus's plug-status store); a driver's choice is a
request on the bus that the mothership answers; balances and history are read from the store.
Who is asking comes from the auth seam (``evplug.web.auth``), never from the request's body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from evplug import metrics
from evplug.bus.base import Bus
from evplug.clock import SystemClock
from evplug.contracts import subjects
from evplug.payments.events import PaymentEvents
from evplug.payments.provider import PaymentsProvider
from evplug.store.repository import Repository
from evplug.web import driver_api, driver_pages
from evplug.web.accounts import AccountError, AccountPolicy, TooManyAttempts
from evplug.web.accounts_web import AccountsConfig, install_accounts
from evplug.web.auth import is_api
from evplug.web.driver_ops import DriverError, DriverOps
from evplug.web.limits import BodyLimit
from evplug.web.live import LiveView
from evplug.web.mail import text_sender
from evplug.web.pages import render
from evplug.web.payments import PaymentsWeb, payments_router
from evplug.web.receipts import receipts_router

log = structlog.get_logger(__name__)

LOCAL_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True, slots=True)
class DriverConfig:
    """What the driver pages need from the settings."""

    request_timeout_s: float = 5.0
    currency: str = "AUD"
    min_start_credit_cents: int = 1


def create_app(
    bus: Bus,
    repo: Repository,
    driver: DriverConfig | None = None,
    accounts: AccountsConfig | None = None,
    payments: PaymentsProvider | None = None,
    webhook_secret: str | None = None,
) -> FastAPI:
    """The app; with ``payments``, its money pages, the provider's pages, the Stripe webhook
    (taken when ``webhook_secret`` is set) and the receipts."""
    config = driver or DriverConfig()
    accounts = accounts or AccountsConfig(AccountPolicy(LOCAL_URL))
    live: LiveView | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal live
        live = LiveView(await bus.key_value(subjects.PLUG_STATUS_BUCKET))
        await live.start()
        app.state.live = live
        try:
            yield
        finally:
            await live.stop()
            await app.state.accounts.service.welcomed()

    def current_live() -> LiveView:
        if live is None:
            raise DriverError(503, "starting up: try again in a moment")
        return live

    app = FastAPI(
        title="evplug",
        summary="Pay-per-use EV charging: the driver's API",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.driver_ops = DriverOps(
        bus,
        repo,
        current_live,
        payments,
        currency=config.currency,
        min_start_credit_cents=config.min_start_credit_cents,
        request_timeout_s=config.request_timeout_s,
    )
    install_accounts(app, repo, accounts)
    app.add_middleware(BodyLimit)  # after: the outermost, so it caps what CSRF reads too
    install_error_pages(app)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    app.include_router(driver_api.create_router())
    app.include_router(driver_pages.create_router())
    if payments is not None:
        clock = SystemClock()
        payments_web = PaymentsWeb(
            payments,
            PaymentEvents(repo, clock),
            bus,
            clock,
            text_sender(accounts.mailer),
            webhook_secret,
        )
        app.include_router(payments_router(payments_web))
        app.include_router(receipts_router(repo, config.currency))
    return app


def install_error_pages(app: FastAPI) -> None:
    """Every error as a sentence: JSON ``{"detail": ...}`` for the API, a page for a person."""

    @app.exception_handler(DriverError)
    async def _refused(request: Request, exc: DriverError) -> Response:
        return await _problem(request, exc.status, exc.message)

    @app.exception_handler(AccountError)
    async def _account_refused(request: Request, exc: AccountError) -> Response:
        return await _problem(request, 422, str(exc))

    @app.exception_handler(TooManyAttempts)
    async def _too_many(request: Request, exc: TooManyAttempts) -> Response:
        wait = f"too many attempts: wait {exc.retry_after_s:.0f} s and try again"
        return await _problem(request, 429, wait, {"Retry-After": str(round(exc.retry_after_s))})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'][1:]) or 'request'}: {e['msg']}"
            for e in exc.errors()
        )
        return await _problem(request, 422, problems or "the request is not valid")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "the request was refused"
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such page: check the address"
        return await _problem(request, exc.status_code, detail, exc.headers)

    @app.exception_handler(Exception)
    async def _crashed(request: Request, exc: Exception) -> Response:
        log.error("web.unhandled", path=request.url.path, error=repr(exc), exc_info=exc)
        return await _problem(
            request, 500, "something went wrong on our side: try again in a moment"
        )


async def _problem(
    request: Request, status: int, detail: str, headers: dict[str, str] | None = None
) -> Response:
    if is_api(request):
        return JSONResponse({"detail": detail}, status, headers=headers)
    page = await render(request, "problem.html", {"error": detail}, status)
    page.headers.update(headers or {})
    return page
