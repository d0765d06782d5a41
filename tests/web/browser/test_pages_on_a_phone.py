"""Every main page at 360x740: nothing wider than the screen, one heading to start from, every
control named for a screen reader, and the page's weight (before images) under 100 KB."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import BrowserContext

from tests.web.browser.test_driver_flow import sign_up
from tests.web.conftest import credit

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# What the page's own script finds wrong with it, as sentences.
PROBLEMS = """() => {
  const problems = [];
  if (document.documentElement.scrollWidth > window.innerWidth)
    problems.push(`wider than the screen: ${document.documentElement.scrollWidth}px`);
  if (document.querySelectorAll("h1").length !== 1) problems.push("not exactly one h1");
  if (!document.documentElement.lang) problems.push("no lang on html");
  for (const el of document.querySelectorAll("input, select, textarea, button, a[href]")) {
    if (el.type === "hidden" || el.closest("[hidden]")) continue;
    const named = (el.labels && el.labels.length) || el.getAttribute("aria-label")
      || el.getAttribute("aria-labelledby") || el.textContent.trim();
    if (!named) problems.push(`unnamed ${el.outerHTML.slice(0, 80)}`);
  }
  const bytes = performance.getEntriesByType("navigation").concat(
      performance.getEntriesByType("resource").filter((r) => r.initiatorType !== "img"))
    .reduce((sum, r) => sum + (r.decodedBodySize || 0), 0);
  if (bytes > 100 * 1024) problems.push(`${bytes} bytes before images`);
  return problems;
}"""


async def test_the_main_pages_fit_a_phone_and_name_their_controls(
    served, phone: Callable[[str], Awaitable[BrowserContext]]
) -> None:
    site = await served()
    plug_id = site.system.simulated[0].info.plug_id(0)
    context = await phone(site.url)
    page = await context.new_page()
    for path in ("/", "/signin", "/signup"):
        await page.goto(path)
        assert await page.evaluate(PROBLEMS) == [], path
    await credit(site.system, await sign_up(page, site, "ana@example.com"), 2_000)
    for path in ("/", "/plugs", f"/plug/{plug_id}", "/sessions", "/money"):
        await page.goto(path)
        await page.wait_for_load_state("networkidle")
        assert await page.evaluate(PROBLEMS) == [], path
