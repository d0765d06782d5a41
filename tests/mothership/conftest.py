from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.mothership.harness import Site
from tests.mothership.harness import make_site as _make_site

MakeSite = Callable[..., Awaitable[Site]]


@pytest.fixture
async def make_site(tmp_path: Path) -> AsyncIterator[MakeSite]:
    """Build fake-clock sites (see harness.py) and dispose their stores afterwards."""
    sites: list[Site] = []

    async def make(**options: object) -> Site:
        site = await _make_site(tmp_path / f"site-{len(sites)}.sqlite3", **options)  # type: ignore[arg-type]
        sites.append(site)
        return site

    yield make
    for site in sites:
        await site.repo.engine.dispose()
