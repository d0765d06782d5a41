from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from evplug.devices.emulators import RunningEmulator, start_emulator

PAYLOADS = Path(__file__).parent / "payloads"

StartEmulator = Callable[..., Awaitable[RunningEmulator]]


@pytest.fixture
def payload() -> Callable[[str], Any]:
    """A recorded device payload from the reference (``payloads/ref<section>_<what>.json``)."""

    def load(name: str) -> Any:
        return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))

    return load


@pytest.fixture
async def emulator() -> AsyncIterator[StartEmulator]:
    """Start emulators on 127.0.0.1 (random ports); all are stopped after the test."""
    started: list[RunningEmulator] = []

    async def start(model: str, **options: Any) -> RunningEmulator:
        running = await start_emulator(model, host="127.0.0.1", **options)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.stop()
