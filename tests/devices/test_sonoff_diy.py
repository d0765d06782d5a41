"""Sonoff DIY mode: recorded payloads, the fw 3.3.0 quirk, TXT chunks and request spacing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from evplug.clock import FakeClock
from evplug.core.actual import ActualState
from evplug.devices.emulators.sonoff_diy import TXT_CHUNK, txt_records
from evplug.devices.sonoff_diy import SonoffDiyDriver, info_data, parse_info, parse_readings
from tests.devices.conftest import StartEmulator

Payload = Callable[[str], Any]


def test_info_of_a_single_outlet_device(payload: Payload) -> None:
    data = info_data(payload("ref4.2_sonoff_diy_info_v2_fw360.json"))
    info = parse_info(data, "http://x:8081")
    assert (info.family, info.model, info.hardware_id) == ("sonoff", "diy_plug", "1001262ec1")
    assert (info.channels, info.firmware) == (1, "3.6.0")
    [reading] = parse_readings(data)
    assert reading.actual == ActualState.ON
    assert reading.energy_wh is None and reading.power_w == 0.0


def test_fw_3_3_0_sends_info_data_as_a_string(payload: Payload) -> None:
    body = payload("ref4.2_sonoff_diy_info_v2_fw360.json")
    quirky = {**body, "data": json.dumps(body["data"])}
    assert info_data(quirky) == info_data(body)


def test_spm_main_fields_in_hundredths(payload: Payload) -> None:
    data = payload("ref4.3_sonoff_diy_spm_main_fields_official.json") | {"deviceid": "10000a1b2c"}
    assert parse_info(data, "http://x").channels == 4
    readings = parse_readings(data)
    first = readings[0]
    assert (first.current_a, first.voltage_v, first.power_w) == (1.0, 220.0, 220.0)
    assert first.power_factor == 1.0
    # faultState.overloadTrig names outlet 0; overLimit is not a trip.
    assert [r.actual for r in readings] == [
        ActualState.OVERCURRENT,
        ActualState.ON,
        ActualState.ON,
        ActualState.ON,
    ]
    data["faultState"]["overTemp"] = [1]
    assert [r.actual for r in parse_readings(data)] == [ActualState.OVERCURRENT] * 4


def test_txt_records_split_into_249_byte_chunks() -> None:
    state = {"switches": [{"switch": "on", "outlet": n} for n in range(4)]}
    state |= {f"actPow_{n:02d}": 123456 for n in range(4)} | {"padding": "x" * 200}
    records = txt_records(state)
    assert len(records) >= 2
    assert all(len(chunk) <= TXT_CHUNK for chunk in records.values())
    joined = "".join(records[f"data{n}"] for n in range(1, len(records) + 1))
    assert json.loads(joined) == state


@pytest.mark.integration
async def test_post_only_json_with_error_codes(emulator: StartEmulator, payload: Payload) -> None:
    single = await emulator("sonoff-diy-basicr3")
    spm = await emulator("sonoff-diy-spm")
    async with aiohttp.ClientSession() as http:

        async def post(url: str, path: str, body: Any) -> Any:
            async with http.post(f"{url}/zeroconf/{path}", json=body) as reply:
                assert reply.status == 200
                return await reply.json()

        switched = await post(single.url, "switch", {"deviceid": "", "data": {"switch": "on"}})
        assert switched.keys() == payload("ref4.2_sonoff_diy_switch_reply_v2.json").keys()
        assert switched["error"] == 0
        assert (await post(single.url, "switch", {"data": {"switch": "maybe"}}))["error"] == 422
        assert (await post(single.url, "info", {"nodata": 1}))["error"] == 400
        bad_outlet = {"data": {"switches": [{"switch": "on", "outlet": 0}, {"outlet": 4}]}}
        assert (await post(spm.url, "switches", bad_outlet))["error"] == 422
        assert not spm.sockets[0].relay_on  # all or nothing
        async with http.get(f"{single.url}/zeroconf/info") as reply:
            assert reply.status == 405


@pytest.mark.integration
async def test_driver_spaces_its_requests(emulator: StartEmulator) -> None:
    running = await emulator("sonoff-diy-basicr3", clock=FakeClock())
    driver = SonoffDiyDriver(running.url)
    start = time.monotonic()
    try:
        await driver.connect()
        await driver.read()
    finally:
        await driver.close()
    assert time.monotonic() - start >= SonoffDiyDriver.request_gap_s
