"""``evplug demo``: every part in one process, with demo data.

The settings' defaults (SQLite under ``.evplug``, the in-memory bus), a demo site of simulated
plugs with a car on each, a demo driver with starting credit, and time running faster so a charge
takes seconds. ``assembly`` builds the parts; this module only seeds them and runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from argon2 import PasswordHasher

from evplug import assembly
from evplug.assembly import StartupError, System
from evplug.bus.broker import free_port, start_broker
from evplug.clock import ScaledClock
from evplug.core.circuits import Circuit
from evplug.core.plug import Prompt, SessionClosed, State, Transitioned, Trigger
from evplug.devices.simulated import SimulatedDevice
from evplug.relay.manager import DeviceSpec
from evplug.relay.site_config import SiteConfig
from evplug.settings import Settings, SettingsError, figure

# A scenario's watcher: it sees every effect the mothership applies.
W = TypeVar("W", bound=Callable[[Any], None])

DEMO_SITE = "demo-site"
DEMO_DRIVER = "demo-driver"
# The seeded driver's credentials, offered on the demo's sign-in page.
DEMO_EMAIL = "driver@demo.example"
DEMO_PASSWORD = "demo-driver-password"
STARTING_CREDIT_CENTS = 2_000
SCENARIOS = ("smoke", "queue")
# The queue scenario's site: four cars of about 10 A on one 20 A circuit.
QUEUE_SITE = "demo-queue"
QUEUE_FUZE = "main"
QUEUE_LIMIT_A = 20.0


class ScenarioFailed(StartupError):
    """A scenario that did not reach its end."""


EDGE_REAL_S = 10.0
STAMP_REAL_S = 0.2
_EDGE_TIMEOUTS = ("mothership_silent_s", "unsupervised_max_s", "dead_man_s")


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What only the demo has: its simulated plugs and cars, and how fast its time runs."""

    plugs: int = 4
    speed: float = 60.0  # simulated seconds per real second
    car_need_wh: float = 8_000.0
    site_config: Path | None = None  # real relays instead of simulated plugs
    site_id: str = DEMO_SITE
    device_prefix: str = "demo"  # the simulated relays' hardware ids: demo01, demo02...
    circuits: tuple[Circuit, ...] = ()  # the simulated site's circuits with their limits


def demo_options(
    scenario: str | None,
    site_config: Path | None = None,
    plugs: int | None = None,
    speed: float | None = None,
    car_kwh: float | None = None,
) -> DemoOptions:
    """The options for a run; what is not given depends on the scenario and the relays."""
    options = DemoOptions(site_config=site_config)
    if scenario == "smoke":
        options = replace(options, speed=300.0, car_need_wh=1_500.0)
    elif scenario == "queue":
        options = replace(
            options,
            speed=300.0,
            car_need_wh=1_000.0,
            site_id=QUEUE_SITE,
            device_prefix="queue",
            circuits=(Circuit(QUEUE_FUZE, QUEUE_LIMIT_A),),
        )
    if site_config is not None:
        options = replace(options, speed=1.0)  # cars on real relays do not hurry
    given = {
        "plugs": plugs,
        "speed": speed,
        "car_need_wh": None if car_kwh is None else car_kwh * 1000,
    }
    return replace(options, **{k: v for k, v in given.items() if v is not None})


def check_options(options: DemoOptions) -> None:
    checks = [
        ("--plugs", "a whole number", options.plugs, 1, 64),
        ("--speed", "a number", options.speed, 0.01, 100_000),
        ("--car-kwh", "a number", options.car_need_wh / 1000, 0.1, 1000),
    ]
    problems = [
        f"{flag}: must be {kind} {figure(low)}..{figure(high)}, got {value:g}"
        for flag, kind, value, low, high in checks
        if not (math.isfinite(value) and low <= value <= high)
    ]
    if problems:
        raise SettingsError(problems)


