"""Tasmota: commands over ``GET /cm?cmnd=…``, including Sonoff SPM boards (``SPM`` section).

Relays are 1-based on the device (``Power1``) and 0-based channels here. Every poll is one
``Status 0``: relay states (``StatusSTS``) and meters (``StatusSNS``) from the same instant, in
one request to a small web server. A wrong or missing web password is an HTTP 200 carrying a
``WARNING``, never a 401.
"""

from __future__ import annotations

from typing import Any, ClassVar

from evplug.devices.base import (
    ActualState,
    BadChannel,
    ChannelReading,
    DeviceAuthError,
    DeviceInfo,
    UnsupportedDevice,
)
from evplug.devices.http_driver import HttpDriver, expect_shape, mac_hex

AUTH_USER = "admin"  # WEB_USERNAME of stock builds
DEFAULT_TEXTS = ("OFF", "ON")  # StateText1 / StateText2 unless renamed on the device
WH_PER_KWH = 1000.0
PULSE_TENTHS_UNTIL_S = 11.1
PULSE_MAX_S = 64_800  # code 64900, the largest PulseTime takes

# Where each meter quantity lives: plain energy monitors report under ENERGY, the SPM under SPM.
SECTIONS: dict[str, dict[str, str]] = {
    "SPM": {"power": "ActivePower", "energy": "Energy"},
    "ENERGY": {"power": "Power", "energy": "Total"},
}


def pulse_time_code(seconds: float) -> int:
    """``PulseTime`` takes tenths of a second up to 11.1 s, then 100 + whole seconds."""
    if seconds <= PULSE_TENTHS_UNTIL_S:
        return max(round(seconds * 10), 1)
    return min(round(seconds), PULSE_MAX_S) + 100


def power_keys(sts: dict[str, Any]) -> list[str]:
    """``POWER`` on a single relay, else ``POWER1`` … ``POWERn`` (by number, not text order)."""
    if "POWER" in sts:
        return ["POWER"]
    keys = [key for key in sts if key.startswith("POWER") and key[5:].isdigit()]
    return sorted(keys, key=lambda key: int(key[5:]))


def parse_status0(status: dict[str, Any], address: str) -> DeviceInfo:
    with expect_shape(f"{address}/cm Status 0"):
        channels = len(power_keys(status["StatusSTS"]))
        if channels == 0:
            raise UnsupportedDevice(f"{address}: a Tasmota device without relays")
        return DeviceInfo(
            family="tasmota",
            model=str(status["Status"].get("DeviceName") or "tasmota"),
            hardware_id=mac_hex(status["StatusNET"]["Mac"]),
            channels=channels,
            address=address,
            firmware=str(status["StatusFWR"]["Version"]),
        )


def state(text: str, texts: tuple[str, str]) -> ActualState:
    if text == texts[1]:
        return ActualState.ON
    if text == texts[0]:
        return ActualState.OFF
    raise UnsupportedDevice(f"relay state {text!r} is neither StateText1/2 {texts}")


def _per_channel(value: Any, channel: int, shared: bool) -> float | None:
    """Arrays hold one value per channel; a lone number belongs to every channel only when it is
    shared (one relay, or the common mains voltage). Multi-relay Total/Today are summed unless
    SetOption129 is on, and cannot be attributed to a channel."""
    if isinstance(value, list):
        return float(value[channel]) if channel < len(value) else None
    if value is None or not shared:
        return None
    return float(value)


def parse_readings(
    sns: dict[str, Any], sts: dict[str, Any], texts: tuple[str, str] = DEFAULT_TEXTS
) -> list[ChannelReading]:
    """``StatusSNS`` + ``StatusSTS`` -> one reading per relay. Tasmota reports no trip flag."""
    keys = power_keys(sts)
    section = next((name for name in SECTIONS if name in sns), "ENERGY")
    meter, names = sns.get(section, {}), SECTIONS[section]
    single = len(keys) == 1
    readings = []
    for channel, key in enumerate(keys):
        energy_kwh = _per_channel(meter.get(names["energy"]), channel, single)
        readings.append(
            ChannelReading(
                channel=channel,
                actual=state(sts[key], texts),
                power_w=_per_channel(meter.get(names["power"]), channel, single) or 0.0,
                voltage_v=_per_channel(meter.get("Voltage"), channel, shared=True) or 0.0,
                current_a=_per_channel(meter.get("Current"), channel, single) or 0.0,
                power_factor=_per_channel(meter.get("Factor"), channel, single) or 0.0,
                energy_wh=None if energy_kwh is None else energy_kwh * WH_PER_KWH,
            )
        )
    return readings


class TasmotaDriver(HttpDriver):
    name: ClassVar[str] = "tasmota"
    tried: ClassVar[str] = "Tasmota (GET /cm?cmnd=Status 0)"
    _texts: tuple[str, str] | None = None

    async def _command(self, command: str) -> dict[str, Any]:
        params = {"cmnd": command}
        if self.password is not None:
            params |= {"user": self.username or AUTH_USER, "password": self.password}
        reply = await self.http.request("GET", "/cm", params=params, what=f"/cm {command}")
        body = reply.object()
        if "WARNING" in body:
            raise DeviceAuthError(f"{reply.where}: {body['WARNING']}")
        return body

    async def _status0(self) -> dict[str, Any]:
        status = await self._command("Status 0")
        if "StatusSTS" not in status:
            raise UnsupportedDevice(f"{self.url}/cm Status 0: no StatusSTS, not Tasmota")
        return status

    async def _state_texts(self) -> tuple[str, str]:
        if self._texts is None:
            off = await self._command("StateText1")
            on = await self._command("StateText2")
            self._texts = (
                str(off.get("StateText1", DEFAULT_TEXTS[0])),
                str(on.get("StateText2", DEFAULT_TEXTS[1])),
            )
        return self._texts

    async def connect(self) -> DeviceInfo:
        info = parse_status0(await self._status0(), self.url)
        await self._state_texts()
        return info

    async def read(self) -> list[ChannelReading]:
        texts = await self._state_texts()
        status = await self._status0()
        with expect_shape(f"{self.url}/cm Status 0"):
            # A relay without sensors still answers StatusSNS, with only its Time.
            return parse_readings(status.get("StatusSNS", {}), status["StatusSTS"], texts)

    async def _power(self, channel: int, argument: str = "") -> ActualState:
        relay = channel + 1
        body = await self._command(f"Power{relay} {argument}".strip())
        # A single-relay device answers POWER, not POWER1 (unless SetOption26 is on).
        text = body.get(f"POWER{relay}", body.get("POWER") if relay == 1 else None)
        if text is None:
            raise BadChannel(f"{self.url}: no relay Power{relay} (answer: {body})")
        return state(str(text), await self._state_texts())

    async def _set(self, channel: int, on: bool) -> None:
        await self._power(channel, "On" if on else "Off")

    async def switch_on_for(self, channel: int, seconds: float) -> ActualState:
        """``PulseTime<n>`` switches the relay off that long after each ``Power<n> On``; an On
        while on starts it again. It stays set, so a hand-switched ON also goes off."""

        async def command() -> None:
            relay = channel + 1
            body = await self._command(f"PulseTime{relay} {pulse_time_code(seconds)}")
            if f"PulseTime{relay}" not in body:
                raise BadChannel(f"{self.url}: no PulseTime{relay} (answer: {body})")
            await self._power(channel, "On")

        return await self._switched(channel, True, command)

    async def _state(self, channel: int) -> ActualState:
        return await self._power(channel)
