"""The plug registry: every plug's state machine in memory, and the lookups around it.

It hydrates the plugs from the store at start, registers plugs that sites announce, and keeps the
indexes the other parts need (by site, by circuit, by driver, and the plugs that need the passing
of time) in step with the plugs themselves.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from sys import intern

import structlog

from evplug.contracts import evplug_pb2 as pb
from evplug.core.circuits import SITE_SUPPLY, Circuit, CircuitTree
from evplug.core.plug import TIMED_STATES, Plug, Settings, State
from evplug.store.repository import Repository

log = structlog.get_logger(__name__)


class UnknownPlug(LookupError):
    pass


def circuit_key(site_id: str, fuze_id: str) -> str:
    """Fuze ids are the site's own names: scope them by site."""
    return f"{site_id}/{fuze_id}"


class PlugRegistry:
    def __init__(self, repo: Repository, plug_settings: Settings, default_limit_a: float) -> None:
        self.repo = repo
        self.plug_settings = plug_settings
        self.default_limit_a = default_limit_a
        self.plugs: dict[str, Plug] = {}
        self.site_of: dict[str, str] = {}
        self.site_plugs: dict[str, dict[str, Plug]] = defaultdict(dict)
        self.circuit_limits: dict[str, float] = {}
        self.circuit_parents: dict[str, str] = {}
        self._tree: CircuitTree | None = None
        self.active: set[str] = set()  # plugs that need ticks or admission
        # The current each plug's relay measured in its newest reading (0: it measures none),
        # kept by ingest as it steps the plugs.
        self.current_a: dict[str, float] = {}
        # Each driver's plugs with an open session (a household may charge two cars at once).
        self._plugs_of_user: dict[str, set[str]] = defaultdict(set)
        self._user_of_plug: dict[str, str] = {}
        self.users_sharing: set[str] = set()  # drivers with more than one open session

    def get(self, plug_id: str) -> Plug:
        try:
            return self.plugs[plug_id]
        except KeyError:
            raise UnknownPlug(f"no plug {plug_id!r}: check the code on the socket") from None

    def circuit_of(self, plug: Plug) -> str:
        return circuit_key(self.site_of[plug.plug_id], plug.fuze_id)

    def tree(self) -> CircuitTree:
        """Every site's circuits, each under its parent."""
        if self._tree is None:
            self._tree = CircuitTree(
                Circuit(c, limit, self.circuit_parents.get(c))
                for c, limit in self.circuit_limits.items()
            )
        return self._tree

    def plugs_of_user(self, user_id: str) -> list[Plug]:
        """The plugs holding this driver's open sessions, in plug id order."""
        return [self.plugs[p] for p in sorted(self._plugs_of_user.get(user_id, ()))]

    # -- keeping the indexes true ------------------------------------------------------------

    def track(self, plug: Plug) -> None:
        """Bring the indexes in line with ``plug`` after it has stepped (before any await)."""
        if plug.state in TIMED_STATES or plug.state is State.IN_QUEUE:
            self.active.add(plug.plug_id)
        else:
            self.active.discard(plug.plug_id)
        owner = self._user_of_plug.get(plug.plug_id, "")
        if owner == plug.user_id:
            return
        if owner:
            held = self._plugs_of_user[owner]
            held.discard(plug.plug_id)
            if len(held) < 2:
                self.users_sharing.discard(owner)
            if not held:
                del self._plugs_of_user[owner]
        if plug.user_id:
            held = self._plugs_of_user[plug.user_id]
            held.add(plug.plug_id)
            if len(held) > 1:
                self.users_sharing.add(plug.user_id)
            self._user_of_plug[plug.plug_id] = plug.user_id
        else:
            del self._user_of_plug[plug.plug_id]

    def add(self, plug: Plug, site_id: str) -> None:
        self.plugs[plug.plug_id] = plug
        self.site_of[plug.plug_id] = site_id
        self.site_plugs[site_id][plug.plug_id] = plug
        circuit = circuit_key(site_id, plug.fuze_id)
        if circuit not in self.circuit_limits:  # a plug stored before its circuit was
            self.circuit_limits[circuit] = self.default_limit_a
            self._tree = None
        self.track(plug)

    # -- the store ---------------------------------------------------------------------------

    async def hydrate(self, default_draw_a: float) -> None:
        """Rebuild every plug's state machine from the store, as it was before a restart.

        A circuit tree that cannot be (a loop, a missing parent) raises ``CircuitError``.
        """
        self.circuit_limits = await self.repo.sites.circuits()
        self.circuit_parents = await self.repo.sites.circuit_parents()
        self._tree = None
        self.tree()
        for circuit, limit in self.circuit_limits.items():
            if limit < default_draw_a:
                log.error(
                    "circuit.too_small",
                    circuit=circuit,
                    limit_a=limit,
                    fix=f"a car on it is expected to draw {default_draw_a} A until it has"
                    " charged once: correct its limit in the site config",
                )
        # Every plug is made here at once, and none is garbage: collections meanwhile would only
        # traverse the growing heap again and again (a fifth of a start's time).
        collecting = gc.isenabled()
        gc.disable()
        try:
            async for part in self.repo.sites.plug_snapshots():
                for record in part:
                    snapshot = record.snapshot or {"plug_id": record.id, "fuze_id": record.fuze_id}
                    plug = Plug.restore(snapshot, self.plug_settings)
                    # One string for the ids plugs share: a relay's channels, a site's plugs.
                    # (A plug's own id is one string already: every index holds the plug's.)
                    plug.fuze_id = intern(plug.fuze_id)
                    self.add(plug, intern(record.site_id))
        finally:
            if collecting:
                gc.enable()
        self.keep_for_good()
        log.info("mothership.hydrated", plugs=len(self.plugs), active=len(self.active))

    @staticmethod
    def keep_for_good() -> None:
        """Once the plugs are made: they live as long as the process, so out of the collector's
        way, and a full collection walks what came since, not every plug (a 100-200 ms pause at
        100,000 plugs, taken in the middle of whatever the loop does). What is alive now is
        frozen with them (the engine, the bus client): collected first, so no garbage of the
        start is kept; a cycle they make later and drop is kept too."""
        gc.collect()
        gc.freeze()

    async def register(self, site_id: str, device: pb.Device) -> bool:
        """Take on a plug a site announced; False when it belongs to another site."""
        owner = self.site_of.get(device.plug_id)
        if owner is not None:
            if owner != site_id:
                log.warning("announce.plug_of_other_site", plug_id=device.plug_id, owner=owner)
                return False
            return True
        fuze_id = device.fuze_id or device.plug_id
        circuit = circuit_key(site_id, fuze_id)
        if circuit not in self.circuit_limits:
            # A relay the site file gave no circuit for is under the site's supply, if any.
            supply = circuit_key(site_id, SITE_SUPPLY)
            parent = supply if supply in self.circuit_limits and supply != circuit else None
            await self.repo.sites.ensure_circuit(circuit, site_id, self.default_limit_a, parent)
            self.circuit_limits[circuit] = self.default_limit_a
            if parent is not None:
                self.circuit_parents[circuit] = parent
            self._tree = None
        plug = Plug(device.plug_id, fuze_id, self.plug_settings)
        record = await self.repo.sites.register_plug(
            device.plug_id, site_id, fuze_id, device.model, plug.snapshot()
        )
        if record.site_id != site_id:
            return False
        self.add(Plug.restore(record.snapshot, self.plug_settings), site_id)
        log.info("plug.registered", plug_id=device.plug_id, site=site_id, fuze=fuze_id)
        return True

    def sites_drawing(self) -> set[str]:
        """The sites with a plug queued or on: every such plug holds a session."""
        return {self.site_of[plug_id] for plug_id in self._user_of_plug}

    def plugs_in_session(self) -> list[str]:
        return list(self._user_of_plug)
