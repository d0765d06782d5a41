"""Sonoff DIY-mode emulator: JSON ``POST /zeroconf/<path>``, errors as codes in HTTP 200 bodies.

``info``, ``switch`` (single outlet), ``switches`` (multi-outlet) and ``signal_strength``;
``seq`` counts state changes and restarts at boot. The SPM-Main model adds the per-outlet meter
fields of the reference (hundredths) and ``faultState``; the reference has no captured ``info``
reply of an SPM-Main, so that reply is the documented field set plus the common info fields.
With a password the emulator acts as an encrypted (eWeLink LAN mode) device: every plain
request gets error 401. Encrypted requests themselves, and "one connection at a time", are not
emulated. The mDNS TXT record carries ``data1..4`` split into 249-byte chunks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from zeroconf import ServiceInfo

from evplug.clock import Clock
from evplug.devices.emulators.device import EmulatedDevice, service

TXT_CHUNK = 249
TXT_CHUNKS = 4
OK, BAD_REQUEST, UNAUTHORIZED, INVALID = 0, 400, 401, 422
# Protection settings as the SPM-Main reports them (hundredths); only max current 20 A is on.
OVERLOAD_SETTINGS = {
    "minAP": {"en": 0, "val": 10},
    "maxAP": {"en": 0, "val": 440000},
    "minV": {"en": 0, "val": 10},
    "maxV": {"en": 0, "val": 24000},
    "maxC": {"en": 1, "val": 2000},
    "delayTime": 0,
}


@dataclass(frozen=True, slots=True)
class DiyModel:
    description: str
    channels: int
    txt_type: str
    metered: bool = False
    fw: str = "3.6.0"

    def build(self, clock: Clock, mac: str, password: str | None) -> SonoffDiyEmulator:
        return SonoffDiyEmulator(self, clock, mac, password)


MODELS: dict[str, DiyModel] = {
    "sonoff-diy-basicr3": DiyModel(
        "Sonoff BASICR3 in DIY mode (1 unmetered outlet, port 8081)",
        channels=1,
        txt_type="diy_plug",
    ),
    "sonoff-diy-spm": DiyModel(
        "Sonoff SPM-Main + one 4Relay in DIY mode (4 metered outlets, no energy counter)",
        channels=4,
        txt_type="diy_meter",
        metered=True,
        fw="1.2.0",
    ),
}


def txt_records(state: dict[str, Any]) -> dict[str, str]:
    """``data1..data4``: the state JSON in 249-byte chunks (a TXT string holds at most 255)."""
    text = json.dumps(state, separators=(",", ":"))
    chunks = [text[i : i + TXT_CHUNK] for i in range(0, len(text), TXT_CHUNK)][:TXT_CHUNKS]
    return {f"data{n}": chunk for n, chunk in enumerate(chunks, start=1)}


class SonoffDiyEmulator(EmulatedDevice):
    family = "sonoff"

    def __init__(self, spec: DiyModel, clock: Clock, mac: str, password: str | None) -> None:
        super().__init__(spec.channels, clock, mac, password)
        self.spec = spec
        self.device_id = f"10{mac[-8:]}"  # eWeLink ids are 10 hex digits
        self.seq = 1

    @property
    def hardware_id(self) -> str:
        return self.device_id

    def reboot(self) -> None:
        super().reboot()
        self.seq = 1

    # --- JSON shapes ------------------------------------------------------------------------

    def _word(self, channel: int) -> str:
        return "on" if self.sockets[channel].relay_on else "off"

    def switch_state(self) -> dict[str, Any]:
        if self.spec.channels == 1:
            return {"switch": self._word(0)}
        return {
            "switches": [{"switch": self._word(c), "outlet": c} for c in range(self.spec.channels)]
        }

    def meters(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for c, socket in enumerate(self.sockets):
            apparent = socket.voltage_v * socket.current_a
            reactive = max(apparent**2 - socket.power_w**2, 0.0) ** 0.5
            fields |= {
                f"current_{c:02d}": round(socket.current_a * 100),
                f"voltage_{c:02d}": round(socket.voltage_v * 100),
                f"actPow_{c:02d}": round(socket.power_w * 100),
                f"reactPow_{c:02d}": round(reactive * 100),
                f"apparentPow_{c:02d}": round(apparent * 100),
                f"overload_{c:02d}": OVERLOAD_SETTINGS,
            }
        tripped = [c for c, socket in enumerate(self.sockets) if socket.overcurrent]
        fields["faultState"] = {
            "subDevCom": 0,
            "overloadTrig": [{"outlet": c, "rsn": [1]} for c in tripped],
            "cse7761Com": [0] * self.spec.channels,
            "overTemp": [0],
            "overLimit": [],
        }
        return fields

    def info(self) -> dict[str, Any]:
        data = self.switch_state()
        if self.spec.channels == 1:
            data |= {"startup": "stay", "pulse": "off", "pulseWidth": 500}
        if self.spec.metered:
            data |= self.meters()
        return data | {
            "ssid": "evplug",
            "otaUnlock": False,
            "fwVersion": self.spec.fw,
            "deviceid": self.device_id,
            "bssid": "fc:ec:da:81:c:98",
            "signalStrength": -61,
        }

    # --- HTTP -------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/zeroconf/{path}", self._zeroconf)]

    def _reply(self, error: int, data: dict[str, Any] | None = None) -> web.Response:
        body: dict[str, Any] = {"seq": self.seq, "error": error}
        if data is not None:
            body["data"] = data
        return web.json_response(body)

    def _valid(self, channel: Any, word: Any) -> bool:
        return (
            word in ("on", "off") and isinstance(channel, int) and 0 <= channel < self.spec.channels
        )

    def _apply(self, changes: list[tuple[Any, Any]]) -> int:
        # All or nothing: one bad entry and the device changes no outlet.
        if not changes or not all(self._valid(channel, word) for channel, word in changes):
            return INVALID
        for channel, word in changes:
            if self.sockets[channel].relay_on != (word == "on"):
                self.set_relay(channel, word == "on")
                self.seq += 1
        return OK

    def _switches(self, data: dict[str, Any]) -> int:
        entries = data.get("switches")
        if self.spec.channels == 1 or not isinstance(entries, list):
            return INVALID
        if not all(isinstance(entry, dict) for entry in entries):
            return INVALID
        return self._apply([(entry.get("outlet"), entry.get("switch")) for entry in entries])

    async def _zeroconf(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
            data = body["data"]
            if not isinstance(data, dict):
                raise TypeError(data)
        except (ValueError, KeyError, TypeError):
            return self._reply(BAD_REQUEST)
        if self.password is not None:
            return self._reply(UNAUTHORIZED)
        path = request.match_info["path"]
        if path == "info":
            return self._reply(OK, self.info())
        if path == "signal_strength":
            return self._reply(OK, {"signalStrength": -61})
        if path == "switch" and self.spec.channels == 1:
            return self._reply(self._apply([(0, data.get("switch"))]))
        if path == "switches":
            return self._reply(self._switches(data))
        raise web.HTTPNotFound()

    def services(self, address: str, port: int) -> list[ServiceInfo]:
        name = f"eWeLink_{self.device_id}"
        properties = {
            "txtvers": "1",
            "id": self.device_id,
            "type": self.spec.txt_type,
            "apivers": "1",
            "seq": str(self.seq),
        }
        state = self.switch_state() | (self.meters() if self.spec.metered else {})
        return [
            service("_ewelink._tcp.local.", name, address, port, properties | txt_records(state))
        ]
