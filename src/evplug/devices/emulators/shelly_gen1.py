"""Shelly Gen1 emulator: ``/shelly``, ``/status``, ``/relay/N``, ``/meter/N``.

Energy in watt-minutes (``total``, ``counters`` of the last three minutes), ``timestamp`` in
local time (the emulator's local time is UTC), HTTP basic auth on everything but ``/shelly``
when a password is set. ``/relay/N?turn=…&timer=S`` flips the relay back S seconds later
(``has_timer``/``timer_remaining`` meanwhile). ``/settings`` and CoIoT push are not emulated.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from zeroconf import ServiceInfo

from evplug.clock import Clock
from evplug.devices.emulators.device import EmulatedDevice, service

AUTH_USER = "admin"


@dataclass(frozen=True, slots=True)
class Gen1Model:
    description: str
    channels: int
    type_code: str
    hostname_prefix: str
    fw: str = "20230913-113421/v1.14.0-gcb84623"
    longid: bool = False  # hostname with the full MAC instead of its last 6 hex digits

    def build(self, clock: Clock, mac: str, password: str | None) -> ShellyGen1Emulator:
        return ShellyGen1Emulator(self, clock, mac, password)


MODELS: dict[str, Gen1Model] = {
    "shelly-plugs-gen1": Gen1Model(
        "Shelly Plug S (Gen1 REST, 1 metered channel)",
        channels=1,
        type_code="SHPLG-S",
        hostname_prefix="shellyplug-s",
    ),
}


class ShellyGen1Emulator(EmulatedDevice):
    family = "shelly"

    def __init__(self, spec: Gen1Model, clock: Clock, mac: str, password: str | None) -> None:
        super().__init__(spec.channels, clock, mac, password)
        self.spec = spec
        self.sources = ["input"] * spec.channels
        suffix = mac.upper() if spec.longid else mac[-6:].upper()
        self.hostname = f"{spec.hostname_prefix}-{suffix}"

    # --- JSON shapes ------------------------------------------------------------------------

    def shelly(self) -> dict[str, Any]:
        return {
            "type": self.spec.type_code,
            "mac": self.mac.upper(),
            "auth": self.password is not None,
            "fw": self.spec.fw,
            "discoverable": True,
            "longid": int(self.spec.longid),
            "num_outputs": self.spec.channels,
            "num_meters": self.spec.channels,
        }

    def relay(self, channel: int) -> dict[str, Any]:
        timer = self.timers[channel]
        return {
            "ison": self.sockets[channel].relay_on,
            "has_timer": timer is not None,
            "timer_started": 0 if timer is None else timer.started_ms // 1000,
            "timer_duration": 0 if timer is None else round(timer.duration_s),
            "timer_remaining": 0
            if timer is None
            else math.ceil(timer.remaining_s(self.clock.now_ms())),
            "overpower": self.sockets[channel].overcurrent,
            "source": self.sources[channel],
        }

    def meter(self, channel: int) -> dict[str, Any]:
        socket, now = self.sockets[channel], self.clock.now_ms()
        return {
            "power": round(socket.power_w, 2),
            "overpower": round(self.trip_power_w[channel], 2) if socket.overcurrent else 0.0,
            "is_valid": True,
            "timestamp": now // 1000,
            "counters": [round(wh * 60, 3) for wh in self.minutes[channel].last_three_wh(now)],
            "total": int(socket.energy_wh * 60),
        }

    def status(self) -> dict[str, Any]:
        now_s = self.clock.now_ms() // 1000
        celsius = round(24.0 + sum(s.power_w for s in self.sockets) / 300, 2)
        return {
            "wifi_sta": {"connected": True, "ssid": "evplug", "ip": self.ip, "rssi": -60},
            "cloud": {"enabled": False, "connected": False},
            "mqtt": {"connected": False},
            "time": time.strftime("%H:%M", time.gmtime(now_s)),
            "unixtime": now_s,
            "serial": 1,
            "has_update": False,
            "mac": self.mac.upper(),
            "cfg_changed_cnt": 0,
            "actions_stats": {"skipped": 0},
            "relays": [self.relay(i) for i in range(self.spec.channels)],
            "meters": [self.meter(i) for i in range(self.spec.channels)],
            "temperature": celsius,
            "overtemperature": False,
            "tmp": {"tC": celsius, "tF": round(celsius * 9 / 5 + 32, 2), "is_valid": True},
            "update": {"status": "idle", "has_update": False, "new_version": "", "old_version": ""},
            "ram_total": 52056,
            "ram_free": 40428,
            "fs_size": 233681,
            "fs_free": 166915,
            "uptime": self.uptime_s(),
        }

    # --- HTTP -------------------------------------------------------------------------------

    def _check_auth(self, request: web.Request) -> None:
        if self.password is None:
            return
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        if not (
            scheme.lower() == "basic"
            and user == AUTH_USER
            and hmac.compare_digest(password, self.password)
        ):
            raise web.HTTPUnauthorized(
                text="401 Unauthorized", headers={"WWW-Authenticate": 'Basic realm="shelly"'}
            )

    def _channel(self, request: web.Request) -> int:
        channel = int(request.match_info["channel"])
        if channel >= self.spec.channels:
            raise web.HTTPNotFound(text="Not Found")
        return channel

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/shelly", self._shelly),
            web.get("/status", self._status),
            web.get(r"/relay/{channel:\d+}", self._relay),
            web.get(r"/meter/{channel:\d+}", self._meter),
        ]

    async def _shelly(self, request: web.Request) -> web.Response:
        return web.json_response(self.shelly())

    async def _status(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        return web.json_response(self.status())

    async def _relay(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        channel = self._channel(request)
        turn = request.query.get("turn")
        if turn is not None:
            wanted = {"on": True, "off": False, "toggle": not self.sockets[channel].relay_on}
            if turn not in wanted:
                raise web.HTTPBadRequest(text="Bad turn!")
            try:
                timer = float(request.query.get("timer", "0"))
            except ValueError:
                raise web.HTTPBadRequest(text="Bad timer!") from None
            if not (math.isfinite(timer) and timer >= 0):
                raise web.HTTPBadRequest(text="Bad timer!")
            self.set_relay(channel, wanted[turn], timer or None)
            self.sources[channel] = "http"
        return web.json_response(self.relay(channel))

    async def _meter(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        return web.json_response(self.meter(self._channel(request)))

    def timer_ran_out(self, channel: int) -> None:
        self.sources[channel] = "timer"

    def services(self, address: str, port: int) -> list[ServiceInfo]:
        return [service("_http._tcp.local.", self.hostname, address, port, {})]
