"""The emulators: same JSON shapes as the recorded devices, hooks, the runner and the CLI entry."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from evplug.clock import FakeClock
from evplug.devices.emulators import MODELS, start_emulator
from evplug.devices.emulators.device import EmulatedDevice, MinuteLog
from evplug.devices.emulators.shelly_rpc import RpcError
from tests.devices.conftest import StartEmulator

Payload = Callable[[str], Any]
MAC = "aabbccddeeff"


def build(model: str) -> Any:
    """The emulated device alone, without a server (its JSON builders are plain methods)."""
    device = MODELS[model].build(FakeClock(), MAC, None)
    device.tick()
    return device


def test_models_cover_the_required_families() -> None:
    required = {"shelly-pro4pm", "shelly-plugs-gen1", "tasmota-4ch", "sonoff-spm"}
    assert required <= MODELS.keys()
    assert all(MODELS[name].description for name in MODELS)


# --- fidelity: every key of the real payloads is there ---------------------------------------


def test_gen2_switch_status_shapes(payload: Payload) -> None:
    pro = build("shelly-pro4pm").switch_status(0)
    real_pro = payload("ref1.5_shelly_switch_getstatus_pro4pm_us_mains.json")
    assert list(real_pro) == [key for key in pro if key in real_pro]  # same order too
    assert pro["aenergy"].keys() == real_pro["aenergy"].keys()
    assert pro["temperature"].keys() == real_pro["temperature"].keys()
    # The Plus Plug S reports neither pf nor freq nor returned energy.
    plug = build("shelly-plusplugs").switch_status(0)
    assert plug.keys() == payload("ref1.5_shelly_switch_getstatus_plusplugs.json").keys()


def test_gen2_device_info_shape(payload: Payload) -> None:
    real = payload("ref1.4_shelly_getdeviceinfo_pro4pm_aioshelly_fixture.json")
    info = build("shelly-pro4pm").device_info()
    assert info.keys() == real.keys()
    assert (info["id"], info["mac"]) == (real["id"], real["mac"])


def test_gen1_shapes(payload: Payload) -> None:
    device = build("shelly-plugs-gen1")
    real_shelly = payload("ref2.1_shelly_gen1_shelly_plugs.json")
    assert real_shelly.keys() - device.shelly().keys() == {"name"}  # recent firmware only
    real = payload("ref2.2_shelly_gen1_status_plugs_trimmed.json")
    status = device.status()
    assert real.keys() <= status.keys()
    assert status["relays"][0].keys() == real["relays"][0].keys()
    assert status["meters"][0].keys() == real["meters"][0].keys()
    assert isinstance(status["meters"][0]["total"], int)  # watt-minutes, a whole number


def test_tasmota_shapes(payload: Payload) -> None:
    plug = build("tasmota-plug")
    real_energy = payload("ref3.3_tasmota_status8_energy_single.json")["StatusSNS"]["ENERGY"]
    assert list(plug.sns()["ENERGY"]) == list(real_energy)
    real_sts = payload("ref3.3_tasmota_status11_sts_2relay.json")["StatusSTS"]
    board_sts = build("tasmota-4ch").sts()
    assert {k for k in real_sts if not k.startswith("POWER")} <= board_sts.keys()
    assert board_sts["Wifi"].keys() == real_sts["Wifi"].keys()
    assert "POWER" in plug.sts() and "POWER1" not in plug.sts()
    spm_sns = build("sonoff-spm").sns()
    real_spm = payload("ref3.4_tasmota_sonoff_spm_statussns_4relay.json")["StatusSNS"]
    assert list(spm_sns) == list(real_spm)
    assert list(spm_sns["SPM"]) == list(real_spm["SPM"])


def test_sonoff_diy_shapes(payload: Payload) -> None:
    real = payload("ref4.2_sonoff_diy_info_v2_fw360.json")["data"]
    assert build("sonoff-diy-basicr3").info().keys() == real.keys()
    spm_fields = payload("ref4.3_sonoff_diy_spm_main_fields_official.json")
    spm = build("sonoff-diy-spm").info()
    assert spm_fields.keys() <= spm.keys()
    assert spm["faultState"].keys() == spm_fields["faultState"].keys()


async def test_timers_show_in_the_status_as_on_the_real_devices() -> None:
    gen2 = build("shelly-pro4pm")
    assert gen2.call("Switch.Set", {"id": 0, "on": True, "toggle_after": 60}) == {"was_on": False}
    status = gen2.switch_status(0)
    assert status["timer_duration"] == 60 and status["timer_started_at"] > 0
    assert list(status)[:5] == ["id", "source", "output", "timer_started_at", "timer_duration"]
    with pytest.raises(RpcError) as bad:
        gen2.call("Switch.Set", {"id": 0, "on": True, "toggle_after": -1})
    assert bad.value.code == -103
    gen2.call("Switch.Set", {"id": 0, "on": False})
    assert "timer_duration" not in gen2.switch_status(0)  # switching again ends it

    gen1 = build("shelly-plugs-gen1")
    gen1.set_relay(0, True, 60)
    await gen1.clock.advance(15)
    relay = gen1.relay(0)
    assert (relay["has_timer"], relay["timer_duration"], relay["timer_remaining"]) == (True, 60, 45)
    await gen1.clock.advance(45)
    assert gen1.relay(0)["ison"] is False and gen1.relay(0)["source"] == "timer"
    gen2.stop_timers()


def test_minute_log_reports_the_last_three_whole_minutes() -> None:
    log = MinuteLog()
    for minute, energy in enumerate([0.0, 10.0, 25.0, 45.0]):
        log.observe(minute * 60_000 + 5_000, energy)
    # At minute 3: minutes 2, 1 and 0 were worth 20, 15 and 10 Wh.
    assert log.last_three_wh(3 * 60_000 + 30_000) == [20.0, 15.0, 10.0]
    assert log.last_three_wh(10 * 60_000) == [0.0, 0.0, 0.0]  # nobody looked since


# --- hooks, runner, CLI entry -----------------------------------------------------------------


@pytest.mark.integration
async def test_hooks_over_http(emulator: StartEmulator) -> None:
    running = await emulator("shelly-pro4pm", clock=FakeClock())
    device: EmulatedDevice = running.device
    async with aiohttp.ClientSession() as http:

        async def hook(name: str, **query: str) -> int:
            async with http.post(f"{running.url}/_emulator/{name}", params=query) as reply:
                return reply.status

        assert await hook("unplug", channel="2") == 200
        assert running.sockets[2].car is None
        assert await hook("plug_in", channel="2") == 200
        assert running.sockets[2].car is not None
        device.set_relay(1, True)
        assert await hook("trip_overpower", channel="1") == 200
        assert running.sockets[1].overcurrent and not running.sockets[1].relay_on
        assert await hook("reboot") == 200
        assert device.reboots == 1 and not running.sockets[1].overcurrent
        assert await hook("hang") == 200
        assert await hook("resume") == 200
        assert await hook("unplug", channel="9") == 400
        assert await hook("explode") == 404


async def test_start_emulator_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown emulator model 'shelly-duo'"):
        await start_emulator("shelly-duo")
    with pytest.raises(ValueError, match="not a MAC"):
        await start_emulator("shelly-pro4pm", mac="12:34")


@pytest.mark.integration
async def test_given_mac_is_normalised(emulator: StartEmulator) -> None:
    running = await emulator("tasmota-4ch", mac="AA-BB-CC-DD-EE-FF")
    assert running.hardware_id == MAC
    assert running.url == f"http://127.0.0.1:{running.port}"


@pytest.mark.integration
def test_run_emulator_forever_serves_until_sigterm() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code = (
        "from evplug.devices.emulators import run_emulator_forever; "
        f"run_emulator_forever('shelly-plugs-gen1', '127.0.0.1', {port}, None, False)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner, process.stderr.read() if process.stderr else ""
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"GET /shelly HTTP/1.0\r\n\r\n")
            answer = b"".join(iter(lambda: client.recv(4096), b""))  # HTTP/1.0: until close
        assert b"SHPLG-S" in answer
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