def in_real_time(settings: Settings, speed: float) -> Settings:
    """What takes real time whatever the demo's speed. The relay manager's safety timeouts wait
    on broker acks and relay round trips: each lasts at least ``EDGE_REAL_S`` real seconds. A
    reading is stamped when its poll ends and handled when the bus delivers it: the slack the
    rated-power check gives a stamp is at least ``STAMP_REAL_S`` real seconds (at 300x a 20 ms
    lag is 6 s of the demo's time, and the energy of those seconds was refused, not billed)."""
    relay, plug, floor_s = settings.relay, settings.plug, EDGE_REAL_S * speed
    edge = {name: max(getattr(relay, name), floor_s) for name in _EDGE_TIMEOUTS}
    jitter_s = max(plug.reading_jitter_s, STAMP_REAL_S * speed)
    return settings.model_copy(
        update={
            "relay": relay.model_copy(update=edge),
            "plug": plug.model_copy(update={"reading_jitter_s": jitter_s}),
        }
    )


async def build(settings: Settings, options: DemoOptions) -> System:
    """Every part, on the site file's relays or on simulated plugs, seeded with demo data."""
    check_options(options)
    settings = in_real_time(settings, options.speed)
    # Hashed before the sped-up clock starts: its second of work is minutes of demo time.
    password_hash = await asyncio.to_thread(PasswordHasher().hash, DEMO_PASSWORD)
    clock = ScaledClock(options.speed)
    simulated: list[SimulatedDevice] = []
    if options.site_config is not None:
        site = assembly.load_site(options.site_config)
        devices = assembly.site_devices(site)
    else:
        site = SiteConfig(site_id=options.site_id, nested=options.circuits)
        simulated = [
            SimulatedDevice(
                f"{options.device_prefix}{n:02d}", clock, car_need_wh=options.car_need_wh
            )
            for n in range(1, options.plugs + 1)
        ]
        devices = [DeviceSpec(d, fuze_id="main") for d in simulated]
    system = await assembly.build_system(settings, clock, site, devices)
    system.simulated = simulated
    await _seed_driver(system, password_hash)
    return system


async def _seed_driver(system: System, password_hash: str) -> None:
    await _give_credit(system, DEMO_DRIVER, "demo:starting-credit")
    await system.repo.accounts.set_credentials(
        DEMO_DRIVER, email=DEMO_EMAIL, password_hash=password_hash, name="Demo driver"
    )
    if system.payments is not None:  # with Stripe, the driver's customer there
        user = await system.repo.users.get_user(DEMO_DRIVER)
        await system.payments.ensure_customer(DEMO_DRIVER, user.email)


async def _give_credit(system: System, driver: str, key: str) -> None:
    """The driver with the starting credit, once per driver and data dir (the key says so)."""
    await assembly.credit_driver(
        system.repo,
        driver,
        STARTING_CREDIT_CENTS,
        key,
        system.clock.now_ms(),
        "demo starting credit",
    )


async def serve(settings: Settings, options: DemoOptions) -> None:
    import uvicorn

    system = await build(settings, options)
    try:
        await system.start()
    except StartupError:
        await system.stop()
        raise
    from evplug.web.accounts_web import DemoCredentials

    app = assembly.make_web_app(
        settings,
        system.bus,
        system.store,
        system.relay,
        time_factor=options.speed,
        demo=DemoCredentials(DEMO_EMAIL, DEMO_PASSWORD),
    )
    web = settings.web
    server = uvicorn.Server(uvicorn.Config(app, host=web.host, port=web.port, log_level="warning"))
    print(
        f"evplug demo: {settings.effective_public_url()}  (site {system.relay.site_id},"
        f" {len(system.relay.channels)} plugs, time x{options.speed:g}; relay page at /relay/;"
        " Ctrl-C to stop)",
        file=sys.stderr,
    )
    try:
        await server.serve()
    finally:
        await system.stop()


