"""Phone-size screenshots of the driver app's main pages, into docs/screenshots/.

Runs the embedded system (simulated plugs, a temporary data dir) on a free loopback port, signs a
driver up through the API, credits them, charges one car, and photographs each page at 360x740
with the OS's Chromium:

    .venv/bin/python tools/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import uvicorn
from playwright.async_api import Page, async_playwright

from evplug import assembly
from evplug.bus.broker import free_port
from evplug.demo import DEMO_EMAIL, DEMO_PASSWORD, DemoOptions, build
from evplug.settings import Settings
from evplug.web.accounts_web import DemoCredentials

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EMAIL, PASSWORD = "driver@example.com", "correct horse battery"


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - polls the served app over HTTP
            await asyncio.sleep(0.2)
    print(f"  {what}")


async def sign_up(client: httpx.AsyncClient) -> str:
    client.headers["x-csrf-token"] = (await client.get("/")).cookies["evplug_csrf"]
    answer = await client.post("/api/v1/auth/signup", json={"email": EMAIL, "password": PASSWORD})
    token = parse_qs(urlsplit(answer.json()["demo_link"]).query)["token"][0]
    verified = await client.post("/api/v1/auth/verify", json={"token": token})
    return verified.json()["user_id"]


async def shoot(page: Page, path: str, out: Path, name: str) -> None:
    await page.goto(path)
    await page.wait_for_load_state("networkidle")
    await page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    print(f"  {name}.png  {path}")


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data))
        options = DemoOptions(plugs=2, speed=60.0, car_need_wh=30_000.0)
        system = await build(settings, options)
        await system.start()
        port = free_port()
        # As `evplug demo` serves it: mails logged, their links on the page.
        demo = DemoCredentials(DEMO_EMAIL, DEMO_PASSWORD)
        app = assembly.make_web_app(
            settings, system.bus, system.store, None, options.speed, demo=demo
        )
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        serving = asyncio.create_task(server.serve())
        base = f"http://127.0.0.1:{port}"
        try:
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
                await asyncio.sleep(0.05)
            await photograph(system, base, out)
        finally:
            server.should_exit = True
            await serving
            await system.stop()


async def photograph(system: assembly.System, base: str, out: Path) -> None:
    plug_id = min(system.relay.channels)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        visitor = await browser.new_context(
            base_url=base, viewport={"width": 360, "height": 740}, device_scale_factor=2
        )
        await shoot(await visitor.new_page(), "/", out, "welcome")
        await shoot(await visitor.new_page(), "/signin", out, "sign-in")
        user_id = await sign_up(client)
        await assembly.credit_driver(
            system.repo, user_id, 2_500, "screenshots:credit", system.clock.now_ms(), "welcome"
        )
        driver = await browser.new_context(
            base_url=base, viewport={"width": 360, "height": 740}, device_scale_factor=2
        )
        await driver.add_cookies(
            [{"name": c.name, "value": c.value or "", "url": base} for c in client.cookies.jar]
        )
        page = await driver.new_page()
        await shoot(page, f"/plug/{plug_id}", out, "plug-available")

        async def available() -> bool:
            return (await client.get(f"/api/v1/plugs/{plug_id}")).json()["words"] == "Available"

        await until(available, "plug available")
        url = f"/api/v1/plugs/{plug_id}/prompts"
        await client.post(url, json={"prompt": "Enable Socket"})

        async def charging() -> bool:
            plug = (await client.get(f"/api/v1/plugs/{plug_id}")).json()
            return plug["words"] == "Charging" and plug["energy_wh"] > 300

        await until(charging, "charging")
        await shoot(page, f"/plug/{plug_id}", out, "plug-charging")
        await shoot(page, "/", out, "home")
        await shoot(page, "/plugs", out, "find-plug")
        await client.post(url, json={"prompt": "Disable Socket"})

        async def billed() -> bool:
            sessions = (await client.get("/api/v1/sessions")).json()["sessions"]
            return bool(sessions) and not sessions[0]["running"]

        await until(billed, "billed")
        await shoot(page, "/sessions", out, "sessions")
        await page.locator(".sessions li a").first.click()
        await page.wait_for_load_state("networkidle")
        await page.screenshot(path=str(out / "session.png"), full_page=True)
        print("  session.png")
        await shoot(page, "/money", out, "money")
        await browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    target = parser.parse_args().out
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
