"""Live updates over SSE, through a real HTTP server: a page sees a plug change as it happens."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
import uvicorn

from evplug.demo import DEMO_DRIVER
from evplug.web.app import create_app
from tests.conftest import until

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_plug_change_reaches_an_open_event_stream(demo_system) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    app = create_app(system.bus, system.repo, DEMO_DRIVER, 5.0 * system.clock.factor)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def listed() -> bool:
                try:
                    return len((await client.get("/api/plugs")).json()) == 2
                except httpx.TransportError:
                    return False  # still starting

            await until(listed)
            states: list[str] = []
            async with client.stream("GET", "/api/events") as events:
                assert events.headers["content-type"].startswith("text/event-stream")
                enabled = await client.post(
                    f"/api/plugs/{plug_id}/prompts",
                    json={"prompt": "Enable Socket"},
                    headers={"x-csrf-token": client.cookies["evplug_csrf"]},
                )
                assert enabled.status_code == 200
                async with asyncio.timeout(20):
                    async for line in events.aiter_lines():
                        if line.startswith("data:"):
                            plug = json.loads(line.removeprefix("data:"))
                            if plug["plug_id"] == plug_id:
                                states.append(plug["state"])
                            if "CHARGING" in states:
                                break
            assert states[-1] == "CHARGING"
    finally:
        server.should_exit = True
        await serving
