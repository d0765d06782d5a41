"""`evplug demo --site-config`: a whole session against an emulated relay over real HTTP."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from evplug.assembly import StartupError
from evplug.clock import ScaledClock
from evplug.demo import DemoOptions, build, smoke
from evplug.devices.car import Car
from evplug.devices.emulators.runner import start_emulator
from evplug.settings import Settings, SettingsError
from tests.conftest import wait_for

pytestmark = pytest.mark.integration
SPEED = 300.0


@pytest.mark.parametrize("model", ["shelly-pro4pm", "tasmota-4ch"])
async def test_a_session_against_an_emulated_relay_is_metered_and_billed(
    tmp_path: Path, model: str
) -> None:
    emulator = await start_emulator(model, clock=ScaledClock(SPEED))
    try:
        for socket in emulator.sockets:
            socket.car = Car(need_wh=300.0)
        config = tmp_path / "site.toml"
        driver = "shelly_rpc" if model.startswith("shelly") else "tasmota"
        config.write_text(
            f'site_id = "garage-7"\npoll_interval_s = 2\n\n[[devices]]\ndriver = "{driver}"\n'
            f'url = "{emulator.url}"\nfuze_id = "A"\nfuze_limit_a = 32\n'
        )
        options = DemoOptions(speed=SPEED, site_config=config)
        result = await smoke(Settings(data_dir=tmp_path / "data"), options, timeout_s=40)
    finally:
        await emulator.stop()
    family = "shelly" if model.startswith("shelly") else "tasmota"
    assert result["plug_id"].startswith(f"{family}:{emulator.hardware_id}:")
    assert result["states"][-1] == "ACCOUNT_NULL" and "CHARGING" in result["states"]
    assert result["kwh"] == pytest.approx(0.3, abs=0.02)
    assert result["balance_after_cents"] == result["balance_before_cents"] - result["cents"] > 0


async def test_an_unreachable_relay_in_the_site_config_is_one_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text(
        'site_id = "garage-7"\n[[devices]]\ndriver = "shelly_rpc"\nurl = "http://127.0.0.1:9"\n'
    )
    with pytest.raises(StartupError, match=r"127\.0\.0\.1:9.*site config"):
        await smoke(Settings(data_dir=tmp_path), DemoOptions(site_config=config), timeout_s=10)


async def test_a_broken_site_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('site_id = "garage-7"\n[[devices]]\ndriver = "shelly_rpc"\n')
    with pytest.raises(SettingsError, match=r"devices\[0\]\.url"):
        await smoke(Settings(data_dir=tmp_path), DemoOptions(site_config=config), timeout_s=10)


async def test_discovery_is_opt_in_and_takes_the_configured_interval(tmp_path: Path) -> None:
    base = 'site_id = "garage-7"\n[[devices]]\ndriver = "shelly_rpc"\nurl = "http://127.0.0.1:9"\n'
    for extra, expected in [("", None), ("discovery = true\ndiscovery_interval_s = 120\n", 120.0)]:
        config = tmp_path / "site.toml"
        config.write_text(extra + base)
        system = await build(Settings(data_dir=tmp_path), DemoOptions(site_config=config))
        try:
            interval = system.rediscovery.interval_s if system.rediscovery else None
            assert interval == expected
        finally:
            await system.stop()


async def test_a_relay_that_trips_mid_charge_ends_the_session_billed(tmp_path: Path) -> None:
    """The relay's overpower protection opens mid-charge: billed for what was metered, idle."""
    emulator = await start_emulator("shelly-pro4pm", clock=ScaledClock(SPEED))
    try:
        for socket in emulator.sockets:
            socket.car = Car(need_wh=50_000.0)  # far from full: only the trip can end it
        config = tmp_path / "site.toml"
        config.write_text(
            f'site_id = "garage-7"\n[[devices]]\ndriver = "shelly_rpc"\nurl = "{emulator.url}"\n'
        )
        options = DemoOptions(speed=SPEED, site_config=config)
        session = asyncio.create_task(smoke(Settings(data_dir=tmp_path / "data"), options, 60))
        channel = emulator.sockets[0]
        await wait_for(lambda: channel.relay_on and channel.energy_wh > 200, timeout_s=40)
        emulator.device.trip_overpower(0)
        tripped_at, metered_wh = time.monotonic(), channel.energy_wh
        result = await session
        seconds_to_idle = time.monotonic() - tripped_at
        assert not channel.relay_on  # never switched back on by itself
    finally:
        await emulator.stop()
    assert result["states"][-1] == "ACCOUNT_NULL" and "CHARGING" in result["states"]
    assert result["reason"] == "tripped"
    assert seconds_to_idle < 5
    assert result["kwh"] == pytest.approx(metered_wh / 1000, abs=0.02)  # all that was delivered
    assert result["balance_after_cents"] == result["balance_before_cents"] - result["cents"]
