"""Shelly Gen1: recorded payloads through the parsers, and the emulator's auth rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from evplug.core.actual import ActualState
from evplug.devices.base import UnsupportedDevice
from evplug.devices.shelly_gen1 import parse_shelly, parse_status, relay_actual
from tests.devices.conftest import StartEmulator

Payload = Callable[[str], Any]


def test_shelly_of_a_plug_s(payload: Payload) -> None:
    info = parse_shelly(payload("ref2.1_shelly_gen1_shelly_plugs.json"), "http://x")
    assert (info.family, info.model, info.hardware_id) == ("shelly", "SHPLG-S", "aabbccddeeff")
    assert info.channels == 1
    assert info.firmware == "20230913-113421/v1.14.0-gcb84623"


def test_shelly_of_a_long_id_shelly_1(payload: Payload) -> None:
    info = parse_shelly(payload("ref2.1_shelly_gen1_shelly_shsw1_longid.json"), "http://x")
    assert (info.model, info.hardware_id) == ("SHSW-1", "c45bbe78a8a4")


def test_a_gen2_device_is_not_gen1(payload: Payload) -> None:
    with pytest.raises(UnsupportedDevice, match="not a Gen1"):
        parse_shelly(payload("ref1.4_shelly_getdeviceinfo_pro4pm_aioshelly_fixture.json"), "x")


def test_status_of_a_plug_s_counts_watt_minutes(payload: Payload) -> None:
    [reading] = parse_status(payload("ref2.2_shelly_gen1_status_plugs_trimmed.json"))
    assert reading.actual == ActualState.OFF
    assert reading.power_w == 0.0
    assert reading.energy_wh == pytest.approx(2632 / 60)


def test_relay_objects(payload: Payload) -> None:
    assert relay_actual(payload("ref2.3_shelly_gen1_relay_on_illustrative.json")) == ActualState.ON
    assert relay_actual({"ison": False, "overpower": True}) == ActualState.OVERCURRENT


def test_overtemperature_trips_every_channel(payload: Payload) -> None:
    status = payload("ref2.2_shelly_gen1_status_plugs_trimmed.json")
    status["overtemperature"] = True
    assert [r.actual for r in parse_status(status)] == [ActualState.OVERCURRENT]


def test_power_only_meter_estimates_current() -> None:
    status = {"relays": [{"ison": True}], "meters": [{"power": 2300.0, "total": 600}]}
    [reading] = parse_status(status)
    assert reading.current_a == pytest.approx(10.0)
    assert reading.voltage_v == 0.0  # not measured, not invented
    assert reading.energy_wh == 10.0


@pytest.mark.integration
async def test_basic_auth_covers_all_but_shelly(emulator: StartEmulator) -> None:
    running = await emulator("shelly-plugs-gen1", password="pw")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{running.url}/shelly") as reply:
            assert reply.status == 200
            assert (await reply.json())["auth"] is True
        for path in ("/status", "/relay/0", "/meter/0"):
            async with http.get(f"{running.url}{path}") as reply:
                assert reply.status == 401, path
        headers = {"Authorization": aiohttp.encode_basic_auth("admin", "pw")}
        async with http.get(f"{running.url}/relay/0?turn=on", headers=headers) as reply:
            assert (await reply.json())["ison"] is True
        async with http.get(f"{running.url}/relay/1", headers=headers) as reply:
            assert reply.status == 404
