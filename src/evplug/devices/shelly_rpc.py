"""Shelly Gen2+ (Plus, Pro, Gen3, Gen4): JSON-RPC 2.0 frames over ``POST /rpc`` and, once
someone subscribes, over the device's WebSocket.

Identity comes from ``GET /shelly`` (open even with auth on); readings from one
``Shelly.GetStatus`` so all channels of a Pro 4PM are read in one round trip at one instant.
Digest auth (SHA-256, user ``admin``) is answered by aiohttp's digest middleware over HTTP and by
``shelly_ws`` inside WebSocket frames.

With a subscriber, every call goes over the WebSocket while it is open, and the switches'
``NotifyStatus``/``NotifyFullStatus`` are merged into the last full status and handed on as
readings of the channels that changed. While the socket is down (or refused) calls go over HTTP,
so polling carries on; after each reconnect a full status is read and handed on whole.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any, ClassVar

import structlog

from evplug.devices.base import (
    ActualState,
    BadChannel,
    ChannelReading,
    DeviceAuthError,
    DeviceError,
    DeviceInfo,
    OnReadings,
    UnsupportedDevice,
)
from evplug.devices.http_driver import (
    DEFAULT_TIMEOUT_S,
    DeviceHttp,
    HttpDriver,
    expect_shape,
    mac_hex,
)
from evplug.devices.shelly_ws import RpcSocket, SocketClosed

log = structlog.get_logger(__name__)

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


def merge_status(into: dict[str, Any], changes: dict[str, Any]) -> None:
    """Overlay a ``NotifyStatus`` component onto the cached one; null removes a key."""
    for key, value in changes.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            merge_status(into[key], value)
        else:
            into[key] = value


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

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(url, username, password, timeout_s)
        self._last_id = 0  # JSON-RPC frame ids over HTTP
        self._on_readings: OnReadings | None = None
        self._socket: RpcSocket | None = None
        self._switches: dict[str, dict[str, Any]] = {}  # "switch:N" -> its last full status
        self.bad_notifications = 0

    def _make_http(self, url: str, timeout_s: float) -> DeviceHttp:
        digest = (self.username or AUTH_USER, self.password) if self.password else None
        return DeviceHttp(url, timeout_s, digest=digest)

    @property
    def pushing(self) -> bool:
        """The WebSocket is open: readings arrive as the device reports them."""
        return self._socket is not None and self._socket.ready

    def subscribe(self, on_readings: OnReadings) -> None:
        self._on_readings = on_readings
        if self._socket is None:
            self._socket = RpcSocket(
                self.url,
                # Notifications go to the src of the first frame: one per driver.
                src=f"{SRC}-{secrets.token_hex(4)}",
                user=self.username or AUTH_USER,
                password=self.password,
                timeout_s=self.http.timeout_s,
                on_open=self._socket_opened,
                on_notification=self._notified,
            )
            self._socket.start()

    async def _rpc(self, method: str, **params: Any) -> Any:
        if self._socket is not None and self._socket.ready:
            try:
                frame = await self._socket.call(method, params)
                return frame_result(frame, f"{self._socket.url} {method}")
            except SocketClosed as exc:
                # It reconnects by itself; this call goes over HTTP meanwhile. (A device that
                # stops answering is not asked again over HTTP: that would only double the wait.)
                log.info("shelly.ws_call_failed", error=str(exc), fallback="HTTP")
        self._last_id += 1
        frame = {"id": self._last_id, "src": SRC, "method": method, "params": params}
        reply = await self.http.request("POST", "/rpc", json_body=frame, what=f"/rpc {method}")
        return frame_result(reply.object(), reply.where)

    async def _socket_opened(self) -> None:
        """The first frame (it makes the device notify us), and a full status to start from:
        whatever changed while the socket was down is handed on at once."""
        assert self._socket is not None
        frame = await self._socket.call("Shelly.GetStatus", {})
        status = frame_result(frame, f"{self._socket.url} Shelly.GetStatus")
        if not isinstance(status, dict):
            raise UnsupportedDevice(f"{self._socket.url} Shelly.GetStatus: not an object")
        self._keep(status)
        self._hand_on(list(self._switches))

    def _keep(self, status: dict[str, Any]) -> None:
        self._switches = {
            key: value
            for key, value in status.items()
            if key.startswith("switch:") and isinstance(value, dict)
        }

    def _notified(self, method: str, params: Any) -> None:
        if not isinstance(params, dict):
            self._bad_notification(method, "params is not an object")
            return
        if method == "NotifyFullStatus":
            self._keep(params)
            self._hand_on(list(self._switches))
        elif method == "NotifyStatus":
            changed = [key for key in params if key in self._switches]
            if bad := [key for key in changed if not isinstance(params[key], dict)]:
                self._bad_notification(method, f"{', '.join(bad)} not an object")
                return
            for key in changed:
                merge_status(self._switches[key], params[key])
            self._hand_on(changed)

    def _hand_on(self, keys: list[str]) -> None:
        if not keys or self._on_readings is None:
            return
        try:
            with expect_shape(f"{self.url} notification"):
                readings = [parse_switch_status(self._switches[key]) for key in keys]
        except UnsupportedDevice as exc:
            self._bad_notification("NotifyStatus", str(exc))
            return
        self._on_readings(readings)

    def _bad_notification(self, method: str, why: str) -> None:
        self.bad_notifications += 1
        log.warning("shelly.bad_notification", url=self.url, method=method, why=why)

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
        self._keep(status)  # the full check also corrects what notifications built up
        with expect_shape(f"{self.url}/rpc Shelly.GetStatus"):
            return [parse_switch_status(status[f"switch:{i}"]) for i in switch_ids(status)]

    async def _set(self, channel: int, on: bool) -> None:
        await self._rpc("Switch.Set", id=channel, on=on)

    async def switch_on_for(self, channel: int, seconds: float) -> ActualState:
        """``toggle_after`` flips the output back (off) that many seconds after this call."""
        return await self._switched(
            channel,
            True,
            lambda: self._rpc("Switch.Set", id=channel, on=True, toggle_after=seconds),
        )

    async def _state(self, channel: int) -> ActualState:
        result = await self._rpc("Switch.GetStatus", id=channel)
        with expect_shape(f"{self.url}/rpc Switch.GetStatus"):
            return switch_actual(result)

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
            self._socket = None
        await super().close()
