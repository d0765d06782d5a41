"""A driver's whole journey in a real browser on a phone-sized screen: sign up, verify by the
mailed link, top up $20 through the money page and the demo provider's checkout, open a socket
by its QR URL, Enable Socket, watch the power rise without a reload, Disable Socket, find the
session billed in the history and its receipt.

The other journeys credit the ledger directly: they are about the socket, not the money.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from playwright.async_api import BrowserContext, Page, expect

from evplug.bus.broker import free_port
from evplug.core.plug import Prompt, State
from evplug.web import words
from tests.conftest import until, wait_for
from tests.web.browser.conftest import Served
from tests.web.conftest import PASSWORD, credit
from tests.web.served import serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Phone = Callable[[str], Awaitable[BrowserContext]]
# A car that takes minutes of demo time to fill: the driver stops it, not the car.
BIG_CAR = {"car_need_wh": 60_000.0}


async def sign_up(page: Page, served: Served, email: str) -> str:
    """Sign up through the pages and verify by the link in the mail; the user id."""
    await page.goto("/signup")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await wait_for(lambda: bool(served.inbox.to(email)))
    [mail] = served.inbox.to(email)
    link = re.search(r"https?://\S+token=[\w-]+", mail.get_payload(decode=True).decode())
    assert link is not None, mail.as_string()
    await page.goto(link.group(0))
    await page.get_by_role("button", name="Verify my email").click()
    await expect(page.get_by_role("heading", name="Home")).to_be_visible()
    account = await served.system.repo.accounts.by_email(email)
    assert account is not None and account.email_verified
    return account.id


async def test_sign_up_charge_stop_and_find_the_session_billed(served, phone: Phone) -> None:
    site = await served(**BIG_CAR)
    plug_id = site.system.simulated[0].info.plug_id(0)
    context = await phone(site.url)
    page = await context.new_page()
    user_id = await sign_up(page, site, "ana@example.com")
    await page.goto("/money")
    await expect(page.locator("#balance")).to_have_text("$0.00")
    await page.get_by_role("button", name="Top up $20.00").click()
    await expect(page.get_by_text("demo — no money moves").first).to_be_visible()
    await page.get_by_role("button", name=re.compile(r"^Pay 20\.00 AUD")).click()
    await expect(page.get_by_role("heading", name="Money")).to_be_visible()
    await expect(page.locator("#balance")).to_have_text("$20.00")
    assert await site.system.repo.ledger.balance(user_id) == 2_000

    await page.goto(f"/plug/{plug_id}")  # what the socket's QR code carries
    await expect(page.locator("#words")).to_have_text("Available")
    await page.get_by_role("button", name="Enable Socket").click()
    await expect(page.get_by_role("button", name="Disable Socket")).to_be_visible()
    await page.evaluate("window.sameDocument = true")  # gone if the page reloads
    await expect(page.locator("#words")).to_have_text("Charging")
    await expect(page.locator("#kw")).not_to_have_text("0.00 kW")
    first_kwh = await page.locator("#kwh").text_content()
    await expect(page.locator("#kwh")).not_to_have_text(first_kwh or "")  # energy goes up
    assert await page.evaluate("window.sameDocument") is True

    await page.get_by_role("button", name="Disable Socket").click()
    await expect(page.get_by_role("button", name="Enable Socket")).to_be_visible()

    async def billed() -> bool:
        [session] = await site.system.repo.sessions.sessions_of_user(user_id)
        return session.cost_cents is not None

    await until(billed)
    [session] = await site.system.repo.sessions.sessions_of_user(user_id)
    assert session.cost_cents is not None
    assert session.energy_wh > 0

    await page.goto("/sessions")
    row = page.locator(".sessions li").first
    await expect(row).to_contain_text(words.kwh(session.energy_wh))
    await expect(row).to_contain_text(words.money(session.cost_cents))
    await page.goto("/money")
    balance = await site.system.repo.ledger.balance(user_id)
    assert balance == 2_000 - session.cost_cents
    await expect(page.locator("#balance")).to_have_text(words.money(balance))
    await row_link_shows_the_chart(page)
    await page.get_by_role("link", name="Receipt").click()
    await expect(page.get_by_text(f"{session.cost_cents / 100:.2f} AUD").first).to_be_visible()


async def row_link_shows_the_chart(page: Page) -> None:
    await page.goto("/sessions")
    await page.locator(".sessions li a").first.click()
    await expect(page.get_by_role("img", name="Power over time (kW)")).to_be_visible()
    await expect(page.get_by_text("Price applied")).to_be_visible()


async def test_a_second_driver_sees_in_use_and_cannot_control(served, phone: Phone) -> None:
    site = await served(**BIG_CAR)
    plug_id = site.system.simulated[0].info.plug_id(0)
    first = await (await phone(site.url)).new_page()
    await credit(site.system, await sign_up(first, site, "first@example.com"), 2_000)
    await first.goto(f"/plug/{plug_id}")
    await first.get_by_role("button", name="Enable Socket").click()
    await expect(first.locator("#words")).to_have_text("Charging")

    second = await (await phone(site.url)).new_page()
    await credit(site.system, await sign_up(second, site, "second@example.com"), 2_000)
    await second.goto(f"/plug/{plug_id}")
    await expect(second.locator("#words")).to_have_text("In use")
    await expect(second.locator("#controls button")).to_have_count(0)
    forced = await second.evaluate(
        """async (url) => {
            const answer = await fetch(url, {method: "POST", headers: {
                "Content-Type": "application/json", "X-CSRF-Token": window.evplug.csrfToken()},
                body: JSON.stringify({prompt: "Disable Socket"})});
            return [answer.status, (await answer.json()).detail];
        }""",
        f"/api/v1/plugs/{plug_id}/prompts",
    )
    assert forced[0] == 403 and "in use by another driver" in forced[1]
    await expect(first.locator("#words")).to_have_text("Charging")  # still going


async def test_a_driver_with_no_money_is_told_to_top_up_and_the_socket_stays_off(
    served, phone: Phone
) -> None:
    site = await served()
    plug_id = site.system.simulated[0].info.plug_id(0)
    page = await (await phone(site.url)).new_page()
    await sign_up(page, site, "broke@example.com")
    await page.goto(f"/plug/{plug_id}")
    await expect(page.locator("#top-up")).to_contain_text("top up first")
    await expect(page.get_by_role("link", name="Top up")).to_be_visible()
    await expect(page.get_by_role("button", name="Enable Socket")).to_have_count(0)
    await page.get_by_role("link", name="Top up").click()
    await expect(page.get_by_role("heading", name="Money")).to_be_visible()
    assert site.system.mothership.plug(plug_id).state is State.ACCOUNT_NULL


async def test_a_forged_cross_site_post_is_refused(served, phone: Phone) -> None:
    site = await served()
    plug_id = site.system.simulated[0].info.plug_id(0)
    context = await phone(site.url)
    page = await context.new_page()
    await credit(site.system, await sign_up(page, site, "victim@example.com"), 2_000)
    # Another site (localhost is not 127.0.0.1 to a browser) with a form aimed at the plug.
    evil = FastAPI()
    target = f"{site.url}/plug/{plug_id}"

    @evil.get("/", response_class=HTMLResponse)
    async def lure() -> str:
        return (
            f'<form id="f" method="post" action="{target}">'
            '<input name="prompt" value="Enable Socket"><input name="csrf_token" value="x">'
            "</form><script>document.getElementById('f').submit()</script>"
        )

    port = free_port()
    async with serve(evil, port):
        answers: list[int] = []
        page.on("response", lambda r: answers.append(r.status) if r.url == target else None)
        await page.goto(f"http://localhost:{port}/")
        await wait_for(lambda: bool(answers))
    assert answers == [403]
    assert site.system.mothership.plug(plug_id).state is State.ACCOUNT_NULL


async def test_the_plug_page_reconnects_after_a_web_restart(served, phone: Phone) -> None:
    site = await served(**BIG_CAR)
    plug_id = site.system.simulated[0].info.plug_id(0)
    context = await phone(site.url)
    page = await context.new_page()
    user_id = await sign_up(page, site, "ana@example.com")
    await credit(site.system, user_id, 2_000)
    await page.goto(f"/plug/{plug_id}")
    await expect(page.locator("#words")).to_have_text("Available")
    await page.evaluate("window.sameDocument = true")
    # The web process restarts, every stream it served dropped; meanwhile the driver starts the
    # socket from another device.
    await site.restart()
    await site.system.mothership.choose(plug_id, Prompt.ENABLE_SOCKET, user_id)
    await expect(page.locator("#words")).to_have_text("Charging")
    await expect(page.locator("#live")).to_have_text("")
    assert await page.evaluate("window.sameDocument") is True
