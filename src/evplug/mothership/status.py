"""Each plug's status, as drivers see it, kept in the bus's plug-status store for the web.

The web never holds a plug: it watches this store. A plug's status is put when it changes — a
transition at once (at the next flush), the meter of a running session at most once per flush
interval — so a site's readings every two seconds do not become a write per reading.

A flush never walks every plug on the loop that reads telemetry: it builds at most ``page_plugs``
statuses beyond those of transitions. Running meters are refreshed a page at a time, in turn,
and so is the status of every plug after a start, site by site.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator

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

# Statuses built in one flush besides those of transitions, and per page of a site.
PAGE_PLUGS = 2_000


class StatusPublisher:
    def __init__(
        self,
        registry: PlugRegistry,
        repo: Repository,
        store: KeyValue,
        clock: Clock,
        outlook: Callable[[Plug], Outlook | None] = lambda plug: None,
        page_plugs: int = PAGE_PLUGS,
    ) -> None:
        self.registry = registry
        self.outlook = outlook
        self.repo = repo
        self.store = store
        self.clock = clock
        self.page_plugs = page_plugs
        self._dirty: set[str] = set()
        # A hash of what was last put for each plug (its time aside): an unchanged one is not put.
        self._published: dict[str, int] = {}
        self._republish: deque[str] = deque()  # plugs still to put after a start, site by site
        self._meters: Iterator[str] = iter(())  # the running sessions not yet refreshed this turn
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

    def publish_all(self) -> None:
        """Put every plug's status again, e.g. after a start, a page per flush, site by site."""
        self._republish = deque(
            itertools.chain.from_iterable(
                self.registry.site_plugs[site] for site in sorted(self.registry.site_plugs)
            )
        )

    async def flush(self) -> None:
        """Put the status of every plug that changed, and a page of the rest that may have: the
        running sessions' meters in turn, and what remains to put after a start."""
        dirty, self._dirty = self._dirty, set()
        budget = self.page_plugs
        while budget > 0 and self._republish:
            dirty.add(self._republish.popleft())
            budget -= 1
        for plug_id in self._next_meters(budget):
            dirty.add(plug_id)
        await self._put(self.registry.plugs[p] for p in dirty if p in self.registry.plugs)

    def _next_meters(self, count: int) -> list[str]:
        """The next ``count`` plugs in session, in turn: each meter is refreshed in its turn."""
        taken = list(itertools.islice(self._meters, count))
        if len(taken) < count:
            self._meters = iter(self.registry.plugs_in_session())
            seen = set(taken)
            more = itertools.islice(self._meters, count - len(taken))
            taken += [p for p in more if p not in seen]
        return taken

    async def site_page(self, site_id: str, page: int, size: int) -> list[pb.PlugStatus]:
        """The statuses of one page of a site's plugs, in plug id order (page 0 first)."""
        plugs = self.registry.site_plugs.get(site_id, {})
        ids = sorted(plugs)[page * size : (page + 1) * size]
        return [await self.build(plugs[plug_id]) for plug_id in ids]

    async def _put(self, plugs: Iterable[Plug]) -> None:
        for plug in plugs:
            status = await self.build(plug)
            status.timestamp_ms = 0  # compared without it: an unchanged plug is not put again
            unchanged = hash(status.SerializeToString(deterministic=True))
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
