from __future__ import annotations

from evplug.bus.memory import MemoryBus
from evplug.clock import FakeClock
from evplug.core.actual import ActualState
from evplug.devices.base import DeviceUnreachable
from evplug.devices.simulated import SimulatedDevice
from evplug.relay.manager import DeviceSpec, RelayManager
from evplug.relay.outbox import Outbox
from evplug.relay.status_page import plug_url, render


async def test_lists_every_plug_with_its_reading_and_a_qr_code() -> None:
    clock = FakeClock()
    device = SimulatedDevice("aa01", clock, channels=2)
    relay = RelayManager("site-1", MemoryBus(clock), [DeviceSpec(device, "main")], clock)
    await relay.connect()
    assert render(relay, "https://ev.example").count("no reading yet") == 2

    await device.switch(1, True)
    await clock.advance(10)
    await relay.poll_once()
    html = render(relay, "https://ev.example/")
    assert "no reading yet" not in html
    assert html.count("<svg") == 2
    url = plug_url("https://ev.example", "sim:aa01:1")
    assert url == "https://ev.example/plug/sim%3Aaa01%3A1"
    assert f'href="{url}"' in html
    assert " W · " in html and "Wh" in html and "circuit main" in html


async def test_a_relay_that_does_not_answer_shows_why() -> None:
    clock = FakeClock()
    device = SimulatedDevice("aa01", clock)

    async def unreachable() -> list:
        raise DeviceUnreachable("http://192.0.2.7: connection refused")

    device.read = unreachable  # type: ignore[method-assign]
    relay = RelayManager("site-1", MemoryBus(clock), [DeviceSpec(device, "main")], clock)
    await relay.connect()
    await relay.poll_once()
    await relay.poll_once()
    html = render(relay, "https://ev.example")
    assert "not answering (2 polls in a row)" in html
    assert "connection refused" in html and "address in the site config" in html


async def test_shows_the_outbox_and_what_it_had_to_drop() -> None:
    clock = FakeClock()
    device = SimulatedDevice("aa01", clock)
    outbox = Outbox(max_messages=2)
    relay = RelayManager("site-1", MemoryBus(clock), [DeviceSpec(device)], clock, outbox=outbox)
    await relay.connect()
    for _ in range(3):  # never sent: nothing has started the sender
        await relay.poll_once()
    html = render(relay, "https://ev.example")
    assert "Outbox: 2 chunks waiting for the broker; 1 dropped unsent (full)" in html


class TimedDevice(SimulatedDevice):
    """A simulated relay with an auto-off timer, as far as the relay manager can tell."""

    async def switch_on_for(self, channel: int, seconds: float) -> ActualState:
        return await self.switch(channel, True)


async def test_says_which_relays_have_no_auto_off_timer_and_who_supervises() -> None:
    clock = FakeClock()
    plain, timed = SimulatedDevice("aa01", clock), TimedDevice("bb02", clock)
    relay = RelayManager("site-1", MemoryBus(clock), [DeviceSpec(plain), DeviceSpec(timed)], clock)
    await relay.connect()
    html = render(relay, "https://ev.example")
    assert html.count("NO auto-off timer: stays on if this relay manager stops") == 1
    assert "auto-off timer: off by itself 120 s after the last renewal" in html
    assert "Mothership: heard from 0 s ago." in html
    await clock.advance(61)
    assert "Mothership: not heard from for 61 s: on its own" in render(relay, "https://ev.example")
