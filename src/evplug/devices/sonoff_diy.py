"""Sonoff DIY mode (unencrypted eWeLink LAN): JSON ``POST /zeroconf/<path>`` on port 8081.

Single-outlet devices switch with ``switch``, multi-outlet ones (MINIR3, strips, SPM-Main) with
``switches``. Errors come back as HTTP 200 with an ``error`` code in the body. An SPM-Main adds
per-outlet meter fields in hundredths (``actPow_00`` = outlet 0 in 0.01 W); DIY mode reports no
cumulative energy counter, so ``energy_wh`` is ``None`` and the mothership integrates power.
The hardware id is the eWeLink ``deviceid``: DIY mode does not reveal the MAC.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from evplug.devices.base import (
    ActualState,
    BadChannel,
    ChannelReading,
    DeviceAuthError,
    DeviceError,
    DeviceInfo,
    UnsupportedDevice,
)
from evplug.devices.http_driver import DeviceHttp, HttpDriver, expect_shape

DIY_PORT = 8081
HUNDREDTHS = 100.0
ERRORS: dict[int, tuple[type[DeviceError], str]] = {
    400: (DeviceError, "bad request"),
    401: (DeviceAuthError, "encryption is on (eWeLink LAN mode); only DIY mode is supported"),
    404: (UnsupportedDevice, "deviceid not supported"),
    # The only parameter we vary is the outlet.
    422: (BadChannel, "invalid parameters (no such outlet?)"),
}


def info_data(body: dict[str, Any]) -> dict[str, Any]:
    """``info`` reply data; fw 3.3.0 (protocol 1.4) sends it as a JSON-encoded string."""
    data = body["data"]
    return json.loads(data) if isinstance(data, str) else data


def outlet_states(data: dict[str, Any]) -> list[str]:
    if "switches" in data:
        ordered = sorted(data["switches"], key=lambda entry: int(entry["outlet"]))
        return [str(entry["switch"]) for entry in ordered]
    return [str(data["switch"])]


def tripped_outlets(data: dict[str, Any]) -> set[int]:
    """SPM-Main ``faultState``: outlets its overload protection switched off (``overloadTrig``),
    or all of them when it reports over-temperature. ``overLimit`` is a warning, not a trip."""
    fault = data.get("faultState", {})
    if any(fault.get("overTemp", [])):
        return set(range(len(outlet_states(data))))
    return {int(entry["outlet"]) for entry in fault.get("overloadTrig", [])}


def parse_info(data: dict[str, Any], address: str) -> DeviceInfo:
    with expect_shape(f"{address}/zeroconf/info"):
        channels = len(outlet_states(data))
        # The info reply names no model; the TXT "type" would, but the shape says enough.
        if "actPow_00" in data:
            model = "diy_meter"
        elif "switches" in data:
            model = "diy_multi_outlet"
        else:
            model = "diy_plug"
        return DeviceInfo(
            family="sonoff",
            model=model,
            hardware_id=str(data["deviceid"]).lower(),
            channels=channels,
            address=address,
            firmware=str(data.get("fwVersion", "")),
        )


def outlet_actual(data: dict[str, Any], outlet: int) -> ActualState:
    if outlet in tripped_outlets(data):
        return ActualState.OVERCURRENT
    return ActualState.ON if outlet_states(data)[outlet] == "on" else ActualState.OFF


def parse_readings(data: dict[str, Any]) -> list[ChannelReading]:
    readings = []
    for outlet in range(len(outlet_states(data))):

        def meter(name: str, outlet: int = outlet) -> float:
            return float(data.get(f"{name}_{outlet:02d}", 0)) / HUNDREDTHS

        power, apparent = meter("actPow"), meter("apparentPow")
        readings.append(
            ChannelReading(
                channel=outlet,
                actual=outlet_actual(data, outlet),
                power_w=power,
                voltage_v=meter("voltage"),
                current_a=meter("current"),
                power_factor=min(abs(power) / apparent, 1.0) if apparent > 0 else 0.0,
                energy_wh=None,
            )
        )
    return readings


class SonoffDiyDriver(HttpDriver):
    name: ClassVar[str] = "sonoff_diy"
    tried: ClassVar[str] = "Sonoff DIY (POST /zeroconf/info, port 8081 unless given)"
    # The device serves one connection at a time and resets callers that come too fast.
    request_gap_s: ClassVar[float] = 0.2
    _multi_outlet: bool | None = None

    def _make_http(self, url: str, timeout_s: float) -> DeviceHttp:
        parts = urlsplit(url)
        if parts.port is None:
            url = urlunsplit(parts._replace(netloc=f"{parts.netloc}:{DIY_PORT}"))
        return DeviceHttp(url, timeout_s, min_gap_s=self.request_gap_s, keep_alive=False)

    async def _post(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        reply = await self.http.request(
            "POST", f"/zeroconf/{path}", json_body={"deviceid": "", "data": data}
        )
        body = reply.object()
        with expect_shape(reply.where):
            error = int(body["error"])
        if error != 0:
            kind, meaning = ERRORS.get(error, (DeviceError, "unknown error"))
            raise kind(f"{reply.where}: error {error}: {meaning}")
        return body

    async def _info(self) -> dict[str, Any]:
        body = await self._post("info", {})
        with expect_shape(f"{self.url}/zeroconf/info"):
            data = info_data(body)
        self._multi_outlet = "switches" in data
        return data

    async def connect(self) -> DeviceInfo:
        return parse_info(await self._info(), self.url)

    async def read(self) -> list[ChannelReading]:
        data = await self._info()
        with expect_shape(f"{self.url}/zeroconf/info"):
            return parse_readings(data)

    async def _set(self, channel: int, on: bool) -> None:
        word = "on" if on else "off"
        if self._multi_outlet is None:
            await self._info()
        if self._multi_outlet:
            await self._post("switches", {"switches": [{"switch": word, "outlet": channel}]})
        elif channel == 0:
            await self._post("switch", {"switch": word})
        else:
            raise BadChannel(f"{self.url}: a single-outlet device has no outlet {channel}")

    async def _state(self, channel: int) -> ActualState:
        data = await self._info()
        with expect_shape(f"{self.url}/zeroconf/info"):
            if channel >= len(outlet_states(data)):
                raise BadChannel(f"{self.url}: no outlet {channel}")
            return outlet_actual(data, channel)
