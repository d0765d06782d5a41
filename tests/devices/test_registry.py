"""``probe`` and ``find_driver``: each family found at its emulator; clear errors otherwise."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from evplug.clock import FakeClock
from evplug.devices.base import DeviceAuthError, DeviceUnreachable, UnsupportedDevice
from evplug.devices.emulators import MODELS
from evplug.devices.registry import DRIVERS, create_driver, find_driver, probe
from evplug.devices.sonoff_diy import SonoffDiyDriver
from tests.devices.conftest import StartEmulator

pytestmark = pytest.mark.integration

EXPECTED_DRIVER = {
    "shelly-pro4pm": "shelly_rpc",
    "shelly-plusplugs": "shelly_rpc",
    "shelly-plugs-gen1": "shelly_gen1",
    "tasmota-plug": "tasmota",
    "tasmota-4ch": "tasmota",
    "sonoff-spm": "tasmota",
    "sonoff-diy-basicr3": "sonoff_diy",
    "sonoff-diy-spm": "sonoff_diy",
}


@pytest.fixture(autouse=True)
def no_diy_spacing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SonoffDiyDriver, "request_gap_s", 0.0)


def test_every_emulated_model_has_an_expected_driver() -> None:
    assert set(EXPECTED_DRIVER) == set(MODELS)
    assert set(EXPECTED_DRIVER.values()) == set(DRIVERS)


@pytest.mark.parametrize("model", sorted(EXPECTED_DRIVER))
async def test_probe_finds_each_family(emulator: StartEmulator, model: str) -> None:
    running = await emulator(model, clock=FakeClock())
    info, readings = await probe(running.url, timeout_s=2.0)
    assert info.hardware_id == running.hardware_id
    assert len(readings) == info.channels == len(running.sockets)
    driver, again = await find_driver(running.url, timeout_s=2.0)
    await driver.close()
    assert driver.name == EXPECTED_DRIVER[model]
    assert again == info


async def test_probe_with_credentials(emulator: StartEmulator) -> None:
    running = await emulator("shelly-pro4pm", password="pw")
    info, _ = await probe(running.url, password="pw", timeout_s=2.0)
    assert info.model == "SPSW-004PE16EU"


async def test_a_family_that_wants_a_password_ends_the_search(emulator: StartEmulator) -> None:
    running = await emulator("shelly-plugs-gen1", password="pw")
    with pytest.raises(DeviceAuthError, match=r"requires a password.*Shelly Gen1"):
        await probe(running.url, timeout_s=2.0)


@pytest.fixture
async def not_a_relay() -> AsyncIterator[str]:
    """An HTTP server that answers 404 to everything, like a printer's web page."""
    runner = web.AppRunner(web.Application(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_something_else_at_the_url_names_every_family_tried(not_a_relay: str) -> None:
    with pytest.raises(UnsupportedDevice) as raised:
        await probe(not_a_relay, timeout_s=2.0)
    message = str(raised.value)
    assert message.startswith(f"no supported relay at {not_a_relay}; tried ")
    for name, driver in DRIVERS.items():
        assert f"{name}: {driver.tried}" in message
    assert "HTTP 404" in message


async def test_nothing_at_the_url_is_unreachable_naming_every_family() -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        with pytest.raises(DeviceUnreachable) as raised:
            await probe(url, timeout_s=1.0)
    message = str(raised.value)
    assert "cannot connect" in message
    for name in DRIVERS:
        assert f"{name}: " in message
    assert message.count("not asked") == len(DRIVERS) - 1  # one refusal is enough


def test_a_sonoff_without_a_port_is_asked_on_8081() -> None:
    assert create_driver("sonoff_diy", "10.0.0.9").url == "http://10.0.0.9:8081"
    assert create_driver("shelly_rpc", "10.0.0.9").url == "http://10.0.0.9"


def test_unknown_driver_name() -> None:
    with pytest.raises(UnsupportedDevice, match="known: shelly_gen1, shelly_rpc"):
        create_driver("zigbee", "http://x")
