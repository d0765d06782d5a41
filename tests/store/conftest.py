"""The store's tests run on both back ends: each test once on SQLite, once on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from evplug.core.plug import Plug
from evplug.store.database import create_schema, driver_url, make_engine
from evplug.store.repository import Repository


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new empty database, as a user writes its URL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
async def bare_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the empty database: no schema yet."""
    engine = make_engine(driver_url(database_url))
    yield engine
    await engine.dispose()


@pytest.fixture
async def engine(bare_engine: AsyncEngine) -> AsyncEngine:
    await create_schema(bare_engine)
    return bare_engine


@pytest.fixture
async def repo(engine: AsyncEngine) -> Repository:
    """A site ``site`` with plug ``p`` and driver ``u`` (no credit)."""
    repo = Repository(engine)
    await repo.sites.ensure_site("site", "Site", 30, "AUD")
    await repo.users.ensure_user("u", "Driver", "d@example.invalid")
    await repo.sites.register_plug("p", "site", "f", "sim", Plug("p", "f").snapshot())
    return repo
