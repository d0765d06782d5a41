"""Shelly Gen2+: recorded payloads through the parsers, and the emulator's RPC/auth dialect."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from evplug.core.actual import ActualState
from evplug.devices.base import (
    BadChannel,
    DeviceAuthError,
    DeviceError,
    UnsupportedDevice,
)
from evplug.devices.shelly_rpc import (
    frame_result,
    parse_device_info,
    parse_switch_status,
    switch_ids,
)
from tests.devices.conftest import StartEmulator

Payload = Callable[[str], Any]


def test_device_info_of_a_pro4pm(payload: Payload) -> None:
    info = parse_device_info(
        payload("ref1.4_shelly_getdeviceinfo_pro4pm_aioshelly_fixture.json"), "http://x", 4
    )
    assert (info.family, info.model, info.hardware_id) == (
        "shelly",
        "SPSW-004PE16EU",
        "aabbccddeeff",
    )
    assert (info.channels, info.firmware) == (4, "1.0.3")


def test_device_info_with_auth_on_parses_the_same(payload: Payload) -> None:
    shelly = payload("ref1.4_shelly_getdeviceinfo_plus2pm_auth_aioshelly_fixture.json")
    assert parse_device_info(shelly, "http://x", 2).model == "SNSW-102P16EU"


def test_a_gen1_shelly_is_not_an_rpc_device(payload: Payload) -> None:
    with pytest.raises(UnsupportedDevice, match="gen >= 2"):
        parse_device_info(payload("ref2.1_shelly_gen1_shelly_plugs.json"), "http://x", 1)


def test_switch_status_of_a_pro4pm_on_us_mains(payload: Payload) -> None:
    reading = parse_switch_status(payload("ref1.5_shelly_switch_getstatus_pro4pm_us_mains.json"))
    assert reading.channel == 0
    assert reading.actual == ActualState.OFF
    assert reading.voltage_v == 121.7
    assert (reading.power_w, reading.current_a, reading.power_factor) == (0.0, 0.0, 0.0)
    assert reading.energy_wh == 0.0


def test_switch_status_without_pf_derives_it(payload: Payload) -> None:
    reading = parse_switch_status(payload("ref1.5_shelly_switch_getstatus_plusplugs.json"))
    assert reading.actual == ActualState.ON
    assert reading.power_w == 2.7
    assert reading.energy_wh == 7258.589
    assert reading.power_factor == pytest.approx(2.7 / (227.9 * 0.121))


def test_overpower_error_reads_as_overcurrent(payload: Payload) -> None:
    reading = parse_switch_status(
        payload("ref1.5_shelly_switch_getstatus_overpower_illustrative.json")
    )
    assert (reading.channel, reading.actual, reading.energy_wh) == (
        2,
        ActualState.OVERCURRENT,
        183421.6,
    )


@pytest.mark.parametrize("error", ["overtemp", "overvoltage"])
def test_other_protection_trips_read_as_overcurrent(error: str) -> None:
    status = {"id": 0, "output": False, "errors": [error]}
    assert parse_switch_status(status).actual == ActualState.OVERCURRENT


def test_undervoltage_is_not_a_trip() -> None:
    assert (
        parse_switch_status({"id": 0, "output": True, "errors": ["undervoltage"]}).actual
        == ActualState.ON
    )


def test_an_unmetered_relay_has_no_counter() -> None:
    reading = parse_switch_status({"id": 0, "source": "init", "output": True})
    assert reading.energy_wh is None and reading.power_w == 0.0


def test_switch_ids_are_numeric_not_text_order() -> None:
    status = {"switch:10": {}, "switch:2": {}, "sys": {}, "input:0": {}}
    assert switch_ids(status) == [2, 10]


def test_frame_result(payload: Payload) -> None:
    assert frame_result(payload("ref1.2_shelly_rpc_switch_set_frame_official.json"), "w") == {
        "was_on": True
    }
    with pytest.raises(BadChannel, match="value 9 not found"):
        frame_result(payload("ref1.6_shelly_rpc_bad_id_frame_illustrative.json"), "w")
    with pytest.raises(DeviceAuthError):
        frame_result(payload("ref1.7_shelly_rpc_ws_auth_required_frame.json"), "w")
    with pytest.raises(UnsupportedDevice, match="No handler"):
        frame_result({"id": 1, "error": {"code": 404, "message": "No handler for X"}}, "w")
    with pytest.raises(DeviceError, match="RPC error -103"):
        frame_result({"id": 1, "error": {"code": -103, "message": "Argument 'id' is missing"}}, "w")
    with pytest.raises(UnsupportedDevice):
        frame_result({"id": 1}, "w")


# --- the emulator's dialect, over real HTTP ----------------------------------------------------


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.integration
async def test_auth_challenge_and_a_hand_made_digest(emulator: StartEmulator) -> None:
    """The challenge looks like the reference capture, and the reference's formula passes."""
    running = await emulator("shelly-pro4pm", password="pw", mac="AA:BB:CC:DD:EE:FF")
    realm = "shellypro4pm-aabbccddeeff"
    frame = {"id": 1, "src": "t", "method": "Shelly.GetStatus"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{running.url}/shelly") as open_:
            assert (await open_.json())["auth_domain"] == realm
        info = {"id": 2, "src": "t", "method": "Shelly.GetDeviceInfo"}
        async with http.post(f"{running.url}/rpc", json=info) as open_:
            assert (await open_.json())["result"]["auth_en"] is True
        async with http.post(f"{running.url}/rpc", json=frame) as challenge:
            assert challenge.status == 401
            assert await challenge.read() == b""
            header = challenge.headers["WWW-Authenticate"]
        assert header.startswith(f'Digest qop="auth", realm="{realm}", nonce="')
        assert header.endswith("algorithm=SHA-256")
        nonce = re.search(r'nonce="([^"]+)"', header)[1]  # type: ignore[index]

        def authorization(nc: str, password: str = "pw") -> str:
            ha1 = sha256_hex(f"admin:{realm}:{password}")
            response = sha256_hex(f"{ha1}:{nonce}:{nc}:abc:auth:{sha256_hex('POST:/rpc')}")
            return (
                f'Digest username="admin", realm="{realm}", nonce="{nonce}", uri="/rpc", '
                f'cnonce="abc", nc={nc}, qop=auth, response="{response}", algorithm=SHA-256'
            )

        async def status(header: str) -> int:
            async with http.post(
                f"{running.url}/rpc", json=frame, headers={"Authorization": header}
            ) as reply:
                return reply.status

        assert await status(authorization("00000001")) == 200
        assert await status(authorization("00000002")) == 200  # the nonce is reused, nc counts
        assert await status(authorization("00000002")) == 401  # a replay
        assert await status(authorization("00000003", password="nope")) == 401


@pytest.mark.integration
async def test_bare_and_framed_rpc_forms(emulator: StartEmulator) -> None:
    running = await emulator("shelly-pro4pm")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{running.url}/rpc/Switch.Set?id=1&on=true") as reply:
            assert await reply.json() == {"was_on": False}  # the state before the call
        async with http.post(f"{running.url}/rpc/Switch.Set", json={"id": 1, "on": False}) as r:
            assert await r.json() == {"was_on": True}
        async with http.get(f"{running.url}/rpc/Switch.GetStatus?id=9") as reply:
            assert reply.status >= 400
            assert await reply.json() == {
                "code": -105,
                "message": "Argument 'id', value 9 not found!",
            }
        frame = {"id": 7, "src": "evse-ctl", "method": "Switch.GetStatus", "params": {"id": 9}}
        async with http.post(f"{running.url}/rpc", json=frame) as reply:
            body = await reply.json()
    assert body == {
        "id": 7,
        "src": running.device.device_id,  # type: ignore[attr-defined]
        "dst": "evse-ctl",
        "error": {"code": -105, "message": "Argument 'id', value 9 not found!"},
    }
