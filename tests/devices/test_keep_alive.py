"""HTTP drivers keep one connection per device between polls where the device allows it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from evplug.devices.http_driver import DeviceHttp
from evplug.devices.registry import create_driver
from tests.devices.conftest import StartEmulator

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("model", "driver", "connections"),
    [
        ("tasmota-4ch", "tasmota", 1),  # keep-alive allowed: one connection for every poll
        ("shelly-plugs-gen1", "shelly_gen1", 1),
        ("shelly-pro4pm", "shelly_rpc", 5),  # answers "Connection: close", as the device does
        ("sonoff-diy-basicr3", "sonoff_diy", 5),  # never hold the device's only connection
    ],
)
async def test_polls_reuse_the_connection_where_the_device_allows_it(
    emulator: StartEmulator, model: str, driver: str, connections: int
) -> None:
    running = await emulator(model)
    device = create_driver(driver, running.url)
    try:
        await device.connect()
        running.device.connections.clear()
        for _ in range(5):
            await device.read()
    finally:
        await device.close()
    assert len(running.device.connections) == connections


@pytest.fixture
async def drops_reused_connections() -> AsyncIterator[tuple[str, list[int]]]:
    """A server that keeps a connection open after answering, then closes it unanswered when
    a second request comes on it: a device dropping an idle connection as a poll goes out.
    (aiohttp sends a GET again by itself; a POST is ours to retry.)"""
    answered: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r")[0]))
        answered.append(1)
        body = b'{"ok": true}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", answered
    server.close()
    await server.wait_closed()


async def test_a_reused_connection_the_device_closed_is_retried_once_on_a_new_one(
    drops_reused_connections: tuple[str, list[int]],
) -> None:
    url, answered = drops_reused_connections
    http = DeviceHttp(url, timeout_s=2)
    try:
        assert (await http.request("POST", "/rpc", json_body={})).data == {"ok": True}
        assert (await http.request("POST", "/rpc", json_body={})).data == {"ok": True}
    finally:
        await http.close()
    assert (len(answered), http.retried) == (2, 1)
