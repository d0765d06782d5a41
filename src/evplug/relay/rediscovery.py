"""Periodic rediscovery: relays that appear (or move) on the LAN join the running site.

Opt-in (``discovery = true`` in the site config) because mDNS multicasts on the LAN. Each round
asks the finder (mDNS browsing in production) what answers, drives whatever is not yet read at
that address, and hands it to the relay manager, which announces new plugs to the mothership.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from evplug.clock import Clock
from evplug.devices.discovery import DiscoveredDevice, discover
from evplug.devices.http_driver import normalize_url
from evplug.devices.registry import create_driver
from evplug.relay.manager import DeviceSpec, RelayManager

log = structlog.get_logger(__name__)

Finder = Callable[[], Awaitable[list[DiscoveredDevice]]]
DEFAULT_INTERVAL_S = 300.0


async def mdns_finder(listen_s: float = 3.0) -> list[DiscoveredDevice]:
    return await discover(listen_s)


class Rediscovery:
    def __init__(
        self,
        relay: RelayManager,
        clock: Clock,
        finder: Finder = mdns_finder,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.relay = relay
        self.clock = clock
        self.finder = finder
        self.interval_s = interval_s
        self.rounds = 0

    async def run_once(self) -> list[str]:
        """One round; the plug ids it added."""
        found = await self.finder()
        known = {normalize_url(a) for a in self.relay.addresses}
        fresh = [d for d in found if normalize_url(d.url) not in known]
        self.rounds += 1
        if not fresh:
            return []
        specs = [DeviceSpec(create_driver(d.driver, d.url)) for d in fresh]
        added = await self.relay.add_devices(specs)
        log.info("relay.rediscovered", found=len(found), new_addresses=len(fresh), new_plugs=added)
        return added

    async def run(self) -> None:
        """Every ``interval_s`` until cancelled; a failed round is logged and retried next time."""
        while True:
            await self.clock.sleep(self.interval_s)
            try:
                await self.run_once()
            except Exception:
                log.exception("relay.rediscovery_failed")
