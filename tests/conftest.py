from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from evplug.demo import DemoOptions, System, build


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Integration tests only: poll a condition of a running system until it holds."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polls state that other tasks own
            await asyncio.sleep(0.01)


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    """Integration tests only: ``wait_for`` for a condition that must be awaited to be read."""
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - polls state that other tasks own
            await asyncio.sleep(0.01)


@pytest.fixture
async def demo_system(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[System]]]:
    """Build the embedded system on a temp data dir (fast time, small cars); stops them all."""
    systems: list[System] = []

    async def make(**overrides: object) -> System:
        options = DemoOptions(data_dir=tmp_path, plugs=2, speed=300.0, car_need_wh=400.0)
        for key, value in overrides.items():
            setattr(options, key, value)
        system = await build(options)
        systems.append(system)
        return system

    yield make
    for system in systems:
        await system.stop()
