"""The Shelly Gen2+ driver's WebSocket against the emulator: changes arrive as they happen,
calls ride the socket while it is open and HTTP while it is not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from evplug.core.actual import ActualState
from evplug.devices.base import ChannelReading, DeviceAuthError, DeviceUnreachable, PushDriver
from evplug.devices.car import Car
from evplug.devices.emulators import RunningEmulator
from evplug.devices.shelly_rpc import ShellyRpcDriver, merge_status
from tests.conftest import wait_for
from tests.devices.conftest import StartEmulator

pytestmark = pytest.mark.integration


class Pushed:
    """What the driver hands on, with when it arrived."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[float, list[ChannelReading]]] = asyncio.Queue()

    def __call__(self, readings: list[ChannelReading]) -> None:
        self.queue.put_nowait((time.monotonic(), readings))

    async def next_of(
        self, channel: int, wanted: Callable[[ChannelReading], bool] = lambda _: True
    ) -> tuple[float, ChannelReading]:
        """The first reading of ``channel`` that is ``wanted``, and when it was handed on."""
        async with asyncio.timeout(2.0):
            while True:
                at, readings = await self.queue.get()
                for reading in readings:
                    if reading.channel == channel and wanted(reading):
                        return at, reading

    def clear(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()


@pytest.fixture
async def subscribed(
    emulator: StartEmulator,
) -> AsyncIterator[tuple[RunningEmulator, ShellyRpcDriver, Pushed]]:
    running = await emulator("shelly-pro4pm", password="s3cret")
    driver = ShellyRpcDriver(running.url, password="s3cret")
    await driver.connect()
    pushed = Pushed()
    driver.subscribe(pushed)
    try:
        await wait_for(lambda: driver.pushing, timeout_s=5)
        yield running, driver, pushed
    finally:
        await driver.close()


def test_the_shelly_rpc_driver_is_a_push_driver() -> None:
    assert isinstance(ShellyRpcDriver("http://127.0.0.1:9"), PushDriver)


async def test_a_trip_and_a_hand_switch_are_reported_within_a_second(
    subscribed: tuple[RunningEmulator, ShellyRpcDriver, Pushed],
) -> None:
    running, driver, pushed = subscribed
    await pushed.next_of(3)  # the full status, handed on when the socket opened

    assert await driver.switch(0, True) is ActualState.ON
    pushed.clear()
    running.device.trip_overpower(0)
    tripped = time.monotonic()
    at, _ = await pushed.next_of(0, lambda r: r.actual is ActualState.OVERCURRENT)
    assert at - tripped < 1.0

    running.device.press_button(1)
    pressed = time.monotonic()
    at, _ = await pushed.next_of(1, lambda r: r.actual is ActualState.ON)
    assert at - pressed < 1.0


async def test_power_falling_to_zero_is_reported_within_a_second(
    subscribed: tuple[RunningEmulator, ShellyRpcDriver, Pushed],
) -> None:
    running, driver, pushed = subscribed
    running.device.plug_in(2, Car())
    await driver.switch(2, True)
    await pushed.next_of(2, lambda r: r.power_w > 0)
    running.device.unplug(2)
    unplugged = time.monotonic()
    at, reading = await pushed.next_of(2, lambda r: r.power_w == 0)
    assert (reading.actual, reading.current_a) == (ActualState.ON, 0.0)
    assert at - unplugged < 1.0


async def test_a_dropped_socket_falls_back_to_http_and_comes_back(
    subscribed: tuple[RunningEmulator, ShellyRpcDriver, Pushed],
) -> None:
    running, driver, pushed = subscribed
    running.device.websockets_allowed = False
    running.device.drop_websockets()
    await wait_for(lambda: not driver.pushing, timeout_s=2)

    # Polling and switching carry on over HTTP while the device refuses the WebSocket.
    assert await driver.switch(1, True) is ActualState.ON
    assert [r.actual for r in await driver.read()][:2] == [ActualState.OFF, ActualState.ON]

    running.device.websockets_allowed = True
    await wait_for(lambda: driver.pushing, timeout_s=10)
    pushed.clear()
    running.device.trip_overpower(1)
    await pushed.next_of(1, lambda r: r.actual is ActualState.OVERCURRENT)


async def test_a_wrong_password_on_the_socket_is_an_auth_error(emulator: StartEmulator) -> None:
    running = await emulator("shelly-pro4pm", password="s3cret")
    driver = ShellyRpcDriver(running.url, password="s3cret")
    await driver.connect()
    driver.subscribe(Pushed())
    try:
        await wait_for(lambda: driver.pushing, timeout_s=5)
        running.device.password = "changed"
        with pytest.raises(DeviceAuthError):
            await driver.read()
    finally:
        await driver.close()


def test_notified_changes_overlay_the_cached_status_and_null_removes() -> None:
    cached = {"id": 0, "output": True, "apower": 5.0, "aenergy": {"total": 1.0, "minute_ts": 60}}
    cached["errors"] = ["overpower"]
    merge_status(cached, {"id": 0, "aenergy": {"total": 2.5}, "errors": None, "apower": 0.0})
    assert cached == {
        "id": 0,
        "output": True,
        "apower": 0.0,
        "aenergy": {"total": 2.5, "minute_ts": 60},
    }


def test_a_malformed_notification_is_counted_and_changes_nothing() -> None:
    driver = ShellyRpcDriver("http://127.0.0.1:9")
    pushed: list[list[ChannelReading]] = []
    driver._on_readings = pushed.append
    driver._keep({"switch:0": {"id": 0, "output": False}, "switch:1": {"id": 1, "output": False}})
    driver._notified("NotifyStatus", {"ts": 1.0, "switch:0": {"output": True}, "switch:1": 5})
    driver._notified("NotifyStatus", "not an object")
    assert (driver.bad_notifications, pushed) == (2, [])
    assert driver._switches["switch:0"]["output"] is False
    driver._notified("NotifyStatus", {"ts": 2.0, "switch:1": {"output": True}, "sys": {}})
    [[reading]] = pushed
    assert (reading.channel, reading.actual) == (1, ActualState.ON)


def test_a_full_status_notification_replaces_the_cache_and_hands_on_every_channel() -> None:
    driver = ShellyRpcDriver("http://127.0.0.1:9")
    pushed: list[list[ChannelReading]] = []
    driver._on_readings = pushed.append
    driver._keep({"switch:0": {"id": 0, "output": True, "errors": ["overpower"]}})
    full = {"ts": 3.0, "sys": {}, "switch:0": {"id": 0, "output": False}}
    driver._notified("NotifyFullStatus", full | {"switch:1": {"id": 1, "output": True}})
    [readings] = pushed
    assert [(r.channel, r.actual) for r in readings] == [
        (0, ActualState.OFF),
        (1, ActualState.ON),
    ]


async def test_a_device_that_stops_answering_on_the_socket_costs_one_timeout_not_two(
    emulator: StartEmulator,
) -> None:
    running = await emulator("shelly-pro4pm")
    driver = ShellyRpcDriver(running.url, timeout_s=0.5)
    await driver.connect()
    driver.subscribe(Pushed())
    try:
        await wait_for(lambda: driver.pushing, timeout_s=5)
        running.device.hang()
        asked = time.monotonic()
        with pytest.raises(DeviceUnreachable, match=r"no answer within 0\.5 s"):
            await driver.read()
        assert time.monotonic() - asked < 0.9  # not asked again over HTTP
        running.device.resume()
        await wait_for(lambda: driver.pushing, timeout_s=5)  # the dropped socket came back
        assert len(await driver.read()) == 4
    finally:
        await driver.close()