async def smoke(
    settings: Settings, options: DemoOptions, timeout_s: float = 50.0
) -> dict[str, Any]:
    """One whole session, headless: enable the first plug, charge until full, bill."""
    return await _play(
        settings,
        options,
        lambda system: _SessionWatcher(min(system.relay.channels)),
        _one_session,
        timeout_s,
        "the smoke session did not finish",
    )


async def _play(
    settings: Settings,
    options: DemoOptions,
    watch: Callable[[System], W],
    run: Callable[[System, W], Awaitable[dict[str, Any]]],
    timeout_s: float,
    unfinished: str,
) -> dict[str, Any]:
    """Build the system, attach the scenario's watcher before anything moves, run, stop."""
    system = await build(settings, options)
    try:
        await system.connect()
        watcher = watch(system)
        system.mothership.events.attach(watcher)
        await system.start()
        return await asyncio.wait_for(run(system, watcher), timeout_s)
    except TimeoutError:
        raise ScenarioFailed(f"{unfinished} within {timeout_s:g} s") from None
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
    await mothership.pending.idle()  # effects are emitted once applied: let those queued arrive
    plug = mothership.plug(watcher.plug_id)
    if plug.state is State.ACCOUNT_NULL and not watcher.states:
        watcher.states.append(str(plug.state))  # hydrated idle: no transition to see it by
    else:
        await watcher.idle.wait()
    balance_before = await system.repo.ledger.balance(DEMO_DRIVER)
    await mothership.choose(watcher.plug_id, Prompt.ENABLE_SOCKET, DEMO_DRIVER)
    session = await watcher.closed
    balance_after = await system.repo.ledger.balance(DEMO_DRIVER)
    return {
        "session_id": session.session_id,
        "plug_id": watcher.plug_id,
        "kwh": round(session.energy_wh / 1000, 3),
        "cents": session.cost_cents,
        "price_cents_per_kwh": session.price_cents_per_kwh,
        "reason": session.reason,
        "balance_before_cents": balance_before,
        "balance_after_cents": balance_after,
        "states": watcher.states,
    }


async def queue(
    settings: Settings, options: DemoOptions, timeout_s: float = 100.0
) -> dict[str, Any]:
    """Every simulated plug requested at once on a circuit too small for all: who goes when.

    Reports the peak current the circuits carried (the simulated sockets' own current, sampled
    four times a simulated second), the order of requests, admissions and charge starts, each
    driver's first place in the queue, and whether every session completed and was billed.
    """
    return await _play(
        settings,
        options,
        lambda _: _QueueWatcher(),
        _queue_run,
        timeout_s,
        "the queue did not empty",
    )


class _QueueWatcher:
    """Records admissions, charge starts and closed sessions, in order."""

    def __init__(self) -> None:
        self.admitted: list[str] = []  # in the order of each plug's first admission
        self.turns = 0  # admissions after a plug had handed its turn over
        self.charging: list[str] = []
        self.closed: list[SessionClosed] = []
        self.changed = asyncio.Event()

    def __call__(self, effect: object) -> None:
        if isinstance(effect, Transitioned):
            if effect.trigger is Trigger.ADMITTED:
                if effect.plug_id in self.admitted:
                    self.turns += 1
                else:
                    self.admitted.append(effect.plug_id)
            elif effect.to_state is State.CHARGING and effect.plug_id not in self.charging:
                self.charging.append(effect.plug_id)
        elif isinstance(effect, SessionClosed):
            self.closed.append(effect)
            self.changed.set()


