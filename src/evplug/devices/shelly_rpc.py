"""Shelly Gen2+ (Plus, Pro, Gen3, Gen4): JSON-RPC 2.0 frames over ``POST /rpc``.

Identity comes from ``GET /shelly`` (open even with auth on); readings from one
``Shelly.GetStatus`` so all channels of a Pro 4PM are read in one round trip at one instant.
Digest auth (SHA-256, user ``admin``) is answered by aiohttp's digest middleware.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from evplug.devices.base import (
    ActualState,
    BadChannel,
    ChannelReading,
    DeviceAuthError,
    DeviceError,
    DeviceInfo,
    UnsupportedDevice,
)
from evplug.devices.http_driver import (
    DeviceHttp,
    HttpDriver,
    expect_shape,
    mac_hex,
)

AUTH_USER = "admin"  # the only user a Gen2+ device knows
SRC = "evplug"
TRIP_ERRORS = frozenset({"overpower", "overtemp", "overvoltage"})
NO_SUCH_ID = -105
AUTH_REQUIRED = 401
UNKNOWN_METHOD = (404, -114)


def parse_device_info(shelly: dict[str, Any], address: str, channels: int) -> DeviceInfo:
    """``GET /shelly`` or ``Shelly.GetDeviceInfo`` of a Gen2+ device."""
    with expect_shape(f"{address}/shelly"):
        if int(shelly.get("gen", 1)) < 2:
            raise UnsupportedDevice(f"{address}/shelly: no gen >= 2, not a Shelly RPC device")
        return DeviceInfo(
            family="shelly",
            model=str(shelly["model"]),
            hardware_id=mac_hex(shelly["mac"]),
            channels=channels,
            address=address,
            firmware=str(shelly.get("ver", "")),
        )


def switch_ids(status: dict[str, Any]) -> list[int]:
    """Channel ids from ``Shelly.GetStatus`` component keys ``switch:0`` … ``switch:N``."""
    return sorted(int(key.split(":", 1)[1]) for key in status if key.startswith("switch:"))


def switch_actual(switch: dict[str, Any]) -> ActualState:
    if TRIP_ERRORS.intersection(switch.get("errors", ())):
        return ActualState.OVERCURRENT
    return ActualState.ON if switch["output"] else ActualState.OFF


def parse_switch_status(switch: dict[str, Any]) -> ChannelReading:
    """One ``Switch.GetStatus`` result; unmetered relays have only ``id/source/output``."""
    power = float(switch.get("apower", 0.0))
    voltage = float(switch.get("voltage", 0.0))
    current = float(switch.get("current", 0.0))
    if "pf" in switch:
        pf = abs(float(switch["pf"]))
    else:
        # Plus Plug S and Plus 1PM omit pf; derive it from what they do report.
        pf = min(abs(power) / (voltage * current), 1.0) if voltage * current > 0 else 0.0
    energy = switch.get("aenergy", {}).get("total")
    return ChannelReading(
        channel=int(switch["id"]),
        actual=switch_actual(switch),
        power_w=power,
        voltage_v=voltage,
        current_a=current,
        power_factor=pf,
        energy_wh=None if energy is None else float(energy),
    )


def frame_result(frame: dict[str, Any], where: str) -> Any:
    """The ``result`` of an RPC response frame, or its ``error`` as a ``DeviceError``."""
    if "error" in frame:
        with expect_shape(where):
            code, message = int(frame["error"]["code"]), str(frame["error"]["message"])
        if code == NO_SUCH_ID:
            raise BadChannel(f"{where}: {message}")
        if code == AUTH_REQUIRED:
            # Over frame channels the challenge arrives as an error, its message a JSON string.
            raise DeviceAuthError(f"{where}: authentication required or rejected")
        if code in UNKNOWN_METHOD:
            raise UnsupportedDevice(f"{where}: {message}")
        raise DeviceError(f"{where}: RPC error {code}: {message}")
    if "result" not in frame:
        raise UnsupportedDevice(f"{where}: not an RPC response frame")
    return frame["result"]


class ShellyRpcDriver(HttpDriver):
    name: ClassVar[str] = "shelly_rpc"
    tried: ClassVar[str] = "Shelly Gen2+ (GET /shelly with gen >= 2)"

    _last_id = 0  # JSON-RPC frame ids, per driver instance once the first frame is sent

    def _make_http(self, url: str, timeout_s: float) -> DeviceHttp:
        digest = (self.username or AUTH_USER, self.password) if self.password else None
        return DeviceHttp(url, timeout_s, digest=digest)

    async def _rpc(self, method: str, **params: Any) -> Any:
        self._last_id += 1
        frame = {"id": self._last_id, "src": SRC, "method": method, "params": params}
        reply = await self.http.request("POST", "/rpc", json_body=frame, what=f"/rpc {method}")
        return frame_result(reply.object(), reply.where)

    async def _status(self) -> dict[str, Any]:
        status = await self._rpc("Shelly.GetStatus")
        if not isinstance(status, dict):
            raise UnsupportedDevice(f"{self.url}/rpc Shelly.GetStatus: not an object")
        return status

    async def connect(self) -> DeviceInfo:
        shelly = (await self.http.request("GET", "/shelly")).object()
        info = parse_device_info(shelly, self.url, channels=0)
        # GetStatus needs auth when it is on, so this also checks the configured password.
        status = await self._status()
        with expect_shape(f"{self.url}/rpc Shelly.GetStatus"):
            channels = len(switch_ids(status))
        if channels == 0:
            raise UnsupportedDevice(f"{self.url}: a Shelly {info.model} without switch outputs")
        return replace(info, channels=channels)

    async def read(self) -> list[ChannelReading]:
        status = await self._status()
        with expect_shape(f"{self.url}/rpc Shelly.GetStatus"):
            return [parse_switch_status(status[f"switch:{i}"]) for i in switch_ids(status)]

    async def _set(self, channel: int, on: bool) -> None:
        await self._rpc("Switch.Set", id=channel, on=on)

    async def _state(self, channel: int) -> ActualState:
        result = await self._rpc("Switch.GetStatus", id=channel)
        with expect_shape(f"{self.url}/rpc Switch.GetStatus"):
            return switch_actual(result)
