"""What ``evplug devices probe`` and ``evplug devices discover`` print for a technician."""

from __future__ import annotations

import asyncio
import sys

from evplug.devices.base import ChannelReading, DeviceError, DeviceInfo
from evplug.devices.discovery import DiscoveredDevice, discover
from evplug.devices.registry import probe


def plug_rows(info: DeviceInfo, readings: list[ChannelReading]) -> list[str]:
    header = f"{'plug id':<34} {'state':<11} {'W':>8} {'V':>7} {'A':>6} {'Wh':>11}"
    rows = [header]
    for r in readings:
        energy = f"{r.energy_wh:.1f}" if r.energy_wh is not None else "-"
        rows.append(
            f"{info.plug_id(r.channel):<34} {r.actual.name:<11} {r.power_w:>8.1f}"
            f" {r.voltage_v:>7.1f} {r.current_a:>6.2f} {energy:>11}"
        )
    return rows


def probe_command(url: str, username: str | None, password: str | None, timeout_s: float) -> int:
    try:
        info, readings = asyncio.run(probe(url, username, password, timeout_s))
    except DeviceError as exc:
        print(f"evplug devices probe: {exc}", file=sys.stderr)
        return 1
    print(f"{info.family} {info.model} {info.hardware_id} at {info.address} ({info.channels} ch)")
    print("\n".join(plug_rows(info, readings)))
    return 0


def discover_command(seconds: float) -> int:
    def progress(found: DiscoveredDevice) -> None:
        print(f"  found {found.name} at {found.url}", file=sys.stderr, flush=True)

    print(f"listening for relays on mDNS for {seconds:g} s...", file=sys.stderr, flush=True)
    try:
        found = asyncio.run(discover(seconds, on_progress=progress))
    except OSError as exc:
        print(f"evplug devices discover: mDNS unavailable: {exc}", file=sys.stderr)
        return 1
    if not found:
        print("no relays answered: are they on this LAN, with mDNS enabled?", file=sys.stderr)
        return 1
    for device in found:
        hardware = device.hardware_id or "?"
        print(
            f"{device.driver:<12} {device.url:<28} {hardware:<14}"
            f" {device.model or ''} {device.note}"
        )
    return 0