async def _queue_run(system: System, watcher: _QueueWatcher) -> dict[str, Any]:
    mothership = system.mothership
    plug_ids = sorted(system.relay.channels)
    while any(mothership.plug(p).state is not State.ACCOUNT_NULL for p in plug_ids):
        await system.clock.sleep(0.5)  # every plug's first reading
    drivers = [f"queue-driver-{n}" for n in range(1, len(plug_ids) + 1)]
    before = {}
    for driver in drivers:
        await _give_credit(system, driver, f"demo:starting-credit:{driver}")
        before[driver] = await system.repo.ledger.balance(driver)
    peaks = _PeakMeter(system)
    sampler = asyncio.create_task(peaks.run())
    first_queue = []
    try:
        for plug_id, driver in zip(plug_ids, drivers, strict=True):
            plug = await mothership.choose(plug_id, Prompt.ENABLE_SOCKET, driver)
            outlook = mothership.admission.outlook(plug)
            first_queue.append(
                {
                    "plug_id": plug_id,
                    "position": outlook.position if outlook else 0,
                    "eta_min": outlook.eta_min if outlook else 0,
                }
            )
        while len(watcher.closed) < len(plug_ids):
            watcher.changed.clear()
            await watcher.changed.wait()
    finally:
        sampler.cancel()
    billed = [(s, await system.repo.sessions.get_session(s.session_id)) for s in watcher.closed]
    spent = {d: before[d] - await system.repo.ledger.balance(d) for d in drivers}
    tree = mothership.registry.tree()
    return {
        "fuzes": [
            {
                "id": circuit.removeprefix(f"{system.relay.site_id}/"),
                "limit_a": tree.limit(circuit),
                "peak_a": round(peak, 2),
            }
            for circuit, peak in sorted(peaks.peak_a.items())
        ],
        "requested": plug_ids,
        "admitted": watcher.admitted,
        "charging_started": watcher.charging,
        "later_turns": watcher.turns,
        "first_queue": first_queue,
        "all_completed": all(s.reason == "complete" for s in watcher.closed),
        "all_billed": all(
            row is not None
            and row.ended_ms is not None
            and row.cost_cents == s.cost_cents > 0
            and spent[s.user_id] == s.cost_cents
            for s, row in billed
        ),
    }


class _PeakMeter:
    """The most current each circuit carried: the simulated sockets' own current, summed."""

    def __init__(self, system: System) -> None:
        registry = system.mothership.registry
        tree = registry.tree()
        self.sockets = [
            (
                device.sockets[0],
                tree.chain(registry.circuit_of(registry.get(device.info.plug_id(0)))),
            )
            for device in system.simulated
        ]
        self.clock = system.clock
        self.peak_a = {c: 0.0 for _, chain in self.sockets for c in chain}

    async def run(self) -> None:
        while True:
            used = dict.fromkeys(self.peak_a, 0.0)
            for socket, chain in self.sockets:
                for circuit in chain:
                    used[circuit] += socket.current_a
            for circuit, amps in used.items():
                self.peak_a[circuit] = max(self.peak_a[circuit], amps)
            await self.clock.sleep(0.25)


def run(settings: Settings, options: DemoOptions, scenario: str | None, bus: str = "memory") -> int:
    if bus == "nats":
        broker = start_broker("127.0.0.1", free_port(), settings.data_dir / "nats")
        print(f"evplug demo: broker at {broker.url}", file=sys.stderr, flush=True)
        try:
            # One process, one connection for every part: the account's administrator.
            on_broker = {"bus_url": broker.url, "bus_credentials": broker.credentials()}
            return _run(settings.model_copy(update=on_broker), options, scenario)
        finally:
            broker.stop()
    return _run(settings, options, scenario)


def _run(settings: Settings, options: DemoOptions, scenario: str | None) -> int:
    if scenario is None:
        assembly.check_port_free(settings.web.host, settings.web.port)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings, options))
        return 0
    if scenario not in SCENARIOS:
        known = ", ".join(SCENARIOS)
        raise SettingsError([f"--scenario: unknown {scenario!r} (known: {known})"])
    play = smoke if scenario == "smoke" else queue
    result = asyncio.run(play(settings, options))
    print(json.dumps(result), flush=True)
    return 0
