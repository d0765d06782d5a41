"""Live updates over SSE, through a real HTTP server: a driver's open plug stream sees the plug
change as it happens, and the stream starts with the plug as it is (so a reconnect misses
nothing)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from evplug.bus.broker import free_port
from tests.web.conftest import credit, every_plug_live, make_web_app, sign_in
from tests.web.served import serve

pytestmark = pytest.mark.integration


async def test_a_plug_change_reaches_its_drivers_open_event_stream(demo_system) -> None:
    system = await demo_system()
    await system.start()
    plug_id = system.simulated[0].info.plug_id(0)
    app = make_web_app(system)
    async with (
        serve(app, free_port()) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        await every_plug_live(app, system)
        client.headers["x-csrf-token"] = (await client.get("/")).cookies["evplug_csrf"]
        await credit(system, await sign_in(client, "ana@example.com"), 2_000)
        seen: list[dict[str, object]] = []
        async with client.stream("GET", f"/api/v1/plugs/{plug_id}/events") as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            async with asyncio.timeout(20):
                async for line in events.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    seen.append(json.loads(line.removeprefix("data:")))
                    if len(seen) == 1:  # the plug as it is, at once
                        assert seen[0]["words"] == "Available"
                        enabled = await client.post(
                            f"/api/v1/plugs/{plug_id}/prompts", json={"prompt": "Enable Socket"}
                        )
                        assert enabled.status_code == 200, enabled.text
                    elif seen[-1]["words"] == "Charging" and seen[-1]["power_w"] > 1000:
                        break
        assert all(view["plug_id"] == plug_id for view in seen)
        assert seen[-1]["mine"] and seen[-1]["prompts"] == ["Disable Socket"]
