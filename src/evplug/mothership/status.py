"""Each plug's status, as drivers see it, kept in the bus's plug-status store for the web.

The web never holds a plug: it watches this store. A plug's status is put when it changes — a
transition at once (at the next flush), the meter of a running session at most once per flush
interval — so a site's readings every two seconds do not become a write per reading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

from evplug.bus.base import KeyValue
from evplug.clock import Clock
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import pack
from evplug.core.circuits import Outlook
from evplug.core.plug import Effect, Plug, SessionClosed, SessionOpened, Transitioned
from evplug.core.pricing import DEFAULT_CURRENCY, DEFAULT_PRICE_CENTS_PER_KWH
from evplug.mothership.registry import PlugRegistry
from evplug.store.repository import Repository

log = structlog.get_logger(__name__)


class StatusPublisher:
    def __init__(
        self,
        registry: PlugRegistry,
        repo: Repository,
        store: KeyValue,
        clock: Clock,
        outlook: Callable[[Plug], Outlook | None] = lambda plug: None,
    ) -> None:
        self.registry = registry
        self.outlook = outlook
        self.repo = repo
        self.store = store
        self.clock = clock
        self._dirty: set[str] = set()
        self._published: dict[str, bytes] = {}
        self._last_end_reason: dict[str, str] = {}
        self._terms: dict[str, tuple[int, str]] = {}  # site -> (price, currency)

    def on_event(self, effect: Effect) -> None:
        """The event hook's listener: what changed a plug's status marks it for the next flush."""
        if isinstance(effect, Transitioned):
            self._dirty.add(effect.plug_id)
        elif isinstance(effect, SessionClosed):
            self._last_end_reason[effect.plug_id] = effect.reason
        elif isinstance(effect, SessionOpened):
            self._last_end_reason.pop(effect.plug_id, None)

    async def publish_all(self) -> None:
        """Put every plug's status, e.g. at start-up, so the store holds every plug."""
        self._dirty.update(self.registry.plugs)
        await self.flush()

    async def flush(self) -> None:
        """Put the status of every plug that changed, and of every running session's meter."""
        dirty, self._dirty = self._dirty, set()
        dirty.update(self.registry.plugs_in_session())
        await self._put(self.registry.plugs[p] for p in dirty if p in self.registry.plugs)

    async def _put(self, plugs: Iterable[Plug]) -> None:
        for plug in plugs:
            status = await self.build(plug)
            status.timestamp_ms = 0  # compared without it: an unchanged plug is not put again
            unchanged = status.SerializeToString(deterministic=True)
            if self._published.get(plug.plug_id) == unchanged:
                continue
            status.timestamp_ms = self.clock.now_ms()
            site_id = self.registry.site_of[plug.plug_id]
            await self.store.put(subjects.status_key(site_id, plug.plug_id), pack(status))
            self._published[plug.plug_id] = unchanged

    async def build(self, plug: Plug) -> pb.PlugStatus:
        site_id = self.registry.site_of[plug.plug_id]
        price, currency = await self._site_terms(site_id)
        in_session = bool(plug.session_id)
        outlook = self.outlook(plug)
        return pb.PlugStatus(
            plug_id=plug.plug_id,
            site_id=site_id,
            fuze_id=plug.fuze_id,
            state=str(plug.state),
            prompts=[str(p) for p in plug.prompts],
            actual_state=int(plug.actual),
            active_power_w=round(plug.power_w, 1),
            session_id=plug.session_id,
            session_started_ms=plug.session_started_ms if in_session else 0,
            session_energy_wh=round(plug.energy_wh, 1) if in_session else 0.0,
            session_cost_cents=plug.session_cost_cents if in_session else 0,
            price_cents_per_kwh=plug.price_cents_per_kwh if in_session else price,
            currency=currency,
            last_end_reason="" if in_session else self._last_end_reason.get(plug.plug_id, ""),
            timestamp_ms=self.clock.now_ms(),
            queue_position=outlook.position if outlook else 0,
            queue_eta_min=_wire_minutes(outlook) if outlook else 0,
        )

    async def _site_terms(self, site_id: str) -> tuple[int, str]:
        terms = self._terms.get(site_id)
        if terms is None:
            site = await self.repo.sites.get_site(site_id)
            terms = (
                (site.price_cents_per_kwh, site.currency)
                if site
                else (DEFAULT_PRICE_CENTS_PER_KWH, DEFAULT_CURRENCY)
            )
            self._terms[site_id] = terms
        return terms


def _wire_minutes(outlook: Outlook) -> int:
    """Whole minutes (a status changing every second would be put at every flush); -1: never."""
    return -1 if outlook.eta_min is None else outlook.eta_min
