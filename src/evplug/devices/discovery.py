"""mDNS discovery of relays: browse, resolve, and guess the family from the records.

``parse_service`` is pure and decides what a record is; ``discover`` only does the network
part. Nothing runs at import: browsing multicasts on the LAN, so the relay manager does it only
when the site config turns discovery on (tests run it inside a private network namespace).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

SHELLY, HTTP, EWELINK = "_shelly._tcp.local.", "_http._tcp.local.", "_ewelink._tcp.local."
SERVICE_TYPES = (SHELLY, HTTP, EWELINK)
RESOLVE_TIMEOUT_MS = 1500
MAC12 = re.compile(r"([0-9a-f]{12})$")


@dataclass(frozen=True, slots=True)
class DiscoveredDevice:
    family: str  # "shelly", "tasmota", "sonoff"
    driver: str  # registry name, e.g. "shelly_rpc"
    name: str  # mDNS instance name, e.g. "shellypro4pm-aabbccddeeff"
    host: str
    port: int
    hardware_id: str | None  # when the records carry the full MAC (or the eWeLink id)
    model: str | None = None  # Shelly "app" / eWeLink "type", when announced
    note: str = ""  # why the device may not be usable as found

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _instance(service_type: str, name: str) -> str:
    return name.removesuffix("." + service_type)


def _mac_suffix(instance: str) -> str | None:
    match = MAC12.search(instance.lower())
    return match[1] if match else None


def parse_service(
    service_type: str, name: str, host: str, port: int, txt: Mapping[str, str]
) -> DiscoveredDevice | None:
    """One resolved service -> a relay we have a driver for, or None (printers, NAS, ...)."""
    instance = _instance(service_type, name)
    lowered = instance.lower()
    if service_type == EWELINK:
        device_id = txt.get("id") or lowered.partition("_")[2] or None
        encrypted = txt.get("encrypt", "").lower() == "true"
        return DiscoveredDevice(
            "sonoff",
            "sonoff_diy",
            instance,
            host,
            port,
            device_id,
            txt.get("type"),
            note="encrypted eWeLink LAN mode: needs DIY mode" if encrypted else "",
        )
    gen = int(txt["gen"]) if txt.get("gen", "").isdigit() else None
    # Mixed-case names occur (ShellyPlugUS-C049EF8873E8): match the prefix case-insensitively.
    if service_type == SHELLY or (lowered.startswith("shelly") and gen is not None and gen >= 2):
        hardware_id = _mac_suffix(txt.get("id", instance))
        return DiscoveredDevice(
            "shelly", "shelly_rpc", instance, host, port, hardware_id, txt.get("app")
        )
    if lowered.startswith("shelly"):
        # Gen1: no gen TXT; older models name themselves by the last 6 MAC digits only.
        return DiscoveredDevice("shelly", "shelly_gen1", instance, host, port, _mac_suffix(lowered))
    if lowered.startswith("tasmota") or txt.get("devicetype", "").lower() == "tasmota":
        # The hostname carries only 6 MAC digits; connect() reads the full MAC.
        return DiscoveredDevice("tasmota", "tasmota", instance, host, port, None)
    return None


def decode_txt(properties: Mapping[bytes, bytes | None]) -> dict[str, str]:
    return {
        key.decode(errors="replace"): (value or b"").decode(errors="replace")
        for key, value in properties.items()
    }


def merge(found: dict[tuple[str, int], DiscoveredDevice], device: DiscoveredDevice) -> bool:
    """Keep one entry per address (a Gen2 Shelly answers on both ``_shelly`` and ``_http``).

    Returns True when the device is new."""
    key = (device.host, device.port)
    known = found.get(key)
    if known is None or (known.hardware_id is None and device.hardware_id is not None):
        found[key] = device
    return known is None


async def discover(
    timeout_s: float = 3.0,
    on_progress: Callable[[DiscoveredDevice], None] | None = None,
    interfaces: list[str] | None = None,
) -> list[DiscoveredDevice]:
    """Browse for ``timeout_s`` and return every relay found (``on_progress`` sees each new
    one as it resolves). ``interfaces`` limits the interfaces listened on (IPv4 only)."""
    aiozc = AsyncZeroconf(interfaces=interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only)
    found: dict[tuple[str, int], DiscoveredDevice] = {}
    resolving: set[asyncio.Task[None]] = set()

    async def resolve(service_type: str, name: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(aiozc.zeroconf, RESOLVE_TIMEOUT_MS):
            return
        txt = decode_txt(info.properties)
        for host in info.parsed_addresses(IPVersion.V4Only)[:1]:
            device = parse_service(service_type, name, host, info.port or 80, txt)
            if device is not None and merge(found, device) and on_progress is not None:
                on_progress(device)

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            task = asyncio.create_task(resolve(service_type, name))
            resolving.add(task)
            task.add_done_callback(resolving.discard)

    browser = AsyncServiceBrowser(aiozc.zeroconf, list(SERVICE_TYPES), handlers=[on_change])
    try:
        await asyncio.sleep(timeout_s)
    finally:
        await browser.async_cancel()
        for task in list(resolving):
            task.cancel()
        await asyncio.gather(*resolving, return_exceptions=True)
        await aiozc.async_close()
    return sorted(found.values(), key=lambda device: (device.family, device.name))
