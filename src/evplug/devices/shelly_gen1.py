"""Shelly Gen1 (Plug S, 1PM …): plain REST, ``/shelly``, ``/status``, ``/relay/N``.

Polled over HTTP only; the CoIoT push channel is multicast and stays off. Optional HTTP basic
auth covers every endpoint except ``/shelly``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from evplug.devices.base import (
    ActualState,
    BadChannel,
    ChannelReading,
    DeviceInfo,
    UnsupportedDevice,
)
from evplug.devices.http_driver import DeviceHttp, HttpDriver, expect_shape, mac_hex

# Plug S and 1PM measure power only; the current the state machine watches is estimated from it
# at European mains voltage, the market these models are sold for.
ESTIMATE_AT_V = 230.0
AUTH_USER = "admin"  # the usual Gen1 login; the site config may name another
WATT_MINUTES_PER_WH = 60.0


def parse_shelly(shelly: dict[str, Any], address: str) -> DeviceInfo:
    """``GET /shelly`` of a Gen1 device (Gen2+ devices carry a ``gen`` key)."""
    with expect_shape(f"{address}/shelly"):
        if "gen" in shelly or "type" not in shelly:
            raise UnsupportedDevice(f"{address}/shelly: not a Gen1 Shelly")
        return DeviceInfo(
            family="shelly",
            model=str(shelly["type"]),
            hardware_id=mac_hex(shelly["mac"]),
            channels=int(shelly.get("num_outputs", 1)),
            address=address,
            firmware=str(shelly.get("fw", "")),
        )


def relay_actual(relay: dict[str, Any], overtemperature: bool = False) -> ActualState:
    if relay.get("overpower") or overtemperature:
        return ActualState.OVERCURRENT
    return ActualState.ON if relay["ison"] else ActualState.OFF


def parse_status(status: dict[str, Any]) -> list[ChannelReading]:
    """``GET /status``: ``relays[n]`` with ``meters[n]`` (counters in watt-minutes)."""
    meters = status.get("meters", [])
    hot = bool(status.get("overtemperature", False))
    readings = []
    for channel, relay in enumerate(status["relays"]):
        meter = meters[channel] if channel < len(meters) else {}
        power = float(meter.get("power", 0.0))
        total = meter.get("total")
        readings.append(
            ChannelReading(
                channel=channel,
                actual=relay_actual(relay, hot),
                power_w=power,
                voltage_v=0.0,  # not measured
                current_a=power / ESTIMATE_AT_V,
                power_factor=0.0,  # not measured
                energy_wh=None if total is None else float(total) / WATT_MINUTES_PER_WH,
            )
        )
    return readings


class ShellyGen1Driver(HttpDriver):
    name: ClassVar[str] = "shelly_gen1"
    tried: ClassVar[str] = "Shelly Gen1 (GET /shelly without gen)"

    def _make_http(self, url: str, timeout_s: float) -> DeviceHttp:
        auth = None if self.password is None else (self.username or AUTH_USER, self.password)
        return DeviceHttp(url, timeout_s, basic_auth=auth)

    async def _status(self) -> list[ChannelReading]:
        reply = await self.http.request("GET", "/status")
        with expect_shape(reply.where):
            return parse_status(reply.object())

    async def connect(self) -> DeviceInfo:
        info = parse_shelly((await self.http.request("GET", "/shelly")).object(), self.url)
        # /shelly is open even with login on; /status proves the credentials.
        await self._status()
        return info

    async def read(self) -> list[ChannelReading]:
        return await self._status()

    async def _relay(self, channel: int, params: dict[str, str] | None = None) -> ActualState:
        reply = await self.http.request("GET", f"/relay/{channel}", params=params)
        if reply.status == 404:
            raise BadChannel(f"{reply.where}: no such relay")
        with expect_shape(reply.where):
            return relay_actual(reply.object())

    async def _set(self, channel: int, on: bool) -> None:
        await self._relay(channel, {"turn": "on" if on else "off"})

    async def switch_on_for(self, channel: int, seconds: float) -> ActualState:
        """``timer`` flips the relay back (off) that many whole seconds after this request."""
        timer = str(max(round(seconds), 1))
        return await self._switched(
            channel, True, lambda: self._relay(channel, {"turn": "on", "timer": timer})
        )

    async def _state(self, channel: int) -> ActualState:
        return await self._relay(channel)
