"""The Shelly Gen2+ emulator over WebSocket, with Home Assistant's own client (aioshelly) as the
judge: frames, in-frame digest auth and notifications as a real device sends them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aioshelly.common import ConnectionOptions
from aioshelly.exceptions import InvalidAuthError, RpcCallError
from aioshelly.rpc_device import RpcDevice, RpcUpdateType

from evplug.devices.emulators import RunningEmulator
from tests.devices.conftest import StartEmulator

pytestmark = pytest.mark.integration


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def connect(
    session: aiohttp.ClientSession, emulator: RunningEmulator, password: str | None = None
) -> RpcDevice:
    # No WsServer and no COAP: a Gen2 device over a client WebSocket needs neither.
    options = ConnectionOptions(
        emulator.host,
        username="admin" if password else None,
        password=password,
        port=emulator.port,
    )
    device = await RpcDevice.create(session, None, options)
    await device.initialize()
    return device


@pytest.mark.parametrize("password", [None, "s3cret"])
async def test_aioshelly_reads_switches_and_is_told_of_a_switch(
    emulator: StartEmulator, session: aiohttp.ClientSession, password: str | None
) -> None:
    running = await emulator("shelly-pro4pm", password=password)
    device = await connect(session, running, password)
    updates: asyncio.Queue[RpcUpdateType] = asyncio.Queue()
    device.subscribe_updates(lambda _, kind: updates.put_nowait(kind))
    try:
        assert device.initialized and device.requires_auth is (password is not None)
        assert device.hostname == f"shellypro4pm-{running.hardware_id}"
        assert [device.status[f"switch:{i}"]["output"] for i in range(4)] == [False] * 4
        assert set(device.config) >= {f"switch:{i}" for i in range(4)}

        await device.switch_set(2, True)
        assert running.sockets[2].relay_on
        while await asyncio.wait_for(updates.get(), 2) is not RpcUpdateType.STATUS:
            pass
        assert device.status["switch:2"]["output"] is True
        assert device.status["switch:2"]["source"] == "WS_in"
        assert [device.status[f"switch:{i}"]["output"] for i in (0, 1, 3)] == [False] * 3
    finally:
        await device.shutdown()


async def test_a_wrong_password_is_aioshellys_invalid_auth(
    emulator: StartEmulator, session: aiohttp.ClientSession
) -> None:
    running = await emulator("shelly-pro4pm", password="s3cret")
    with pytest.raises(InvalidAuthError):
        await connect(session, running, "wrong")
    with pytest.raises(InvalidAuthError):
        await connect(session, running)  # no password at all


async def test_errors_come_as_frames_aioshelly_understands(
    emulator: StartEmulator, session: aiohttp.ClientSession
) -> None:
    device = await connect(session, await emulator("shelly-pro4pm"))
    try:
        with pytest.raises(RpcCallError) as bad_id:
            await device.call_rpc("Switch.GetStatus", {"id": 9})
        assert (bad_id.value.code, bad_id.value.message) == (
            -105,
            "Argument 'id', value 9 not found!",
        )
        with pytest.raises(RpcCallError) as unknown:
            await device.call_rpc("Script.GetCode", {"id": 1})
        assert unknown.value.code == 404
    finally:
        await device.shutdown()


async def frames(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    return [json.loads(await asyncio.wait_for(ws.receive_str(), 2)) for _ in range(count)]


async def switched(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next notification of a relay's output, past any of the meter alone."""
    while True:
        [notification] = await frames(ws, 1)
        if any(
            "output" in change
            for change in notification["params"].values()
            if isinstance(change, dict)
        ):
            return notification


async def test_notifications_start_after_the_first_frame_and_carry_only_changed_keys(
    emulator: StartEmulator, session: aiohttp.ClientSession
) -> None:
    running = await emulator("shelly-pro4pm")
    running.device.unplug(1)  # no car: the meter stays still
    async with session.ws_connect(f"{running.url}/rpc") as ws:
        running.device.press_button(1)  # nobody to tell yet: no frame sent so far
        await ws.send_json({"id": 1, "src": "tester", "method": "Sys.GetStatus"})
        [reply] = await frames(ws, 1)
        assert (reply["id"], reply["dst"], reply["src"]) == (1, "tester", running.device.device_id)
        assert "uptime" in reply["result"]

        running.device.trip_overpower(1)
        notification = await switched(ws)
        assert "id" not in notification
        assert (notification["method"], notification["dst"]) == ("NotifyStatus", "tester")
        params = notification["params"]
        assert isinstance(params["ts"], float)
        assert set(params) == {"ts", "switch:1"}
        assert params["switch:1"]["output"] is False
        assert params["switch:1"]["errors"] == ["overpower"]
        assert "source" not in params["switch:1"]  # unchanged keys are left out

        running.device.press_button(1)  # switching on again clears the trip
        notification = await switched(ws)
        change = notification["params"]["switch:1"]
        assert (change["id"], change["output"]) == (1, True)
        assert "source" not in change  # still "button", from the first press
        assert change["errors"] is None  # a key that went away is sent as null
