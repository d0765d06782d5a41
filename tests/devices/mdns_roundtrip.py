"""Real mDNS between emulators and ``discover``; prints what was found as JSON.

Run only inside a private network namespace that has nothing but loopback (zeroconf multicasts
on every interface it can see), as ``test_discovery.py`` does:
``unshare --net sh -c 'ip link set lo up && exec python -m tests.devices.mdns_roundtrip'``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict

from evplug.devices.discovery import discover
from evplug.devices.emulators import start_emulator
from evplug.devices.registry import probe

MODELS = ("shelly-pro4pm", "shelly-plugs-gen1", "tasmota-4ch", "sonoff-diy-spm")
BROWSE_S = 3.0


async def main() -> None:
    emulators = await asyncio.gather(*(start_emulator(m, mdns=True) for m in MODELS))
    progress: list[str] = []
    try:
        found = await discover(
            BROWSE_S, on_progress=lambda d: progress.append(d.name), interfaces=["127.0.0.1"]
        )
        probed = {d.url: (await probe(d.url, timeout_s=2.0))[0].hardware_id for d in found}
    finally:
        for emulator in emulators:
            await emulator.stop()
    json.dump(
        {
            "emulated": {
                e.url: {"model": e.model, "hardware_id": e.hardware_id} for e in emulators
            },
            "found": [asdict(d) | {"url": d.url} for d in found],
            "progress": progress,
            "probed": probed,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    asyncio.run(main())
