"""Tasmota emulator: ``GET /cm?cmnd=…`` with ``Status`` 0/1/2/5/8/10/11, ``Power<n>`` and
``StateText<n>``; always HTTP 200, a ``WARNING`` body for missing or wrong credentials.

Meters under ``ENERGY`` (arrays per channel, with SetOption129 on so ``Total`` is per channel
too) or, for the Sonoff SPM, under ``SPM``. A single relay answers ``POWER``, several
``POWER1..n``. An out-of-range ``Power<n>`` answers ``{"Command":"Unknown"}`` (the reference
leaves this open). Tasmota has no overload flag in its JSON: a trip just switches the relay off.
``PulseTime<n> [code]`` sets relay n's auto-off (code 1..111: tenths of a second; 112..64900:
code - 100 seconds; 0: none); every switch on, by command or button, starts it again.
``Power0`` (all relays) and ``Backlog`` are not emulated.
"""

from __future__ import annotations

import hmac
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from zeroconf import ServiceInfo

from evplug.clock import Clock
from evplug.devices.car import Socket
from evplug.devices.emulators.device import EmulatedDevice, service

AUTH_USER = "admin"
AUTH_WARNING = {"WARNING": "Need user=<username>&password=<password>"}
UNKNOWN = {"Command": "Unknown"}
COMMAND = re.compile(r"^([A-Za-z]+)(\d*)\s*(.*)$")
# "Status <n>" -> section; "Status 10" replaced 8 and both still answer.
STATUS_SECTIONS = {
    "": "Status",
    "1": "StatusPRM",
    "2": "StatusFWR",
    "3": "StatusLOG",
    "4": "StatusMEM",
    "5": "StatusNET",
    "6": "StatusMQT",
    "7": "StatusTIM",
    "8": "StatusSNS",
    "10": "StatusSNS",
    "11": "StatusSTS",
}
PULSE_TENTHS_MAX, PULSE_CODE_MAX = 111, 64_900
ON_WORDS, OFF_WORDS, TOGGLE_WORDS = {"on", "1", "true"}, {"off", "0", "false"}, {"toggle", "2"}


@dataclass(frozen=True, slots=True)
class TasmotaModel:
    description: str
    channels: int
    device_name: str
    spm: bool = False  # meters under "SPM" (Sonoff SPM) instead of "ENERGY"
    version: str = "14.3.0(tasmota32)"
    hardware: str = "ESP32-D0WD-V3"

    def build(self, clock: Clock, mac: str, password: str | None) -> TasmotaEmulator:
        return TasmotaEmulator(self, clock, mac, password)


MODELS: dict[str, TasmotaModel] = {
    "tasmota-plug": TasmotaModel(
        "Tasmota plug (1 metered relay, ENERGY scalars)", channels=1, device_name="Tasmota Plug"
    ),
    "tasmota-4ch": TasmotaModel(
        "Tasmota 4-relay board (4 metered relays, ENERGY arrays, SetOption129 1)",
        channels=4,
        device_name="Tasmota 4CH",
    ),
    "sonoff-spm": TasmotaModel(
        "Sonoff SPM-Main + one SPM-4Relay under Tasmota (4 metered relays, SPM arrays)",
        channels=4,
        device_name="Sonoff SPM",
        spm=True,
    ),
}


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000))


def _uptime(seconds: int) -> str:
    days, rest = divmod(seconds, 86_400)
    return f"{days}T{time.strftime('%H:%M:%S', time.gmtime(rest))}"


def _apparent(socket: Socket) -> tuple[float, float]:
    """Apparent and reactive power of a socket's load."""
    apparent = socket.voltage_v * socket.current_a
    return apparent, math.sqrt(max(apparent**2 - socket.power_w**2, 0.0))


