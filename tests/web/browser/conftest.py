"""Browser tests: Playwright driving the OS's Chromium (never a downloaded browser) against the
whole system served on loopback, with a real SMTP server catching the app's mail."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright

from evplug.assembly import System
from evplug.bus.broker import free_port
from evplug.web.accounts import AccountPolicy
from evplug.web.mail import SmtpConfig, SmtpMailer
from tests.web.conftest import CHEAP_HASHER, every_plug_live, make_web_app
from tests.web.served import Inbox, serve, smtp_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# A phone: the size the pages are designed for first.
PHONE: dict[str, Any] = {
    "viewport": {"width": 360, "height": 740},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


@pytest.fixture
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run `sh tools/install_os_packages.sh` (make test does)",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def phone(browser: Browser) -> Callable[[str], Awaitable[BrowserContext]]:
    """``await phone(base_url)``: a new phone-sized browser profile (its own cookies)."""

    async def make(base_url: str) -> BrowserContext:
        context = await browser.new_context(base_url=base_url, **PHONE)
        context.set_default_timeout(20_000)
        return context

    return make


@dataclass(slots=True)
class Served:
    system: System
    url: str
    inbox: Inbox
    restart: Callable[[], Awaitable[None]]  # the web process stops and starts again


@pytest.fixture
async def served(
    demo_system: Callable[..., Awaitable[System]],
) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """``await served(**demo_options)``: the whole system started and served over HTTP on a
    free loopback port, mailing over SMTP to a real server on loopback."""
    async with AsyncExitStack() as stack:

        async def make(**options: Any) -> Served:
            system = await demo_system(**options)
            await system.start()
            inbox, port = stack.enter_context(smtp_server())
            mailer = SmtpMailer(SmtpConfig("127.0.0.1", port, "evplug@example.com", tls="none"))
            web_port = free_port()
            # The links the app mails point at where it is served.
            policy = AccountPolicy(f"http://127.0.0.1:{web_port}", hasher=CHEAP_HASHER)
            web = AsyncExitStack()

            async def start_web() -> str:
                app = make_web_app(system, mailer=mailer, policy=policy)
                url = await web.enter_async_context(serve(app, web_port))
                await every_plug_live(app, system)
                return url

            async def restart() -> None:
                await web.aclose()
                await start_web()

            stack.push_async_callback(web.aclose)
            return Served(system, await start_web(), inbox, restart)

        yield make
