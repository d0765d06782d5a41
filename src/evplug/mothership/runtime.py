"""The mothership: one state machine per plug in memory, fed by the bus, hydrated from the store.

Handlers step plugs synchronously (no await between reading a plug and changing it), then hand
the effects to the ``EffectApplier``. A bus message is acked only once what it caused is on disk:
telemetry after its readings are flushed, commands' answers after their effects are applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from evplug.bus.base import Bus, Message, Subscription
from evplug.clock import Clock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import WireError, pack, unpack
from evplug.core import circuits
from evplug.core.plug import (
    DRAWING_STATES,
    TIMED_STATES,
    Effect,
    Plug,
    Prompt,
    Settings,
    State,
    Transitioned,
)
from evplug.core.pricing import DEFAULT_CURRENCY, DEFAULT_PRICE_CENTS_PER_KWH
from evplug.mothership.effects import EffectApplier
from evplug.mothership.ingest import ForeignChunk, IngestStats, actual_state, process_chunk
from evplug.store.repository import Repository, UnknownUser
from evplug.store.telemetry import ReadingSink

log = structlog.get_logger(__name__)


class UnknownPlug(LookupError):
    pass


class EffectsParked(RuntimeError):
    """Some effects could not be applied yet; the message that caused them stays unacked."""


class ActionRefused(ValueError):
    """A driver's request that cannot be carried out, with a message the driver can act on."""


@dataclass
class MothershipConfig:
    plug_settings: Settings = field(default_factory=Settings)
    tick_s: float = 1.0
    checkpoint_s: float = 5.0
    ack_wait_s: float = 30.0
    max_clock_ahead_ms: int = 5 * 60_000  # readings stamped later than this are refused
    plug_allowance_a: float = circuits.DEFAULT_PLUG_ALLOWANCE_A
    default_circuit_limit_a: float = circuits.DEFAULT_CIRCUIT_LIMIT_A