class TasmotaEmulator(EmulatedDevice):
    family = "tasmota"

    def __init__(self, spec: TasmotaModel, clock: Clock, mac: str, password: str | None) -> None:
        super().__init__(spec.channels, clock, mac, password)
        self.spec = spec
        # StateText1..4; a test may rename them, as a user can on a real device.
        self.state_texts = ["OFF", "ON", "TOGGLE", "HOLD"]
        self.pulse_codes = [0] * spec.channels
        self.hostname = f"tasmota-{mac[-6:].upper()}-{int(mac[-4:], 16) & 0x1FFF:04d}"

    # --- JSON shapes ------------------------------------------------------------------------

    def _power_key(self, relay: int) -> str:
        return "POWER" if self.spec.channels == 1 else f"POWER{relay}"

    def _power_text(self, channel: int) -> str:
        return self.state_texts[int(self.sockets[channel].relay_on)]

    def sts(self) -> dict[str, Any]:
        uptime = self.uptime_s()
        sts: dict[str, Any] = {
            "Time": _iso(self.clock.now_ms()),
            "Uptime": _uptime(uptime),
            "UptimeSec": uptime,
            "Heap": 146,
            "SleepMode": "Dynamic",
            "Sleep": 50,
            "LoadAvg": 19,
            "MqttCount": 0,
        }
        sts |= {self._power_key(c + 1): self._power_text(c) for c in range(self.spec.channels)}
        sts["Wifi"] = {
            "AP": 1,
            "SSId": "evplug",
            "BSSId": "DC:15:C8:EB:3E:B8",
            "Channel": 7,
            "Mode": "HT40",
            "RSSI": 46,
            "Signal": -77,
            "LinkCount": 1,
            "Downtime": "0T00:00:03",
        }
        return sts

    def _energy(self) -> dict[str, Any]:
        sockets = self.sockets

        def values(of: list[float], digits: int) -> Any:
            rounded = [round(v, digits) if digits else round(v) for v in of]
            return rounded[0] if len(rounded) == 1 else rounded

        totals = [s.energy_wh / 1000 for s in sockets]
        apparent = [_apparent(s) for s in sockets]
        return {
            "TotalStartTime": _iso(self.boot_ms),
            "Total": values(totals, 3),
            "Yesterday": values([0.0] * len(sockets), 3),
            "Today": values(totals, 3),
            "Power": values([s.power_w for s in sockets], 0),
            "ApparentPower": values([a for a, _ in apparent], 0),
            "ReactivePower": values([r for _, r in apparent], 0),
            "Factor": values([s.power_factor for s in sockets], 2),
            # One mains supply: Tasmota reports a common voltage as one number.
            "Voltage": round(sockets[0].voltage_v),
            "Current": values([s.current_a for s in sockets], 3),
        }

    def _spm(self) -> dict[str, Any]:
        sockets = self.sockets
        apparent = [_apparent(s) for s in sockets]
        energy = [round(s.energy_wh / 1000, 2) for s in sockets]
        return {
            "Energy": energy,
            "Yesterday": [0.0] * len(sockets),
            "Today": energy,
            "ActivePower": [round(s.power_w, 1) for s in sockets],
            "ApparentPower": [round(a, 1) for a, _ in apparent],
            "ReactivePower": [round(r, 1) for _, r in apparent],
            "Factor": [round(s.power_factor, 2) for s in sockets],
            "Voltage": [round(s.voltage_v, 2) for s in sockets],
            "Current": [round(s.current_a, 2) for s in sockets],
        }

    def sns(self) -> dict[str, Any]:
        sns: dict[str, Any] = {"Time": _iso(self.clock.now_ms())}
        if self.spec.spm:
            sns |= {"ESP32": {"Temperature": 53.3}, "SPM": self._spm()}
        else:
            sns["ENERGY"] = self._energy()
        return sns

    def sections(self) -> dict[str, dict[str, Any]]:
        """Every ``Status 0`` section by name, in the device's order."""
        names = [self.spec.device_name] + [
            f"{self.spec.device_name}{i}" for i in range(2, self.spec.channels + 1)
        ]
        power_bits = sum(int(s.relay_on) << i for i, s in enumerate(self.sockets))
        return {
            "Status": {
                "Module": 0,
                "DeviceName": self.spec.device_name,
                "FriendlyName": names,
                "Topic": f"tasmota_{self.mac[-6:].upper()}",
                "ButtonTopic": "0",
                "Power": power_bits,
                "PowerOnState": 3,
                "LedState": 1,
                "SaveData": 1,
                "SaveState": 1,
            },
            "StatusPRM": {"Baudrate": 115200, "GroupTopic": "tasmotas", "BootCount": self.reboots},
            "StatusFWR": {
                "Version": self.spec.version,
                "BuildDateTime": "2024-10-17T12:00:00",
                "Core": "3_1_0",
                "SDK": "5.1.4",
                "CpuFrequency": 240,
                "Hardware": self.spec.hardware,
            },
            "StatusLOG": {"SerialLog": 0, "WebLog": 2, "MqttLog": 0, "SysLog": 0},
            "StatusMEM": {"ProgramSize": 1796, "Free": 1088, "Heap": 146},
            "StatusNET": {
                "Hostname": self.hostname,
                "IPAddress": self.ip,
                "Mac": ":".join(self.mac[i : i + 2] for i in range(0, 12, 2)).upper(),
                "Webserver": 2,
                "HTTP_API": 1,
            },
            "StatusMQT": {"MqttHost": "", "MqttPort": 1883, "MqttClient": f"DVES_{self.mac[-6:]}"},
            "StatusTIM": {"UTC": _iso(self.clock.now_ms()), "Timezone": "+00:00"},
            "StatusSNS": self.sns(),
            "StatusSTS": self.sts(),
        }

    # --- commands ---------------------------------------------------------------------------

    def status(self, argument: str) -> dict[str, Any]:
        sections = self.sections()
        if argument == "0":
            return sections
        if argument in STATUS_SECTIONS:
            name = STATUS_SECTIONS[argument]
            return {name: sections[name]}
        return UNKNOWN

    def power(self, index: str, argument: str) -> dict[str, Any]:
        relay = int(index or "1")
        if not 1 <= relay <= self.spec.channels:
            return UNKNOWN
        channel, word = relay - 1, argument.lower()
        if word in ON_WORDS | OFF_WORDS | TOGGLE_WORDS:
            on = word in ON_WORDS or (word in TOGGLE_WORDS and not self.sockets[channel].relay_on)
            self.set_relay(channel, on)
        elif word:
            return UNKNOWN
        return {self._power_key(relay): self._power_text(channel)}

    def set_relay(self, channel: int, on: bool, flip_after_s: float | None = None) -> None:
        # Decoded here on its own, not with the driver's encoder, so a test can catch either.
        code = self.pulse_codes[channel]
        pulse_s = code / 10 if code <= PULSE_TENTHS_MAX else code - 100
        super().set_relay(channel, on, flip_after_s or (pulse_s if on and code else None))

    def pulse_time(self, index: str, argument: str) -> dict[str, Any]:
        relay = int(index or "1")
        if not 1 <= relay <= self.spec.channels:
            return UNKNOWN
        channel = relay - 1
        if argument:
            if not argument.isdigit() or int(argument) > PULSE_CODE_MAX:
                return UNKNOWN
            self.pulse_codes[channel] = int(argument)
            self._set_timer(channel, None)  # a new setting stops the running pulse
        timer = self.timers[channel]
        remaining = 0.0 if timer is None else timer.remaining_s(self.clock.now_ms())
        code = (
            round(remaining * 10) if remaining <= PULSE_TENTHS_MAX / 10 else round(remaining) + 100
        )
        return {f"PulseTime{relay}": {"Set": self.pulse_codes[channel], "Remaining": code}}

    def state_text(self, index: str) -> dict[str, Any]:
        if index not in ("1", "2", "3", "4"):
            return UNKNOWN
        return {f"StateText{index}": self.state_texts[int(index) - 1]}

    def command(self, text: str) -> dict[str, Any]:
        match = COMMAND.match(text.strip())
        if match is None:
            return UNKNOWN
        name, index, argument = match[1].lower(), match[2], match[3].strip()
        if name == "status" and not index:
            return self.status(argument)
        if name == "power":
            return self.power(index, argument)
        if name == "pulsetime":
            return self.pulse_time(index, argument)
        if name == "statetext" and not argument:
            return self.state_text(index)
        return UNKNOWN

    # --- HTTP -------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/cm", self._cm)]

    async def _cm(self, request: web.Request) -> web.Response:
        if self.password is not None and not (
            request.query.get("user") == AUTH_USER
            and hmac.compare_digest(request.query.get("password", ""), self.password)
        ):
            return web.json_response(AUTH_WARNING)
        return web.json_response(self.command(request.query.get("cmnd", "")))

    def services(self, address: str, port: int) -> list[ServiceInfo]:
        # Only with SetOption55 1 on a USE_DISCOVERY build; the TXT key is from forks.
        return [
            service("_http._tcp.local.", self.hostname, address, port, {"devicetype": "tasmota"})
        ]
