"""Every driver against its emulator over real HTTP on 127.0.0.1: the ``base.Driver`` contract.

One table of models; each test runs for every row. What a family cannot report (Tasmota has no
trip flag, Sonoff DIY no energy counter, a BASICR3 no meter) is a column of the table, not a
separate test.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import pytest

from evplug.clock import FakeClock
from evplug.core.actual import ActualState
from evplug.devices.base import (
    BadChannel,
    DeviceAuthError,
    DeviceUnreachable,
    SwitchMismatch,
    TimedDriver,
)
from evplug.devices.emulators import RunningEmulator
from evplug.devices.http_driver import HttpDriver
from evplug.devices.shelly_gen1 import ShellyGen1Driver
from evplug.devices.shelly_rpc import ShellyRpcDriver
from evplug.devices.sonoff_diy import SonoffDiyDriver
from evplug.devices.tasmota import TasmotaDriver
from tests.devices.conftest import StartEmulator

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Case:
    model: str
    driver: type[HttpDriver]
    metered: bool = True
    counter_wh: float | None = 0.01  # counter resolution; None = the device has no counter
    trip_reads: ActualState = ActualState.OVERCURRENT  # what a tripped channel reads as
    passwords: bool = True  # False: a "password" means eWeLink encryption, never accepted
    timer: bool = True  # the device has an auto-off timer the driver sets (``TimedDriver``)


CASES = [
    Case("shelly-pro4pm", ShellyRpcDriver),
    Case("shelly-plusplugs", ShellyRpcDriver),
    Case("shelly-plugs-gen1", ShellyGen1Driver, counter_wh=1 / 60),
    Case("tasmota-plug", TasmotaDriver, counter_wh=1.0, trip_reads=ActualState.OFF),
    Case("tasmota-4ch", TasmotaDriver, counter_wh=1.0, trip_reads=ActualState.OFF),
    Case("sonoff-spm", TasmotaDriver, counter_wh=10.0, trip_reads=ActualState.OFF),
    Case("sonoff-diy-spm", SonoffDiyDriver, counter_wh=None, passwords=False, timer=False),
    Case(
        "sonoff-diy-basicr3",
        SonoffDiyDriver,
        metered=False,
        counter_wh=None,
        trip_reads=ActualState.OFF,  # no meter, so no faultState either
        passwords=False,
        timer=False,
    ),
]


@pytest.fixture(params=CASES, ids=[case.model for case in CASES])
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Case:
    # The DIY request spacing is wall-clock time; test_sonoff_diy.py checks it on its own.
    monkeypatch.setattr(SonoffDiyDriver, "request_gap_s", 0.0)
    return request.param


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def started(
    emulator: StartEmulator, case: Case, clock: FakeClock, **options: object
) -> tuple[RunningEmulator, HttpDriver]:
    running = await emulator(case.model, clock=clock, **options)
    return running, case.driver(running.url, timeout_s=2.0)


async def test_connect_reports_the_hardware_identity(
    emulator: StartEmulator, case: Case, clock: FakeClock
) -> None:
    running, driver = await started(emulator, case, clock)
    try:
        info = await driver.connect()
    finally:
        await driver.close()
    assert info.family == running.device.family
    assert info.hardware_id == running.hardware_id
    assert info.channels == len(running.sockets)
    assert info.address == running.url
    assert info.model and info.firmware
    assert info.plug_id(0) == f"{info.family}:{running.hardware_id}:0"


async def test_switch_reads_back_and_energy_flows(
    emulator: StartEmulator, case: Case, clock: FakeClock
) -> None:
    running, driver = await started(emulator, case, clock)
    last = len(running.sockets) - 1  # the highest channel catches off-by-one indexing
    try:
        assert await driver.switch(last, True) == ActualState.ON
        await clock.advance(120)
        readings = await driver.read()
        power_w, energy_wh = running.sockets[last].power_w, running.sockets[last].energy_wh
        assert await driver.switch(last, False) == ActualState.OFF
    finally:
        await driver.close()
    reading = readings[last]
    assert [r.channel for r in readings] == list(range(len(running.sockets)))
    assert reading.actual == ActualState.ON
    assert all(r.actual == ActualState.OFF for r in readings[:last])
    if case.metered:
        assert reading.power_w == pytest.approx(power_w, rel=0.01)
        assert reading.current_a > 5  # the core's "charging" threshold
        assert all(r.power_w == 0 for r in readings[:last])
    if case.counter_wh is None:
        assert reading.energy_wh is None
    else:
        assert reading.energy_wh == pytest.approx(energy_wh, abs=case.counter_wh)
        assert reading.energy_wh > 50  # two minutes at ~2.3 kW is ~78 Wh


async def test_a_relay_with_a_timer_switches_itself_off_unless_renewed(
    emulator: StartEmulator, case: Case, clock: FakeClock
) -> None:
    running, driver = await started(emulator, case, clock)
    assert isinstance(driver, TimedDriver) is case.timer
    if not isinstance(driver, TimedDriver):
        return
    last = len(running.sockets) - 1
    socket = running.sockets[last]
    try:
        assert await driver.switch_on_for(last, 30) == ActualState.ON
        await clock.advance(20)
        assert await driver.switch_on_for(last, 30) == ActualState.ON  # 30 s from now again
        await clock.advance(25)  # past the first timer, not the renewed one
        assert socket.relay_on
        await clock.advance(6)
        assert not socket.relay_on  # nobody asked it: the device's own clock ran out
        assert (await driver.read())[last].actual == ActualState.OFF
        energy_wh = socket.energy_wh
        await clock.advance(60)
        assert socket.energy_wh == pytest.approx(energy_wh, abs=0.01)  # nothing flows once off
        await driver.switch_on_for(last, 30)
        assert running.device.timers[last] is not None
        assert await driver.switch(last, False) == ActualState.OFF
        assert running.device.timers[last] is None  # an OFF ends the timer
    finally:
        await driver.close()


async def test_reboot_restarts_the_counter_from_zero(
    emulator: StartEmulator, case: Case, clock: FakeClock
) -> None:
    if case.counter_wh is None:
        pytest.skip(f"{case.model} reports no energy counter")
    running, driver = await started(emulator, case, clock)
    try:
        await driver.switch(0, True)
        await clock.advance(300)
        before = (await driver.read())[0]
        running.device.reboot()
        after = (await driver.read())[0]
    finally:
        await driver.close()
    assert before.energy_wh is not None and after.energy_wh is not None
    assert after.energy_wh < before.energy_wh
    assert after.energy_wh == 0
    assert after.actual == ActualState.OFF


async def test_overpower_trip_and_switching_on_again(
    emulator: StartEmulator, case: Case, clock: FakeClock
) -> None:
    running, driver = await started(emulator, case, clock)
    try:
        await driver.switch(0, True)
        await clock.advance(10)
        running.device.trip_overpower(0)
        tripped = (await driver.read())[0]
        again = await driver.switch(0, True)
    finally:
        await driver.close()
    assert tripped.actual == case.trip_reads
    assert tripped.power_w == 0
    assert again == ActualState.ON


async def test_unplugged_car_draws_nothing(
    emulator: StartEmulator, case: Case, clock: FakeClock
) -> None:
    running, driver = await started(emulator, case, clock)
    running.device.unplug(0)
    try:
        await driver.switch(0, True)
        await clock.advance(60)
        reading = (await driver.read())[0]
    finally:
        await driver.close()
    assert reading.actual == ActualState.ON
    assert reading.power_w == 0 and reading.current_a == 0


async def test_bad_channel(emulator: StartEmulator, case: Case, clock: FakeClock) -> None:
    running, driver = await started(emulator, case, clock)
    try:
        with pytest.raises(BadChannel):
            await driver.switch(len(running.sockets), True)
        with pytest.raises(BadChannel):
            await driver.switch(-1, True)
    finally:
        await driver.close()
    assert not any(s.relay_on for s in running.sockets)


async def test_relay_that_ignores_the_command_is_a_mismatch(
    emulator: StartEmulator, case: Case, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, driver = await started(emulator, case, clock)
    monkeypatch.setattr(running.device, "set_relay", lambda *_: None)
    try:
        with pytest.raises(SwitchMismatch, match="reads OFF after switching on"):
            await driver.switch(0, True)
    finally:
        await driver.close()


async def test_hanging_device_is_unreachable_within_the_timeout(
    emulator: StartEmulator, case: Case, clock: FakeClock
) -> None:
    running = await emulator(case.model, clock=clock)
    driver = case.driver(running.url, timeout_s=0.3)
    running.device.hang()
    start = time.monotonic()
    try:
        with pytest.raises(DeviceUnreachable, match=f"{running.url}.*no answer within 0.3 s"):
            await driver.read()
    finally:
        await driver.close()
    assert time.monotonic() - start < 1.0


async def test_nothing_listening_is_unreachable_naming_the_url(case: Case) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound but not listening: refused
        driver = case.driver(url, timeout_s=1.0)
        try:
            with pytest.raises(DeviceUnreachable, match=f"{url}.*cannot connect"):
                await driver.connect()
        finally:
            await driver.close()


async def test_password(emulator: StartEmulator, case: Case, clock: FakeClock) -> None:
    running = await emulator(case.model, clock=clock, password="s3cret")
    for password in (None, "wrong"):
        driver = case.driver(running.url, password=password, timeout_s=2.0)
        try:
            with pytest.raises(DeviceAuthError):
                await driver.connect()
        finally:
            await driver.close()
    if not case.passwords:
        return
    driver = case.driver(running.url, username="admin", password="s3cret", timeout_s=2.0)
    try:
        await driver.connect()
        assert await driver.switch(0, True) == ActualState.ON
        assert (await driver.read())[0].actual == ActualState.ON
    finally:
        await driver.close()
