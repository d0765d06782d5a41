"""``evplug demo``: the whole system in one process on embedded defaults.

SQLite under a data dir, the in-memory bus, a demo site of simulated plugs with a car on each,
a demo driver with starting credit, and time running faster so a charge takes seconds.
The same components split into separate processes later; here they share one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from evplug.bus.memory import MemoryBus
from evplug.clock import Clock, ScaledClock
from evplug.core import ledger
from evplug.core.plug import Prompt, SessionClosed, State, Transitioned
from evplug.core.pricing import DEFAULT_CURRENCY, DEFAULT_PRICE_CENTS_PER_KWH
from evplug.devices.base import DeviceError
from evplug.devices.registry import create_driver
from evplug.devices.simulated import SimulatedDevice
from evplug.mothership.registry import circuit_key
from evplug.mothership.runtime import Mothership, MothershipConfig
from evplug.relay.manager import DeviceSpec, RelayManager
from evplug.relay.rediscovery import Rediscovery
from evplug.relay.site_config import AUTO, SiteConfig, SiteConfigError, load_site_config
from evplug.store.database import create_schema, make_engine, sqlite_url
from evplug.store.repository import Repository
from evplug.store.telemetry import ReadingSink

log = structlog.get_logger(__name__)

DEMO_SITE = "demo-site"
DEMO_DRIVER = "demo-driver"
STARTING_CREDIT_CENTS = 2_000


class DemoError(Exception):
    """Bad input or environment, reported as one line."""


@dataclass
class DemoOptions:
    data_dir: Path = Path(".evplug")
    plugs: int = 4
    port: int = 8000
    host: str = "127.0.0.1"
    speed: float = 60.0  # simulated seconds per real second
    car_need_wh: float = 8_000.0
    poll_interval_s: float = 2.0
    site_config: Path | None = None  # real relays instead of simulated plugs


@dataclass
class System:
    clock: Clock
    bus: MemoryBus
    repo: Repository
    sink: ReadingSink
    mothership: Mothership
    relay: RelayManager
    simulated: list[SimulatedDevice] = field(default_factory=list)
    rediscovery: Rediscovery | None = None  # only when the site config asks for it
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    async def connect(self) -> None:
        """Identify the relays, so a wrong address fails before anything else starts."""
        try:
            await self.relay.connect()
        except DeviceError as exc:
            raise DemoError(
                f"{exc}: is the relay on, and its address in the site config right?"
            ) from None

    async def start(self) -> None:
        await self.connect()
        await self.mothership.start()
        await self.relay.start()
        if self.rediscovery is not None:
            self._background.append(asyncio.create_task(self.rediscovery.run()))

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.relay.stop()
        await self.mothership.stop()
        await self.repo.engine.dispose()


def check_options(options: DemoOptions) -> None:
    if options.plugs < 1 or options.plugs > 64:
        raise DemoError(f"--plugs must be between 1 and 64, got {options.plugs}")
    if options.speed <= 0:
        raise DemoError("--speed must be positive")
    try:
        options.data_dir.mkdir(parents=True, exist_ok=True)
        probe = options.data_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise DemoError(f"data dir {options.data_dir} is not writable: {exc.strerror}") from None


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DemoError(
                    f"port {port} on {host} is already in use: stop what is using it or pass"
                    " --port with another number"
                ) from None
            raise DemoError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


async def build(options: DemoOptions) -> System:
    check_options(options)
    clock = ScaledClock(options.speed)
    bus = MemoryBus(clock)
    engine = make_engine(sqlite_url(options.data_dir / "evplug.sqlite3"))
    await create_schema(engine)
    repo = Repository(engine)
    config = _load_site_config(options.site_config) if options.site_config else None
    site_id = config.site_id if config else DEMO_SITE
    await repo.ensure_site(site_id, site_id, DEFAULT_PRICE_CENTS_PER_KWH, DEFAULT_CURRENCY)
    await repo.ensure_user(DEMO_DRIVER, "Demo Driver", "driver@demo.invalid")
    await repo.post(
        ledger.Entry(
            DEMO_DRIVER,
            ledger.EntryKind.ADJUSTMENT,
            STARTING_CREDIT_CENTS,
            "demo:starting-credit",
            clock.now_ms(),
            memo="demo starting credit",
        )
    )
    sink = ReadingSink(engine)
    mothership = Mothership(bus, repo, sink, clock, MothershipConfig())
    simulated: list[SimulatedDevice] = []
    if config is None:
        simulated = [
            SimulatedDevice(f"demo{n:02d}", clock, car_need_wh=options.car_need_wh)
            for n in range(1, options.plugs + 1)
        ]
        specs = [DeviceSpec(d, fuze_id="main") for d in simulated]
        relay = RelayManager(site_id, bus, specs, clock, poll_interval_s=options.poll_interval_s)
    else:
        for fuze_id, limit_a in config.fuze_limits().items():
            await repo.ensure_circuit(circuit_key(site_id, fuze_id), site_id, limit_a)
        specs = [
            DeviceSpec(create_driver(d.driver, d.url, d.username, d.password), d.fuze_id or "")
            for d in config.devices
        ]
        relay = RelayManager(
            site_id,
            bus,
            specs,
            clock,
            poll_interval_s=config.poll_interval_s,
            mia_after_failed_polls=config.mia_after_failed_polls,
        )
    rediscovery = None
    if config is not None and config.discovery:
        rediscovery = Rediscovery(relay, clock, interval_s=config.discovery_interval_s)
    return System(clock, bus, repo, sink, mothership, relay, simulated, rediscovery)


def _load_site_config(path: Path) -> SiteConfig:
    try:
        config = load_site_config(path)
    except SiteConfigError as exc:
        raise DemoError(str(exc)) from None
    if any(d.driver == AUTO for d in config.devices):
        raise DemoError(f"{path}: the demo needs each device's driver named, not {AUTO!r}")
    return config


async def serve(options: DemoOptions) -> None:
    import uvicorn

    from evplug.relay import status_page
    from evplug.web.app import create_app

    system = await build(options)
    try:
        await system.start()
    except DemoError:
        await system.stop()
        raise
    # The bus runs on the demo's sped-up clock: give a driver's request 5 s of real time.
    app = create_app(system.bus, system.repo, DEMO_DRIVER, 5.0 * options.speed)
    # The relay manager's own page, which on a site would be served by the Pi itself.
    base_url = f"http://{options.host}:{options.port}"
    app.mount("/relay", status_page.create_app(system.relay, base_url))
    server = uvicorn.Server(
        uvicorn.Config(app, host=options.host, port=options.port, log_level="warning")
    )
    print(
        f"evplug demo: http://{options.host}:{options.port}  (site {system.relay.site_id},"
        f" {len(system.relay.channels)} plugs, time x{options.speed:g}; relay page at /relay/;"
        " Ctrl-C to stop)",
        file=sys.stderr,
    )
    try:
        await server.serve()
    finally:
        await system.stop()


async def smoke(options: DemoOptions, timeout_s: float = 50.0) -> dict[str, Any]:
    """One whole session, headless: enable the first plug, charge until full, bill."""
    system = await build(options)
    try:
        await system.connect()
        watcher = _SessionWatcher(min(system.relay.channels))
        system.mothership.events.attach(watcher)
        await system.start()
        return await asyncio.wait_for(_one_session(system, watcher), timeout_s)
    except TimeoutError:
        raise DemoError(f"the smoke session did not finish within {timeout_s:g} s") from None
    finally:
        await system.stop()


class _SessionWatcher:
    """Records every state one plug passes through, and the first session it closes."""

    def __init__(self, plug_id: str) -> None:
        self.plug_id = plug_id
        self.states: list[str] = []
        self.closed: asyncio.Future[SessionClosed] = asyncio.get_running_loop().create_future()
        self.idle = asyncio.Event()

    def __call__(self, effect: object) -> None:
        if isinstance(effect, Transitioned) and effect.plug_id == self.plug_id:
            if not self.states:
                self.states.append(str(effect.from_state))
            self.states.append(str(effect.to_state))
            if effect.to_state is State.ACCOUNT_NULL:
                self.idle.set()
        elif (
            isinstance(effect, SessionClosed)
            and effect.plug_id == self.plug_id
            and not self.closed.done()
        ):
            self.closed.set_result(effect)


async def _one_session(system: System, watcher: _SessionWatcher) -> dict[str, Any]:
    mothership = system.mothership
    plug = mothership.plug(watcher.plug_id)
    if plug.state is State.ACCOUNT_NULL and not watcher.states:
        watcher.states.append(str(plug.state))  # hydrated idle: no transition to see it by
    else:
        await watcher.idle.wait()
    balance_before = await system.repo.balance(DEMO_DRIVER)
    await mothership.choose(watcher.plug_id, Prompt.ENABLE_SOCKET, DEMO_DRIVER)
    session = await watcher.closed
    balance_after = await system.repo.balance(DEMO_DRIVER)
    return {
        "session_id": session.session_id,
        "plug_id": watcher.plug_id,
        "kwh": round(session.energy_wh / 1000, 3),
        "cents": session.cost_cents,
        "price_cents_per_kwh": session.price_cents_per_kwh,
        "balance_before_cents": balance_before,
        "balance_after_cents": balance_after,
        "states": watcher.states,
    }


def run(options: DemoOptions, scenario: str | None) -> int:
    if scenario is None:
        check_port_free(options.host, options.port)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(options))
        return 0
    if scenario != "smoke":
        raise DemoError(f"unknown scenario {scenario!r} (known: smoke)")
    result = asyncio.run(smoke(options))
    print(json.dumps(result), flush=True)
    return 0
