"""The mothership: one state machine per plug in memory, fed by the bus, hydrated from the store.

It is assembled from parts a reader can find by name: the plug registry (lookups, hydration,
registration), driver actions, circuit admission, effect application (``effects``) and the
effects that wait for retry (``pending``), and the bus handlers. This module starts and stops
them, runs the periodic work (tick, checkpoint, telemetry flush) and routes every step's effects.

Handlers step plugs synchronously (no await between reading a plug and changing it), then hand
the effects to ``apply``, which keeps the registry's indexes true before anything else can run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import structlog

from evplug.bus.base import Bus, BusError, Subscription
from evplug.clock import Clock
from evplug.contracts import subjects
from evplug.core.circuits import DEFAULT_CIRCUIT_LIMIT_A
from evplug.core.plug import Effect, Plug, Prompt, Settings, State
from evplug.mothership.accounts import Accounts
from evplug.mothership.actions import DriverActions
from evplug.mothership.admission import CircuitAdmission, LoadSettings
from evplug.mothership.checkpoint import Checkpoints
from evplug.mothership.driver_requests import DriverRequests
from evplug.mothership.effects import EffectApplier
from evplug.mothership.events import EventHook
from evplug.mothership.handlers import BusHandlers
from evplug.mothership.pending import PendingEffects
from evplug.mothership.registry import PlugRegistry
from evplug.mothership.status import StatusPublisher
from evplug.payments.auto_top_up import AutoTopUps
from evplug.payments.guest import GuestHolds
from evplug.settings import MothershipSettings
from evplug.store.repository import Repository
from evplug.store.telemetry import ReadingSink

log = structlog.get_logger(__name__)


_DEFAULTS = MothershipSettings()  # the settings hold each default once


@dataclass
class MothershipConfig:
    plug_settings: Settings = field(default_factory=Settings)
    tick_s: float = _DEFAULTS.tick_s
    checkpoint_s: float = _DEFAULTS.checkpoint_s
    ack_wait_s: float = _DEFAULTS.ack_wait_s
    status_interval_s: float = _DEFAULTS.status_interval_s
    # Readings stamped later than this are refused.
    max_clock_ahead_ms: int = round(_DEFAULTS.max_clock_ahead_s * 1000)
    load: LoadSettings = field(default_factory=LoadSettings)
    default_circuit_limit_a: float = DEFAULT_CIRCUIT_LIMIT_A


@dataclass(frozen=True, slots=True)
class Background:
    """Work the mothership runs beside its own loops (telemetry upkeep, the InfluxDB export).

    ``work`` runs every ``every_s``; ``finish``, if any, once when the mothership stops, after
    its last telemetry flush.
    """

    name: str
    every_s: float
    work: Callable[[], Awaitable[None]]
    finish: Callable[[], Awaitable[None]] | None = None


class Mothership:
    def __init__(
        self,
        bus: Bus,
        repo: Repository,
        sink: ReadingSink,
        clock: Clock,
        config: MothershipConfig | None = None,
        name: str = "mothership",
        top_ups: AutoTopUps | None = None,
        guests: GuestHolds | None = None,
        background: Sequence[Background] = (),
    ) -> None:
        self.bus = bus
        self.repo = repo
        self.sink = sink
        self.clock = clock
        self.config = config = config or MothershipConfig()
        self.name = name
        self.background = list(background)
        self.events = EventHook()
        self.registry = PlugRegistry(repo, config.plug_settings, config.default_circuit_limit_a)
        self.effects = EffectApplier(repo, bus, self.events, clock)
        self.pending = PendingEffects(
            self.effects, clock, lambda plug: self.registry.site_of[plug.plug_id]
        )
        self.checkpoints = Checkpoints(self.registry, self.pending, self.effects, repo, clock)
        self.admission = CircuitAdmission(self.registry, clock, self.apply, config.load)
        self.actions = DriverActions(
            self.registry,
            repo,
            clock,
            self.apply,
            config.plug_settings.min_start_credit_cents,
        )
        self.accounts = Accounts(self.registry, repo, clock, self.apply, top_ups, guests)
        self.events.attach(self.accounts.on_event)
        self.handlers = BusHandlers(
            self.registry,
            sink,
            bus,
            clock,
            self.apply,
            self.submit_many,
            config.max_clock_ahead_ms,
            self.accounts,
            self._run,
        )
        self.status: StatusPublisher | None = None  # once started: it needs the bus's store
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Future[None]] = set()

    @property
    def plugs(self) -> dict[str, Plug]:
        return self.registry.plugs

    def plug(self, plug_id: str) -> Plug:
        return self.registry.get(plug_id)

    async def choose(self, plug_id: str, prompt: Prompt, user_id: str) -> Plug:
        return await self.actions.choose(plug_id, prompt, user_id)

    # -- lifecycle ---------------------------------------------------------------------------

    async def prepare(self) -> StatusPublisher:
        """Hydrate the plugs, publish their status and answer drivers; nothing runs by itself."""
        await self.registry.hydrate(self.config.load.default_draw_a)
        self.status = status = StatusPublisher(
            self.registry,
            self.repo,
            await self.bus.key_value(subjects.PLUG_STATUS_BUCKET),
            self.clock,
            self.admission.outlook,
        )
        self.events.attach(status.on_event)
        status.publish_all()
        requests = DriverRequests(self.registry, self.actions, status)
        self._subscriptions.append(
            await self.bus.serve(
                subjects.all_sites(subjects.DRIVER), requests.respond, queue=self.name
            )
        )
        return status

    async def start(self) -> None:
        """``prepare``, then take the bus's messages and run the periodic work."""
        status = await self.prepare()
        on = self.handlers
        wait = self.config.ack_wait_s
        self._subscriptions += [
            await self.bus.subscribe(
                subjects.all_sites(subjects.ANNOUNCE), f"{self.name}-announce", on.on_announce, wait
            ),
            await self.bus.subscribe(
                subjects.all_sites(subjects.RESPONSES),
                f"{self.name}-responses",
                on.on_response,
                wait,
            ),
            await self.bus.subscribe(
                subjects.BALANCE_CHANGED, f"{self.name}-balances", on.on_balance_changed, wait
            ),
            await self.bus.subscribe(
                subjects.all_sites(subjects.TELEMETRY),
                f"{self.name}-telemetry",
                on.on_telemetry,
                wait,
                max_ack_pending=10_000,
            ),
        ]
        self._tasks = [
            asyncio.create_task(self._every(self.sink.max_delay_s, self.sink.flush, "flush")),
            asyncio.create_task(self._every(self.config.tick_s, self.tick, "tick")),
            asyncio.create_task(
                self._every(self.config.checkpoint_s, self.checkpoint, "checkpoint")
            ),
            asyncio.create_task(self._every(self.config.status_interval_s, status.flush, "status")),
            *(asyncio.create_task(self._every(b.every_s, b.work, b.name)) for b in self.background),
        ]
        log.info("mothership.started", plugs=len(self.plugs))

    async def stop(self) -> None:
        for sub in self._subscriptions:
            await sub.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Work the loops had started runs to its end: a write cut off holds the database lock.
        for work in list(self._in_flight):
            with contextlib.suppress(Exception):
                await work
        await self.accounts.drain()
        self._subscriptions, self._tasks = [], []
        await self.pending.idle()
        try:
            await self.sink.flush()
        except BusError as exc:
            # The readings are committed; their messages come back and are ignored as repeats.
            log.warning("mothership.acks_not_sent", error=str(exc))
        for finishing in self.background:
            if finishing.finish is not None:
                try:
                    await finishing.finish()
                except Exception:
                    log.exception("mothership.finish_failed", work=finishing.name)
        await self.checkpoint()
        if self.status is not None:
            try:
                await self.status.flush()
            except BusError as exc:
                # What the web shows is rebuilt from the plugs at the next start; the store,
                # which bills, is already written.
                log.warning("mothership.status_not_flushed", error=str(exc))

    async def checkpoint(self) -> None:
        """Save the meters of plugs in session that moved (transitions are saved with effects)."""
        await self.checkpoints.run()

    # -- effects -----------------------------------------------------------------------------

    async def apply(self, plug: Plug, effects: Sequence[Effect]) -> bool:
        """Apply one plug's effects after any of its that wait; admit its circuit if it queues.

        True when the message that caused them may be acked: they are applied, or their plug is
        stuck (its effects stay queued and retried; holding the message would pin the stream).
        """
        self.registry.track(plug)
        if not effects:  # a change with no effects to carry its snapshot (a credit change)
            self.checkpoints.touched(plug.plug_id)
        settled = await self.pending.apply(plug, effects)
        if plug.state is State.IN_QUEUE:
            await self.admission.admit(self.registry.site_of[plug.plug_id])
        return settled

    def submit_many(self, effects: Sequence[Effect]) -> list[asyncio.Future[bool]]:
        """Queue a chunk's effects, grouped by plug in their order, without waiting for them.

        Each future tells, as ``apply`` does, whether one plug's effects may be acked.
        """
        by_plug: dict[str, list[Effect]] = {}
        for effect in effects:
            by_plug.setdefault(effect.plug_id, []).append(effect)
        futures = []
        queued_sites = set()
        for plug_id, plug_effects in by_plug.items():
            plug = self.registry.plugs[plug_id]
            self.registry.track(plug)
            futures.append(self.pending.submit(plug, plug_effects))
            if plug.state is State.IN_QUEUE:
                queued_sites.add(self.registry.site_of[plug_id])
        for site_id in queued_sites:  # a relay found off puts its plug back in the queue
            self._run(self._admit_after(site_id, futures))
        return futures

    async def _admit_after(self, site_id: str, futures: list[asyncio.Future[bool]]) -> None:
        await asyncio.gather(*futures)
        await self.admission.admit(site_id)

    def _run(self, work: Awaitable[None]) -> None:
        """Run ``work`` on its own; ``stop`` lets it end."""
        future = asyncio.ensure_future(work)
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)

    # -- time --------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Retry what waits, move timed states on (effects batched), manage each site's load."""
        await self.pending.retry_due()
        now = self.clock.now_ms()
        plugs = [self.registry.plugs[plug_id] for plug_id in self.registry.active]
        stepped = [(p, p.tick(now)) for p in plugs if p.state is not State.IN_QUEUE]
        # Queued together, so they share batches; each plug's still in its order.
        await asyncio.gather(*(self.apply(plug, effects) for plug, effects in stepped if effects))
        for site_id in self.registry.sites_drawing():
            await self.admission.manage(site_id)

    async def _every(self, seconds: float, work: Callable[[], Awaitable[None]], what: str) -> None:
        """Run ``work`` every ``seconds``; stopping cancels the wait, never the work itself."""
        while True:
            await self.clock.sleep(seconds)
            future = asyncio.ensure_future(work())
            self._run(future)
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("mothership.periodic_failed", work=what)
