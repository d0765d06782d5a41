"""Start an emulated relay as a real HTTP server (and, opt-in, its mDNS records).

mDNS sends multicast on every interface whatever ``interfaces`` says, so ``mdns=True`` belongs
only inside a private network namespace (tests) or on a LAN where announcing is wanted.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import signal
import socket
from dataclasses import dataclass, field

from aiohttp import web
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

from evplug.clock import Clock, SystemClock
from evplug.devices.car import Socket
from evplug.devices.emulators import shelly_gen1, shelly_rpc, sonoff_diy, tasmota
from evplug.devices.emulators.device import EmulatedDevice, EmulatorModel
from evplug.devices.http_driver import mac_hex

MODELS: dict[str, EmulatorModel] = {
    **shelly_rpc.MODELS,
    **shelly_gen1.MODELS,
    **tasmota.MODELS,
    **sonoff_diy.MODELS,
}
WILDCARDS = ("", "0.0.0.0")


def random_mac() -> str:
    """Locally administered (0x02 prefix), so it can never be a real vendor's MAC."""
    return "02" + secrets.token_hex(5)


@dataclass
class RunningEmulator:
    model: str
    device: EmulatedDevice
    host: str
    port: int
    _runner: web.AppRunner = field(repr=False)
    _zeroconf: AsyncZeroconf | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def sockets(self) -> list[Socket]:
        return self.device.sockets

    @property
    def hardware_id(self) -> str:
        return self.device.hardware_id

    async def announce(self) -> None:
        address = self.device.ip
        self._zeroconf = AsyncZeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
        # Registering probes the name first; the second await waits for the announcements.
        announced = await asyncio.gather(
            *(
                self._zeroconf.async_register_service(info)
                for info in self.device.services(address, self.port)
            )
        )
        await asyncio.gather(*announced)

    async def stop(self) -> None:
        # Let hung handlers finish so the server shuts down at once.
        self.device.resume()
        self.device.stop_timers()
        if self._zeroconf is not None:
            await self._zeroconf.async_unregister_all_services()
            await self._zeroconf.async_close()
            self._zeroconf = None
        await self._runner.cleanup()


async def start_emulator(
    model: str,
    host: str = "127.0.0.1",
    port: int = 0,
    password: str | None = None,
    mdns: bool = False,
    clock: Clock | None = None,
    mac: str | None = None,
) -> RunningEmulator:
    """Serve ``MODELS[model]`` on ``host:port`` (0 = any free port; see ``.port``/``.url``)."""
    if model not in MODELS:
        raise ValueError(f"unknown emulator model {model!r}; known: {', '.join(MODELS)}")
    hardware = mac_hex(mac) if mac else random_mac()
    if not re.fullmatch(r"[0-9a-f]{12}", hardware):
        raise ValueError(f"{mac!r} is not a MAC address")
    device = MODELS[model].build(clock or SystemClock(), hardware, password)
    device.ip = host if host not in WILDCARDS else socket.gethostbyname(socket.gethostname())
    runner = web.AppRunner(device.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    emulator = RunningEmulator(model, device, host, runner.addresses[0][1], runner)
    if mdns:
        await emulator.announce()
    return emulator


def run_emulator_forever(
    model: str,
    host: str = "127.0.0.1",
    port: int = 0,
    password: str | None = None,
    mdns: bool = False,
) -> None:
    """``evplug emulate``: serve until SIGINT/SIGTERM, on the wall clock."""

    async def serve() -> None:
        emulator = await start_emulator(model, host, port, password, mdns)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print(
            f"{model}: {MODELS[model].description} at {emulator.url}"
            f" (hardware id {emulator.hardware_id}{', mDNS on' if mdns else ''})",
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            await emulator.stop()

    asyncio.run(serve())
