"""Tasmota (and the Sonoff SPM under Tasmota): recorded payloads and the emulator's commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from evplug.clock import FakeClock
from evplug.core.actual import ActualState
from evplug.devices.base import UnsupportedDevice
from evplug.devices.tasmota import (
    TasmotaDriver,
    parse_readings,
    parse_status0,
    power_keys,
    pulse_time_code,
)
from tests.devices.conftest import StartEmulator

Payload = Callable[[str], Any]


def test_single_relay_energy_status_8(payload: Payload) -> None:
    sns = payload("ref3.3_tasmota_status8_energy_single.json")["StatusSNS"]
    [reading] = parse_readings(sns, {"POWER": "ON"})
    assert reading.actual == ActualState.ON
    assert (reading.power_w, reading.voltage_v, reading.current_a) == (2.0, 233.0, 0.209)
    assert reading.power_factor == 0.04
    assert reading.energy_wh == pytest.approx(1580.0)


def test_two_channels_with_a_summed_total(payload: Payload) -> None:
    """Without SetOption129 Total is one number for both relays: no per-channel counter."""
    sts = payload("ref3.3_tasmota_status11_sts_2relay.json")["StatusSTS"]
    sns = payload("ref3.3_tasmota_energy_2ch_illustrative.json")
    first, second = parse_readings(sns, sts)
    assert (first.actual, second.actual) == (ActualState.OFF, ActualState.OFF)
    assert (first.power_w, second.power_w) == (1450.0, 0.0)
    assert (first.current_a, first.power_factor) == (6.41, 0.98)
    assert first.voltage_v == second.voltage_v == 231.0  # a common voltage is one number
    assert first.energy_wh is None and second.energy_wh is None


def test_sonoff_spm_section(payload: Payload) -> None:
    sns = payload("ref3.4_tasmota_sonoff_spm_statussns_4relay.json")["StatusSNS"]
    sts = {f"POWER{n}": "ON" for n in range(1, 5)}
    readings = parse_readings(sns, sts)
    assert [r.channel for r in readings] == [0, 1, 2, 3]
    assert all(r.actual == ActualState.ON and r.energy_wh == 0.0 for r in readings)


def test_status_0_identity(payload: Payload) -> None:
    status = {
        "Status": {"Module": 0, "DeviceName": "Garage"},
        "StatusFWR": {"Version": "9.2.0(tasmota)"},
        "StatusNET": {"Hostname": "tasmota-BAEBDC-3036", "Mac": "2C:3A:E8:BA:EB:DC"},
        "StatusSTS": payload("ref3.3_tasmota_status11_sts_2relay.json")["StatusSTS"],
    }
    info = parse_status0(status, "http://x")
    assert (info.family, info.model, info.hardware_id) == ("tasmota", "Garage", "2c3ae8baebdc")
    assert (info.channels, info.firmware) == (2, "9.2.0(tasmota)")


def test_power_keys_in_numeric_order() -> None:
    sts = {"POWER10": "ON", "POWER2": "OFF", "POWER1": "OFF", "POWERX": "?", "Wifi": {}}
    assert power_keys(sts) == ["POWER1", "POWER2", "POWER10"]
    assert power_keys({"POWER": "ON"}) == ["POWER"]


@pytest.mark.parametrize(
    ("seconds", "code"),
    [(0.01, 1), (0.5, 5), (11.1, 111), (12, 112), (120, 220), (64_800, 64_900), (1e6, 64_900)],
)
def test_pulse_time_takes_tenths_then_seconds_past_100(seconds: float, code: int) -> None:
    assert pulse_time_code(seconds) == code


async def test_pulse_time_answers_its_setting_and_what_remains(emulator: StartEmulator) -> None:
    clock = FakeClock()
    running = await emulator("tasmota-4ch", clock=clock)
    device = running.device
    assert device.command("PulseTime2 220") == {"PulseTime2": {"Set": 220, "Remaining": 0}}
    device.command("Power2 On")
    await clock.advance(20)
    assert device.command("PulseTime2") == {"PulseTime2": {"Set": 220, "Remaining": 200}}
    device.press_button(1)  # off by hand, and on again: the pulse starts over
    device.press_button(1)
    await clock.advance(119)
    assert running.sockets[1].relay_on
    await clock.advance(1)
    assert not running.sockets[1].relay_on
    assert device.command("PulseTime9 5") == {"Command": "Unknown"}


def test_renamed_state_texts() -> None:
    assert parse_readings({}, {"POWER": "1"}, texts=("0", "1"))[0].actual == ActualState.ON
    with pytest.raises(UnsupportedDevice, match="StateText"):
        parse_readings({}, {"POWER": "ON"}, texts=("0", "1"))


@pytest.mark.integration
async def test_driver_honours_state_texts_set_on_the_device(emulator: StartEmulator) -> None:
    running = await emulator("tasmota-4ch", clock=FakeClock())
    running.device.state_texts = ["aus", "an", "um", "halten"]  # type: ignore[attr-defined]
    driver = TasmotaDriver(running.url)
    try:
        assert await driver.switch(2, True) == ActualState.ON
        assert [r.actual for r in await driver.read()] == [
            ActualState.OFF,
            ActualState.OFF,
            ActualState.ON,
            ActualState.OFF,
        ]
    finally:
        await driver.close()


@pytest.mark.integration
async def test_cm_answers_200_with_a_warning_and_power_keys(
    emulator: StartEmulator, payload: Payload
) -> None:
    plug = await emulator("tasmota-plug", password="pw")
    board = await emulator("tasmota-4ch")
    async with aiohttp.ClientSession() as http:

        async def cm(url: str, **query: str) -> tuple[int, Any]:
            async with http.get(f"{url}/cm", params=query) as reply:
                return reply.status, await reply.json()

        assert await cm(plug.url, cmnd="Power On") == (
            200,
            payload("ref3.1_tasmota_warning_need_user.json"),
        )
        assert await cm(plug.url, cmnd="Power On", user="admin", password="pw") == (
            200,
            {"POWER": "ON"},
        )
        assert await cm(board.url, cmnd="Power3 1") == (200, {"POWER3": "ON"})
        assert await cm(board.url, cmnd="Power3 toggle") == (200, {"POWER3": "OFF"})
        assert await cm(board.url, cmnd="Power5 On") == (200, {"Command": "Unknown"})
        assert await cm(board.url, cmnd="Frobnicate") == (200, {"Command": "Unknown"})
        _, sns8 = await cm(board.url, cmnd="Status 8")
        _, sns10 = await cm(board.url, cmnd="Status 10")
    assert sns8 == sns10 and list(sns8) == ["StatusSNS"]
