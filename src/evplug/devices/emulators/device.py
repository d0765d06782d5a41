"""What every emulated relay shares: a ``car.Socket`` per channel, a clock, and the test hooks.

A family module adds only its HTTP dialect (routes and JSON shapes) and its mDNS records. The
sockets run on the injected clock and are advanced on every request, so a ``FakeClock`` test
decides exactly how much energy has flowed between two reads.

Auto-off timers (Shelly ``toggle_after``/``timer``, Tasmota ``PulseTime``) run on the same
clock: at the deadline the relay flips by itself, whether anyone asks the device or not, so a
test can kill whatever was renewing the timer and watch the relay go off.

Hooks are plain methods (``reboot``, ``hang``, ``resume``, ``trip_overpower``, ``unplug``,
``plug_in``, ``press_button``); the same hooks are reachable over HTTP under ``/_emulator/`` for
emulators run as a separate process (``POST /_emulator/unplug?channel=1``). That path never needs
auth and is not part of any real device's API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from aiohttp import web
from zeroconf import ServiceInfo

from evplug.clock import Clock
from evplug.devices.car import Car, Socket

HOOK_PREFIX = "/_emulator/"
MINUTE_MS = 60_000


@dataclass(slots=True)
class MinuteLog:
    """The counter at the first sight of each minute, for devices that report the energy of
    the last three whole minutes (Shelly ``by_minute``, Gen1 ``counters``)."""

    starts: dict[int, float] = field(default_factory=dict)

    def observe(self, now_ms: int, energy_wh: float) -> None:
        minute = now_ms // MINUTE_MS
        self.starts.setdefault(minute, energy_wh)
        for old in [m for m in self.starts if m < minute - 3]:
            del self.starts[old]

    def last_three_wh(self, now_ms: int) -> list[float]:
        """Most recent first; a minute nobody looked at counts as 0."""
        minute = now_ms // MINUTE_MS
        out = []
        for back in range(1, 4):
            end, start = self.starts.get(minute - back + 1), self.starts.get(minute - back)
            out.append(max(end - start, 0.0) if end is not None and start is not None else 0.0)
        return out


@dataclass(frozen=True, slots=True)
class Timer:
    """A running auto-off (or auto-on) timer: at ``started_ms + duration_s`` the relay flips."""

    started_ms: int
    duration_s: float
    then_on: bool

    @property
    def due_ms(self) -> int:
        return self.started_ms + round(self.duration_s * 1000)

    def remaining_s(self, now_ms: int) -> float:
        return max(self.due_ms - now_ms, 0) / 1000


class EmulatedDevice:
    family: ClassVar[str]

    def __init__(self, channels: int, clock: Clock, mac: str, password: str | None) -> None:
        self.clock = clock
        self.mac = mac  # lowercase hex, no separators
        self.password = password
        self.ip = "127.0.0.1"  # what the device says its address is; set by the runner
        self.sockets = [Socket(car=Car()) for _ in range(channels)]
        self.minutes = [MinuteLog() for _ in range(channels)]
        self.trip_power_w = [0.0] * channels  # the power at which each channel last tripped
        self.boot_ms = clock.now_ms()
        self.reboots = 0
        self.connections: set[object] = set()  # each TCP connection's client (host, port)
        self.timers: list[Timer | None] = [None] * channels
        self._timer_tasks: list[asyncio.Task[None] | None] = [None] * channels
        self._responsive = asyncio.Event()
        self._responsive.set()

    @property
    def hardware_id(self) -> str:
        """What a driver should report as ``DeviceInfo.hardware_id``."""
        return self.mac

    # --- time -------------------------------------------------------------------------------

    def tick(self) -> int:
        """Run every socket up to now, flipping relays whose timer ran out on the way; called
        before each request is answered."""
        now = self.clock.now_ms()
        for channel, timer in enumerate(self.timers):
            if timer is not None and timer.due_ms <= now:
                self.timers[channel] = None
                self.sockets[channel].switch(timer.then_on, timer.due_ms)
                self.timer_ran_out(channel)
                self.changed()
        for socket, log in zip(self.sockets, self.minutes, strict=True):
            socket.advance(now)
            log.observe(now, socket.energy_wh)
        return now

    def uptime_s(self) -> int:
        return max(self.clock.now_ms() - self.boot_ms, 0) // 1000

    # --- relay ------------------------------------------------------------------------------

    def set_relay(self, channel: int, on: bool, flip_after_s: float | None = None) -> None:
        """Switch a channel; with ``flip_after_s`` it flips back by itself that much later.
        Any switching replaces the channel's running timer."""
        socket = self.sockets[channel]
        if on:
            # Switching on again clears a protection trip, as on the real devices.
            socket.overcurrent = False
        now = self.tick()
        socket.switch(on, now)
        self._set_timer(channel, None if not flip_after_s else Timer(now, flip_after_s, not on))
        self.changed()

    def _set_timer(self, channel: int, timer: Timer | None) -> None:
        self.timers[channel] = timer
        task = self._timer_tasks[channel]
        if task is not None:
            task.cancel()
        self._timer_tasks[channel] = (
            None
            if timer is None
            else asyncio.create_task(
                self._run_out(timer.due_ms), name=f"{self.mac}-timer-{channel}"
            )
        )

    async def _run_out(self, due_ms: int) -> None:
        # From the deadline, not the duration: the task may first run after time has moved.
        await self.clock.sleep(max(due_ms - self.clock.now_ms(), 0) / 1000)
        self.tick()

    def timer_ran_out(self, channel: int) -> None:
        """A family records how its device reports a timer's flip (the command ``source``)."""

    def stop_timers(self) -> None:
        """The emulator is going away: no timer task outlives it."""
        for channel in range(len(self.timers)):
            self._set_timer(channel, None)

    def changed(self) -> None:
        """A relay or meter changed between requests; devices that push status override it."""

    # --- test hooks -------------------------------------------------------------------------

    def reboot(self) -> None:
        """Power cycle: counters restart from 0, relays come up off, sessions are forgotten."""
        now = self.tick()
        for channel, socket in enumerate(self.sockets):
            socket.overcurrent = False
            socket.reboot(now)
            self._set_timer(channel, None)
        self.minutes = [MinuteLog() for _ in self.sockets]
        self.boot_ms = now
        self.reboots += 1
        self.changed()

    def hang(self) -> None:
        """Accept connections but answer nothing until ``resume`` (or the emulator stops)."""
        self._responsive.clear()

    def resume(self) -> None:
        self._responsive.set()

    def trip_overpower(self, channel: int) -> None:
        """The relay's protection opens the channel; it stays off until switched on again."""
        now = self.tick()
        socket = self.sockets[channel]
        self.trip_power_w[channel] = socket.power_w
        socket.overcurrent = True
        socket.switch(False, now)
        self._set_timer(channel, None)
        self.changed()

    def press_button(self, channel: int) -> None:
        """Someone toggles the relay by hand, on the device itself."""
        self.tick()
        self.set_relay(channel, not self.sockets[channel].relay_on)

    def unplug(self, channel: int) -> None:
        self.sockets[channel].advance(self.clock.now_ms())
        self.sockets[channel].car = None
        self.changed()

    def plug_in(self, channel: int, car: Car | None = None) -> None:
        self.sockets[channel].advance(self.clock.now_ms())
        self.sockets[channel].car = car or Car()
        self.changed()

    # --- HTTP -------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def services(self, address: str, port: int) -> list[ServiceInfo]:
        """The mDNS records this device announces when emulated with ``mdns=True``."""
        raise NotImplementedError

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(self.routes())
        app.add_routes([web.post(HOOK_PREFIX + "{hook}", self._hook)])
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith(HOOK_PREFIX):
            if request.transport is not None:
                self.connections.add(request.transport.get_extra_info("peername"))
            await self._responsive.wait()
            self.tick()
        return await handler(request)

    async def _hook(self, request: web.Request) -> web.Response:
        hooks: dict[str, Callable[[], None]] = {
            "reboot": self.reboot,
            "hang": self.hang,
            "resume": self.resume,
        }
        channel_hooks: dict[str, Callable[[int], None]] = {
            "trip_overpower": self.trip_overpower,
            "unplug": self.unplug,
            "plug_in": self.plug_in,
            "press_button": self.press_button,
        }
        name = request.match_info["hook"]
        if name in hooks:
            hooks[name]()
        elif name in channel_hooks:
            try:
                channel = int(request.query.get("channel", "0"))
                channel_hooks[name](channel)
            except (ValueError, IndexError):
                raise web.HTTPBadRequest(text="channel must be one of the device's") from None
        else:
            raise web.HTTPNotFound(text=f"hooks: {', '.join([*hooks, *channel_hooks])}")
        return web.json_response({"ok": True, "hook": name})


def service(
    service_type: str, instance: str, address: str, port: int, properties: dict[str, str]
) -> ServiceInfo:
    """One mDNS record as devices announce them: ``<instance>.<type>`` on ``<instance>.local``."""
    return ServiceInfo(
        service_type,
        f"{instance}.{service_type}",
        parsed_addresses=[address],
        port=port,
        properties=properties,
        server=f"{instance}.local.",
    )


class EmulatorModel(Protocol):
    """One entry of ``MODELS``: a family's device spec that can build its emulator."""

    @property
    def description(self) -> str: ...

    def build(self, clock: Clock, mac: str, password: str | None) -> EmulatedDevice: ...
