from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from evplug.demo import DEMO_DRIVER, System
from evplug.web.app import create_app
from tests.conftest import until


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://evplug.test")


@asynccontextmanager
async def web_client(system: System) -> AsyncIterator[httpx.AsyncClient]:
    """The web app of a running system, started, once its live view has every plug."""
    # The bus runs on the demo's sped-up clock: a request may take 5 s of real time.
    app = create_app(system.bus, system.repo, DEMO_DRIVER, 5.0 * system.clock.factor)
    async with app.router.lifespan_context(app), client_for(app) as client:

        async def every_plug_listed() -> bool:
            listed = (await client.get("/api/plugs")).json()
            return len(listed) == len(system.mothership.plugs)

        await until(every_plug_listed)
        yield client