class Mothership:
    def __init__(
        self,
        bus: Bus,
        repo: Repository,
        sink: ReadingSink,
        clock: Clock,
        config: MothershipConfig | None = None,
        name: str = "mothership",
    ) -> None:
        self.bus = bus
        self.repo = repo
        self.sink = sink
        self.clock = clock
        self.config = config or MothershipConfig()
        self.name = name
        self.effects = EffectApplier(repo, bus)
        self.effects.listeners.append(self._track)
        self.plugs: dict[str, Plug] = {}
        self.site_of: dict[str, str] = {}
        self.site_plugs: dict[str, dict[str, Plug]] = defaultdict(dict)
        self.circuit_plugs: dict[str, list[Plug]] = defaultdict(list)
        self.circuit_limits: dict[str, float] = {}
        self.active: set[str] = set()  # plugs that need ticks or admission
        self.stats = IngestStats()
        self._warned: set[str] = set()
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Future[None]] = set()
        self._parked: dict[str, list[Effect]] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.hydrate()
        durable = self.name
        wait = self.config.ack_wait_s
        self._subscriptions = [
            await self.bus.subscribe(
                subjects.all_sites(subjects.ANNOUNCE),
                f"{durable}-announce",
                self._on_announce,
                wait,
            ),
            await self.bus.subscribe(
                subjects.all_sites(subjects.RESPONSES),
                f"{durable}-responses",
                self._on_response,
                wait,
            ),
            await self.bus.subscribe(
                subjects.all_sites(subjects.TELEMETRY),
                f"{durable}-telemetry",
                self._on_telemetry,
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
        self._subscriptions, self._tasks = [], []
        await self.sink.flush()
        await self.checkpoint()

    async def hydrate(self) -> None:
        """Rebuild every plug's state machine from the store, as it was before a restart."""
        self.circuit_limits = await self.repo.circuits()
        allowance = self.config.plug_allowance_a
        for circuit, limit in self.circuit_limits.items():
            if limit < allowance:
                log.error(
                    "circuit.too_small",
                    circuit=circuit,
                    limit_a=limit,
                    fix=f"no plug on it can start: one car is allowed {allowance} A;"
                    " correct its limit in the site config",
                )
        for record in await self.repo.load_plugs():
            snapshot = dict(record.snapshot) or {"plug_id": record.id, "fuze_id": record.fuze_id}
            self._add_plug(Plug.restore(snapshot, self.config.plug_settings), record.site_id)
        log.info("mothership.hydrated", plugs=len(self.plugs), active=len(self.active))

    def _add_plug(self, plug: Plug, site_id: str) -> None:
        self.plugs[plug.plug_id] = plug
        self.site_of[plug.plug_id] = site_id
        self.site_plugs[site_id][plug.plug_id] = plug
        self.circuit_plugs[circuit_key(site_id, plug.fuze_id)].append(plug)
        self._track_state(plug)

    async def checkpoint(self) -> None:
        """Save the meters of plugs with an open session (transitions are saved as they happen)."""
        # Under the effects lock: a snapshot taken before a session closed must not land after.
        async with self.effects.lock:
            snapshots = [p.snapshot() for p in self.plugs.values() if p.session_id]
            if snapshots:
                await self.repo.save_plugs(snapshots, self.clock.now_ms())

    # -- bus handlers ------------------------------------------------------------------------

    async def _on_telemetry(self, msg: Message) -> None:
        site_id = subjects.site_of(msg.subject)
        try:
            rows, effects = process_chunk(
                msg.data,
                site_id,
                self.site_plugs,
                self.stats,
                self._warned,
                not_after_ms=self.clock.now_ms() + self.config.max_clock_ahead_ms,
            )
        except (WireError, ForeignChunk) as exc:
            self.stats.rejected_chunks += 1
            log.warning("ingest.rejected_chunk", site=site_id, error=str(exc))
            await msg.ack()  # a poison message would otherwise come back forever
            return
        await self._apply_all(effects)
        await self.sink.add(rows, msg.ack, key=msg.msg_id or None)

    async def _on_response(self, msg: Message) -> None:
        site_id = subjects.site_of(msg.subject)
        try:
            response = unpack(msg.data, pb.LocalStateResponse)
        except WireError as exc:
            log.warning("response.rejected", site=site_id, error=str(exc))
            await msg.ack()
            return
        plug = self.site_plugs.get(site_id, {}).get(response.plug_id)
        if plug is None:
            log.warning("response.unknown_plug", site=site_id, plug_id=response.plug_id)
            await msg.ack()
            return
        actual = actual_state(response.actual_state)
        if not response.ok:
            log.warning("relay.command_failed", plug_id=plug.plug_id, error=response.error)
        effects = plug.relay_response(response.request_id, actual, response.ok, self.clock.now_ms())
        await self._apply(plug, effects)
        await msg.ack()

    async def _on_announce(self, msg: Message) -> None:
        site_id = subjects.site_of(msg.subject)
        try:
            announcement = unpack(msg.data, pb.DeviceAnnouncement)
        except WireError as exc:
            log.warning("announce.rejected", site=site_id, error=str(exc))
            await msg.ack()
            return
        ack = pb.DeviceAnnouncementAck(
            site_id=site_id, announcement_id=announcement.announcement_id
        )
        if announcement.site_id != site_id or await self.repo.get_site(site_id) is None:
            log.warning("announce.unknown_site", site=site_id, claimed=announcement.site_id)
            ack.rejected_plug_ids.extend(d.plug_id for d in announcement.devices)
        else:
            for device in announcement.devices:
                if await self._register(site_id, device):
                    ack.accepted_plug_ids.append(device.plug_id)
                else:
                    ack.rejected_plug_ids.append(device.plug_id)
        await self.bus.publish(
            subjects.for_site(subjects.ANNOUNCE_ACK, site_id),
            pack(ack),
            msg_id=f"{site_id}:{announcement.announcement_id}:ack",
        )
        await msg.ack()

    async def _register(self, site_id: str, device: pb.Device) -> bool:
        owner = self.site_of.get(device.plug_id)
        if owner is not None:
            if owner != site_id:
                log.warning("announce.plug_of_other_site", plug_id=device.plug_id, owner=owner)
                return False
            return True
        fuze_id = device.fuze_id or device.plug_id
        circuit = circuit_key(site_id, fuze_id)
        if circuit not in self.circuit_limits:
            self.circuit_limits[circuit] = self.config.default_circuit_limit_a
            await self.repo.ensure_circuit(circuit, site_id, self.config.default_circuit_limit_a)
        plug = Plug(device.plug_id, fuze_id, self.config.plug_settings)
        record = await self.repo.register_plug(
            device.plug_id, site_id, fuze_id, device.model, plug.snapshot()
        )
        if record.site_id != site_id:
            return False
        self._add_plug(Plug.restore(record.snapshot, self.config.plug_settings), site_id)
        log.info("plug.registered", plug_id=device.plug_id, site=site_id, fuze=fuze_id)
        return True

    # -- driver and technician actions -------------------------------------------------------

    def plug(self, plug_id: str) -> Plug:
        try:
            return self.plugs[plug_id]
        except KeyError:
            raise UnknownPlug(f"no plug {plug_id!r}") from None

    async def choose(self, plug_id: str, prompt: Prompt, user_id: str) -> Plug:
        """A driver picked one of the prompts the plug offers."""
        plug = self.plug(plug_id)
        now = self.clock.now_ms()
        if prompt is Prompt.ENABLE_SOCKET:
            kwargs = await self._session_terms(plug, user_id)
            self._refuse_if_busy(user_id)  # again: another Enable may have come in meanwhile
            effects = plug.choose(prompt, now, **kwargs)
        else:
            if plug.user_id and plug.user_id != user_id:
                raise ActionRefused("this socket is in use by another driver")
            effects = plug.choose(prompt, now)
        await self._apply(plug, effects)
        return plug

    async def _session_terms(self, plug: Plug, user_id: str) -> dict[str, Any]:
        self._refuse_if_busy(user_id)
        try:
            user = await self.repo.get_user(user_id)
        except UnknownUser:
            raise ActionRefused("no such driver: sign in again") from None
        if user.balance_cents < self.config.plug_settings.min_start_credit_cents:
            raise ActionRefused("your balance is too low to start: top up first")
        site = await self.repo.get_site(self.site_of[plug.plug_id])
        price = site.price_cents_per_kwh if site else DEFAULT_PRICE_CENTS_PER_KWH
        return {
            "session_id": uuid.uuid4().hex,
            "user_id": user_id,
            "credit_cents": user.balance_cents,
            "price_cents_per_kwh": price,
        }

    def _refuse_if_busy(self, user_id: str) -> None:
        busy = next((p for p in self.plugs.values() if p.user_id == user_id), None)
        if busy is not None:
            raise ActionRefused(f"you already have a session on {busy.plug_id}")

    async def _apply(self, plug: Plug, effects: Sequence[Effect]) -> None:
        """Apply one plug's effects after any that failed before, in order.

        The plug has already moved on in memory, so effects that cannot be written now (store or
        bus down) are parked and retried every tick: dropping them would lose a bill.
        """
        parked = self._parked.pop(plug.plug_id, None)
        batch = [*parked, *effects] if parked else effects
        if batch:
            try:
                await self.effects.apply(self.site_of[plug.plug_id], plug, batch)
            except Exception:
                self._parked[plug.plug_id] = list(batch)
                log.exception(
                    "effects.parked",
                    plug_id=plug.plug_id,
                    effects=len(batch),
                    fix="retried every tick: check that the database and the bus are reachable",
                )
                raise
        if plug.state is State.IN_QUEUE:
            await self._admit(circuit_key(self.site_of[plug.plug_id], plug.fuze_id))

    async def _apply_all(self, effects: list[Effect]) -> None:
        """Apply a batch of effects from many plugs, grouped by plug in their order."""
        by_plug: dict[str, list[Effect]] = {}
        for effect in effects:
            by_plug.setdefault(effect.plug_id, []).append(effect)
        failed = 0
        for plug_id, plug_effects in by_plug.items():
            try:
                await self._apply(self.plugs[plug_id], plug_effects)
            except Exception:
                failed += 1  # parked; the other plugs' effects still go out
        if failed:
            raise EffectsParked(f"effects of {failed} plugs parked for retry")

    # -- time --------------------------------------------------------------------------------

    async def tick(self) -> None:
        for plug_id in list(self._parked):
            with contextlib.suppress(Exception):  # logged by _apply, parked again
                await self._apply(self.plugs[plug_id], ())
        now = self.clock.now_ms()
        circuits_waiting = set()
        for plug_id in list(self.active):
            plug = self.plugs[plug_id]
            if plug.state is State.IN_QUEUE:
                circuits_waiting.add(circuit_key(self.site_of[plug_id], plug.fuze_id))
            else:
                await self._apply(plug, plug.tick(now))
        for circuit in circuits_waiting:
            await self._admit(circuit)

    async def _admit(self, circuit: str) -> None:
        plugs = self.circuit_plugs[circuit]
        queued = [(p.queued_at_ms, p.plug_id) for p in plugs if p.state is State.IN_QUEUE]
        if not queued:
            return
        drawing = sum(1 for p in plugs if p.state in DRAWING_STATES)
        limit = self.circuit_limits.get(circuit, self.config.default_circuit_limit_a)
        for plug_id in circuits.admit(queued, drawing, limit, self.config.plug_allowance_a):
            plug = self.plugs[plug_id]
            if plug.state is State.IN_QUEUE:  # a driver may have given up since the list was made
                await self._apply(plug, plug.admit(self.clock.now_ms()))

    async def _every(self, seconds: float, work: Callable[[], Awaitable[None]], what: str) -> None:
        """Run ``work`` every ``seconds``; stopping cancels the wait, never the work itself."""
        while True:
            await self.clock.sleep(seconds)
            future = asyncio.ensure_future(work())
            self._in_flight.add(future)
            future.add_done_callback(self._in_flight.discard)
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("mothership.periodic_failed", work=what)

    def _track(self, effect: Effect) -> None:
        if isinstance(effect, Transitioned):
            self._track_state(self.plugs[effect.plug_id])

    def _track_state(self, plug: Plug) -> None:
        if plug.state in TIMED_STATES or plug.state is State.IN_QUEUE:
            self.active.add(plug.plug_id)
        else:
            self.active.discard(plug.plug_id)

    # -- views -------------------------------------------------------------------------------

    def status(self, plug_id: str) -> dict[str, Any]:
        plug = self.plug(plug_id)
        return {
            "plug_id": plug.plug_id,
            "site_id": self.site_of[plug_id],
            "fuze_id": plug.fuze_id,
            "state": str(plug.state),
            "actual": plug.actual,
            "prompts": [str(p) for p in plug.prompts],
            "power_w": round(plug.power_w, 1),
            "session_id": plug.session_id,
            "user_id": plug.user_id,
            "session_kwh": round(plug.energy_wh / 1000, 3),
            "session_cents": plug.session_cost_cents if plug.session_id else 0,
            "currency": DEFAULT_CURRENCY,
        }


def circuit_key(site_id: str, fuze_id: str) -> str:
    """Fuze ids are the site's own names: scope them by site."""
    return f"{site_id}/{fuze_id}"
