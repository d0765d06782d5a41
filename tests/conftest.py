from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from evplug.assembly import System
from evplug.bus.broker import Broker, free_port, start_broker
from evplug.demo import DemoOptions, build
from evplug.settings import Settings


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

    async def make(**overrides: Any) -> System:
        """``overrides`` are ``DemoOptions`` fields, e.g. ``car_need_wh``."""
        options = replace(DemoOptions(plugs=2, speed=300.0, car_need_wh=400.0), **overrides)
        system = await build(Settings(data_dir=tmp_path), options)
        systems.append(system)
        return system

    yield make
    for system in systems:
        await system.stop()


@pytest.fixture(scope="session")
def nats_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One real nats-server (JetStream on) on a free loopback port for the whole run."""
    broker = start_broker("127.0.0.1", free_port(), tmp_path_factory.mktemp("nats"))
    yield broker
    broker.stop()
