"""Shelly Gen2+ emulator: ``/shelly``, JSON-RPC over ``POST /rpc`` (frames), over a WebSocket
on ``/rpc`` (frames and notifications) and ``GET|POST /rpc/<Method>`` (bare), SHA-256 digest auth
when a password is set.

Follows the reference's fidelity list: ``/shelly`` and ``Shelly.GetDeviceInfo`` stay open with
auth on; ``Switch.Set`` returns the previous state; ``aenergy.total`` is monotonic Wh with
``by_minute`` in mWh; ``pf``/``freq``/``ret_aenergy`` only on models that have them; a bad id is
-105. Bare-form errors use HTTP 400 (404 for an unknown method); the real status for -105 is not
confirmed. HTTP is one-shot (``Connection: close``) as on the device. ``Switch.Set`` takes
``toggle_after``: the output flips back that many seconds later (``source`` then reads
``timer``), and the switch status carries ``timer_started_at``/``timer_duration`` meanwhile.

Over the WebSocket, auth travels inside each frame (an ``auth`` object; a 401 error whose message
is the JSON challenge). Once a client's frame with a ``src`` has been answered, that client gets
``NotifyStatus`` frames carrying only the switch keys that changed (a key that went away is sent
as null): at once when a relay switches, trips or a car comes or goes, and at most every
``METER_NOTIFY_S`` while only the meter moves. Mains devices are not known to send
``NotifyFullStatus`` on a local connection (reference §7), so this one does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web
from zeroconf import ServiceInfo

from evplug.clock import Clock
from evplug.devices.emulators.device import MINUTE_MS, EmulatedDevice, service

AUTH_USER = "admin"
OPEN_METHODS = frozenset({"Shelly.GetDeviceInfo"})
KEPT_NONCES = 16
DIGEST_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]*))')
# Frame auth hashes a fixed HA2 (reference §1.7), there being no HTTP method or URI.
FRAME_HA2 = hashlib.sha256(b"dummy_method:dummy_uri").hexdigest()
METER_NOTIFY_S = 0.5  # wall seconds between meter-only notifications


@dataclass(frozen=True, slots=True)
class RpcModel:
    description: str
    channels: int
    model: str
    app: str
    id_prefix: str
    gen: int = 2
    ver: str = "1.4.4"
    fw_id: str = "20241011-114455/1.4.4-g6d2a586"
    pf_and_freq: bool = False  # Pro 4PM reports pf/freq; Plus Plug S and Plus 1PM do not
    returned_energy: bool = False  # bidirectional meters carry ret_aenergy
    inputs: int = 0
    ethernet: bool = False

    def build(self, clock: Clock, mac: str, password: str | None) -> ShellyRpcEmulator:
        return ShellyRpcEmulator(self, clock, mac, password)


MODELS: dict[str, RpcModel] = {
    "shelly-pro4pm": RpcModel(
        "Shelly Pro 4PM (Gen2 RPC, 4 metered channels)",
        channels=4,
        model="SPSW-004PE16EU",
        app="Pro4PM",
        id_prefix="shellypro4pm",
        pf_and_freq=True,
        returned_energy=True,
        inputs=4,
        ethernet=True,
    ),
    "shelly-plusplugs": RpcModel(
        "Shelly Plus Plug S (Gen2 RPC, 1 metered channel)",
        channels=1,
        model="SNPL-00112EU",
        app="PlusPlugS",
        id_prefix="shellyplusplugs",
    ),
}


class RpcError(Exception):
    def __init__(self, code: int, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.http_status = code, message, http_status


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def query_value(text: str) -> Any:
    """Query-string params since fw 1.0.0: ``true``/``false`` and numbers are typed."""
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class ShellyRpcEmulator(EmulatedDevice):
    family = "shelly"

    def __init__(self, spec: RpcModel, clock: Clock, mac: str, password: str | None) -> None:
        super().__init__(spec.channels, clock, mac, password)
        self.spec = spec
        self.device_id = f"{spec.id_prefix}-{mac}"
        self.sources = ["init"] * spec.channels
        self._command_source = "http"  # what the device reports as a switch's ``source``
        self.websockets_allowed = True  # False: a WebSocket upgrade on /rpc gets 405
        self._websockets: dict[web.WebSocketResponse, asyncio.Event] = {}  # -> its wake-up
        self._closing: set[asyncio.Task[bool]] = set()
        self._nonces: dict[str, int] = {}  # nonce -> highest nc seen
        self._nonce_counter = itertools.count(random.randrange(100, 100_000))
        self.methods: dict[str, Callable[[dict[str, Any]], Any]] = {
            "Shelly.GetDeviceInfo": lambda _: self.device_info(),
            "Shelly.GetStatus": lambda _: self.status(),
            "Shelly.GetConfig": lambda _: self.config(),
            "Shelly.GetComponents": lambda _: self.components(),
            "Sys.GetStatus": lambda _: self.sys_status(),
            "Switch.GetStatus": lambda p: self.switch_status(self._channel(p)),
            "Switch.Set": self._switch_set,
            "Switch.Toggle": self._switch_toggle,
        }

    def reboot(self) -> None:
        super().reboot()
        self.sources = ["init"] * self.spec.channels
        self._nonces.clear()
        self.drop_websockets()

    def press_button(self, channel: int) -> None:
        self.sources[channel] = "button"
        super().press_button(channel)

    def timer_ran_out(self, channel: int) -> None:
        self.sources[channel] = "timer"

    def changed(self) -> None:
        for wake in self._websockets.values():
            wake.set()

    @property
    def websocket_clients(self) -> int:
        return len(self._websockets)

    def drop_websockets(self) -> None:
        """Close every WebSocket, as a reboot or a Wi-Fi drop does."""
        loop = asyncio.get_running_loop()
        for ws in self._websockets:
            task = loop.create_task(ws.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # --- JSON shapes ------------------------------------------------------------------------

    def device_info(self) -> dict[str, Any]:
        auth = self.password is not None
        return {
            "name": None,
            "id": self.device_id,
            "mac": self.mac.upper(),
            "slot": 0,
            "model": self.spec.model,
            "gen": self.spec.gen,
            "fw_id": self.spec.fw_id,
            "ver": self.spec.ver,
            "app": self.spec.app,
            "auth_en": auth,
            "auth_domain": self.device_id if auth else None,
        }

    def switch_status(self, channel: int) -> dict[str, Any]:
        socket, now = self.sockets[channel], self.clock.now_ms()
        minute_ts = now // MINUTE_MS * 60
        counter = {
            "total": round(socket.energy_wh, 3),
            "by_minute": [round(wh * 1000, 3) for wh in self.minutes[channel].last_three_wh(now)],
            "minute_ts": minute_ts,
        }
        status: dict[str, Any] = {
            "id": channel,
            "source": self.sources[channel],
            "output": socket.relay_on,
        }
        timer = self.timers[channel]
        if timer is not None:
            status["timer_started_at"] = round(timer.started_ms / 1000, 2)
            status["timer_duration"] = timer.duration_s
        status |= {
            "apower": round(socket.power_w, 1),
            "voltage": round(socket.voltage_v, 1),
            "current": round(socket.current_a, 3),
        }
        if self.spec.pf_and_freq:
            status |= {"pf": round(socket.power_factor, 2), "freq": 50.0}
        status["aenergy"] = counter
        if self.spec.returned_energy:
            status["ret_aenergy"] = {"total": 0.0, "by_minute": [0.0] * 3, "minute_ts": minute_ts}
        celsius = round(30.0 + socket.power_w / 250, 1)
        status["temperature"] = {"tC": celsius, "tF": round(celsius * 9 / 5 + 32, 1)}
        if socket.overcurrent:
            status["errors"] = ["overpower"]
        return status

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "sys": {"device": {"name": None, "mac": self.mac.upper(), "fw_id": self.spec.fw_id}}
        }
        for i in range(self.spec.channels):
            config[f"switch:{i}"] = {
                "id": i,
                "name": None,
                "in_mode": "follow",
                "initial_state": "off",
                "auto_on": False,
                "auto_off": False,
                "power_limit": 4480,
                "voltage_limit": 280,
                "current_limit": 16.0,
            }
        config |= {f"input:{i}": {"id": i, "name": None} for i in range(self.spec.inputs)}
        return config

    def components(self) -> dict[str, Any]:
        """``Shelly.GetComponents`` with ``dynamic_only``: this device has no virtual ones."""
        return {"components": [], "cfg_rev": 25, "offset": 0, "total": 0}

    def sys_status(self) -> dict[str, Any]:
        now_s = self.clock.now_ms() // 1000
        return {
            "mac": self.mac.upper(),
            "restart_required": False,
            "unixtime": now_s,
            "uptime": self.uptime_s(),
            "ram_size": 246084,
            "ram_free": 141748,
            "fs_size": 458752,
            "fs_free": 139264,
            "cfg_rev": 25,
            "kvs_rev": 0,
            "schedule_rev": 0,
            "webhook_rev": 0,
            "reset_reason": 3,
            "available_updates": {},
        }

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"ble": {}, "cloud": {"connected": False}}
        if self.spec.ethernet:
            status["eth"] = {"ip": None}
        status |= {f"input:{i}": {"id": i, "state": False} for i in range(self.spec.inputs)}
        status["mqtt"] = {"connected": False}
        status |= {f"switch:{i}": self.switch_status(i) for i in range(self.spec.channels)}
        status["sys"] = self.sys_status()
        status["wifi"] = {"sta_ip": self.ip, "status": "got ip", "ssid": "evplug", "rssi": -60}
        status["ws"] = {"connected": False}
        return status

    # --- methods ----------------------------------------------------------------------------

    def _channel(self, params: dict[str, Any]) -> int:
        if "id" not in params:
            raise RpcError(-103, "Argument 'id' is missing")
        channel = params["id"]
        if not isinstance(channel, int) or not 0 <= channel < self.spec.channels:
            raise RpcError(-105, f"Argument 'id', value {channel} not found!")
        return channel

    def _switch_set(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        if not isinstance(params.get("on"), bool):
            raise RpcError(-103, "Argument 'on' is missing")
        toggle_after = params.get("toggle_after")
        if toggle_after is not None and (
            isinstance(toggle_after, bool)
            or not isinstance(toggle_after, int | float)
            or not toggle_after > 0
        ):
            raise RpcError(-103, f"Argument 'toggle_after', value {toggle_after} is invalid!")
        was_on = self.sockets[channel].relay_on
        self.sources[channel] = self._command_source
        self.set_relay(channel, params["on"], toggle_after)
        return {"was_on": was_on}

    def _switch_toggle(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        return self._switch_set({"id": channel, "on": not self.sockets[channel].relay_on})

    def call(self, method: str, params: dict[str, Any], source: str = "http") -> Any:
        """``source``: the channel the call came in on, as switches report it."""
        try:
            handler = self.methods[method]
        except KeyError:
            raise RpcError(404, f"No handler for {method}", http_status=404) from None
        self._command_source = source
        return handler(params)

    # --- digest auth ------------------------------------------------------------------------

    def _new_nonce(self) -> int:
        nonce = next(self._nonce_counter)
        self._nonces[str(nonce)] = 0
        while len(self._nonces) > KEPT_NONCES:
            del self._nonces[next(iter(self._nonces))]
        return nonce

    def _challenge(self) -> web.Response:
        nonce = self._new_nonce()
        header = f'Digest qop="auth", realm="{self.device_id}", nonce="{nonce}", algorithm=SHA-256'
        return web.Response(
            status=401, headers={"WWW-Authenticate": header, "Content-Type": "application/json"}
        )

    def authorized(self, request: web.Request) -> bool:
        scheme, _, rest = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "digest":
            return False
        fields = {m[1]: m[2] or m[3] for m in DIGEST_FIELD.finditer(rest)}
        nonce, uri = fields.get("nonce", ""), fields.get("uri", "")
        try:
            nc = int(fields.get("nc", ""), 16)
        except ValueError:
            return False
        if (
            nonce not in self._nonces
            or nc <= self._nonces[nonce]  # a replayed or stale count
            or fields.get("username") != AUTH_USER
            or fields.get("realm") != self.device_id
            or fields.get("algorithm", "").upper() != "SHA-256"
            or fields.get("qop") != "auth"
            or uri != request.raw_path
        ):
            return False
        ha1 = sha256_hex(f"{AUTH_USER}:{self.device_id}:{self.password}")
        ha2 = sha256_hex(f"{request.method}:{uri}")
        expected = sha256_hex(f"{ha1}:{nonce}:{fields['nc']}:{fields.get('cnonce', '')}:auth:{ha2}")
        if not hmac.compare_digest(expected, fields.get("response", "")):
            return False
        self._nonces[nonce] = nc
        return True

    def frame_authorized(self, auth: object) -> bool:
        """The ``auth`` object of a frame (reference §1.7): digest over the fixed HA2."""
        if not isinstance(auth, dict):
            return False
        nonce, nc = str(auth.get("nonce", "")), auth.get("nc")
        if (
            nonce not in self._nonces
            or not isinstance(nc, int)
            or nc <= self._nonces[nonce]
            or auth.get("username") != AUTH_USER
            or auth.get("realm") != self.device_id
            or auth.get("algorithm") != "SHA-256"
        ):
            return False
        ha1 = sha256_hex(f"{AUTH_USER}:{self.device_id}:{self.password}")
        expected = sha256_hex(f"{ha1}:{nonce}:{nc}:{auth.get('cnonce', '')}:auth:{FRAME_HA2}")
        if not hmac.compare_digest(expected, str(auth.get("response", ""))):
            return False
        self._nonces[nonce] = nc
        return True

    def frame_challenge(self) -> RpcError:
        challenge = {
            "auth_type": "digest",
            "nonce": self._new_nonce(),
            "nc": 1,
            "realm": self.device_id,
            "algorithm": "SHA-256",
        }
        return RpcError(401, json.dumps(challenge), http_status=401)

    def _needs_challenge(self, request: web.Request, method: str) -> bool:
        return (
            self.password is not None
            and method not in OPEN_METHODS
            and not self.authorized(request)
        )

    # --- HTTP -------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/shelly", self._shelly),
            web.post("/rpc", self._frame),
            web.get("/rpc", self._websocket),
            web.get("/rpc/{method}", self._bare),
            web.post("/rpc/{method}", self._bare),
        ]

    async def _shelly(self, request: web.Request) -> web.Response:
        return web.json_response(self.device_info())

    def answer(
        self,
        frame: dict[str, Any],
        authorized: Callable[[dict[str, Any]], bool],
        source: str = "http",
    ) -> dict[str, Any]:
        """The response frame to one request frame; ``authorized(frame)`` checks its auth."""
        reply: dict[str, Any] = {"id": frame.get("id"), "src": self.device_id}
        if "src" in frame:
            reply["dst"] = frame["src"]
        try:
            method, params = frame["method"], frame.get("params") or {}
            if not isinstance(method, str) or not isinstance(params, dict):
                raise RpcError(-32700, "Parse error")
            if self.password is not None and method not in OPEN_METHODS and not authorized(frame):
                raise self.frame_challenge()
            reply["result"] = self.call(method, params, source)
        except KeyError:
            reply["error"] = {"code": -32700, "message": "Parse error"}
        except RpcError as exc:
            reply["error"] = {"code": exc.code, "message": exc.message}
        return reply

    async def _frame(self, request: web.Request) -> web.Response:
        try:
            frame = json.loads(await request.text())
            method = str(frame["method"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"code": -32700, "message": "Parse error"}, status=400)
        if self._needs_challenge(request, method):
            return self._challenge()
        return web.json_response(self.answer(frame, lambda _: True))

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        if not self.websockets_allowed or not ws.can_prepare(request).ok:
            raise web.HTTPMethodNotAllowed("GET", ["POST"])
        await ws.prepare(request)
        wake = self._websockets[ws] = asyncio.Event()
        notifier: asyncio.Task[None] | None = None
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                await self._responsive.wait()
                self.tick()
                try:
                    frame = json.loads(message.data)
                    if not isinstance(frame, dict):
                        raise ValueError("not an object")
                except ValueError:
                    frame = {}
                reply = self.answer(frame, lambda f: self.frame_authorized(f.get("auth")), "WS_in")
                await ws.send_json(reply)
                src = frame.get("src")
                if notifier is None and isinstance(src, str) and src and "result" in reply:
                    notifier = asyncio.create_task(self._notify(ws, src, wake))
        finally:
            del self._websockets[ws]
            if notifier is not None:
                notifier.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await notifier
        return ws

    def _switches(self) -> dict[str, dict[str, Any]]:
        return {f"switch:{i}": self.switch_status(i) for i in range(self.spec.channels)}

    async def _notify(self, ws: web.WebSocketResponse, dst: str, wake: asyncio.Event) -> None:
        """``NotifyStatus`` to one client: what changed since the last frame it was sent."""
        sent = self._switches()
        while not ws.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), METER_NOTIFY_S)
            wake.clear()
            await self._responsive.wait()
            now_ms = self.tick()
            current = self._switches()
            params: dict[str, Any] = {
                key: delta for key in current if (delta := changed_keys(sent[key], current[key]))
            }
            sent = current
            if params and not ws.closed:
                notification = {"src": self.device_id, "dst": dst, "method": "NotifyStatus"}
                notification["params"] = {"ts": round(now_ms / 1000, 2), **params}
                with contextlib.suppress(ConnectionError):
                    await ws.send_json(notification)

    @web.middleware
    async def _one_shot(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if not isinstance(response, web.WebSocketResponse):
            response.force_close()
        return response

    async def _bare(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if self._needs_challenge(request, method):
            return self._challenge()
        if request.method == "POST" and request.can_read_body:
            try:
                params = json.loads(await request.text())
            except ValueError:
                return web.json_response({"code": -32700, "message": "Parse error"}, status=400)
        else:
            params = {key: query_value(value) for key, value in request.query.items()}
        try:
            return web.json_response(self.call(method, params))
        except RpcError as exc:
            body = {"code": exc.code, "message": exc.message}
            return web.json_response(body, status=exc.http_status)

    def app(self) -> web.Application:
        app = super().app()
        app.middlewares.append(self._one_shot)
        return app

    def services(self, address: str, port: int) -> list[ServiceInfo]:
        properties = {
            "gen": str(self.spec.gen),
            "app": self.spec.app,
            "ver": self.spec.ver,
            "id": self.device_id,
        }
        return [
            service(service_type, self.device_id, address, port, properties)
            for service_type in ("_shelly._tcp.local.", "_http._tcp.local.")
        ]


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The keys of one component that changed, with its ``id``; a key gone is sent as null."""
    delta = {key: value for key, value in new.items() if old.get(key) != value}
    delta |= {key: None for key in old if key not in new}
    return {"id": new["id"], **delta} if delta else {}
