"""The registry's circuit tree: from the store, and for relays given no circuit of their own."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from evplug.contracts import evplug_pb2 as pb
from evplug.core.actual import ActualState
from evplug.core.plug import Plug, Settings
from evplug.mothership.registry import PlugRegistry
from evplug.store.database import create_schema, make_engine, sqlite_url
from evplug.store.repository import Repository
from tests.store.test_plug_snapshots import writes


async def test_the_circuit_tree_is_stored_and_new_relays_go_under_the_supply(
    tmp_path: Path,
) -> None:
    engine = make_engine(sqlite_url(tmp_path / "s.sqlite3"))
    await create_schema(engine)
    repo = Repository(engine)
    await repo.sites.ensure_site("s", "s", 30, "AUD")
    await repo.sites.ensure_circuit("s/supply", "s", 40.0)
    await repo.sites.ensure_circuit("s/east", "s", 20.0, "s/supply")
    registry = PlugRegistry(repo, Settings(), 32.0)
    await registry.hydrate(10.0)
    assert registry.tree().chain("s/east") == ("s/east", "s/supply")

    assert await registry.register("s", pb.Device(plug_id="p1", fuze_id="relay9", model="m"))
    assert registry.tree().chain("s/relay9") == ("s/relay9", "s/supply")
    assert registry.tree().limit("s/relay9") == 32.0

    restarted = PlugRegistry(repo, Settings(), 32.0)
    await restarted.hydrate(10.0)
    assert restarted.tree().chain("s/relay9") == ("s/relay9", "s/supply")
    await engine.dispose()


async def test_a_start_restores_every_plug_exactly_and_indexes_it(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path / "s.sqlite3"))
    await create_schema(engine)
    repo = Repository(engine)
    await repo.sites.ensure_site("s", "s", 30, "AUD")
    before = PlugRegistry(repo, Settings(), 32.0)
    await before.hydrate(10.0)
    for n in range(5):
        await before.register("s", pb.Device(plug_id=f"p{n}", fuze_id="relay", model="m"))
    for n, plug in enumerate(before.plugs.values()):
        plug.reading(1_700_000_000_000, ActualState.OFF, 0.0, 100.0 + n)
        if n % 2:
            plug.enable(f"session{n}", "driver", 500, 30, 1_700_000_000_000)
        before.track(plug)
    await repo.effects.write(writes([p.snapshot() for p in before.plugs.values()]), 1)

    after = PlugRegistry(repo, Settings(), 32.0)
    await after.hydrate(10.0)

    def slots(registry: PlugRegistry) -> dict[str, dict[str, object]]:
        return {
            plug_id: {name: getattr(plug, name) for name in Plug.__slots__}
            for plug_id, plug in registry.plugs.items()
        }

    assert slots(after) == slots(before)
    assert after.site_of == before.site_of and after.active == before.active
    collected = {id(o) for o in gc.get_objects()}  # frozen: no collection walks them
    assert not any(id(plug) in collected for plug in after.plugs.values())
    assert [p.plug_id for p in after.plugs_of_user("driver")] == ["p1", "p3"]
    assert after.users_sharing == {"driver"}
    fuzes = {id(plug.fuze_id) for plug in after.plugs.values()}
    assert len(fuzes) == 1  # a relay's channels share one string
    await engine.dispose()


async def test_collections_resume_after_a_start_that_failed(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path / "s.sqlite3"))
    await create_schema(engine)
    repo = Repository(engine)
    await repo.sites.ensure_site("s", "s", 30, "AUD")
    bad = Plug("p", "f").snapshot() | {"state": "CHARGED"}
    await repo.sites.register_plug("p", "s", "f", "m", bad)
    with pytest.raises(ValueError, match="CHARGED"):
        await PlugRegistry(repo, Settings(), 32.0).hydrate(10.0)
    assert gc.isenabled()
    await engine.dispose()


def test_drivers_with_more_than_one_open_session_are_known_as_sessions_open_and_close() -> None:
    registry = PlugRegistry(Repository(make_engine("sqlite+aiosqlite://")), Settings(), 32.0)
    plugs = [Plug(f"p{n}", "f") for n in range(3)]
    for plug in plugs:
        registry.add(plug, "s")

    def hold(plug: Plug, user: str) -> None:
        plug.user_id = user
        registry.track(plug)

    hold(plugs[0], "a")
    assert registry.users_sharing == set()
    hold(plugs[1], "a")
    hold(plugs[2], "b")
    assert registry.users_sharing == {"a"}
    hold(plugs[1], "b")  # a's second session ends, b starts a second
    assert registry.users_sharing == {"b"}
    hold(plugs[2], "")
    hold(plugs[0], "")
    assert registry.users_sharing == set()
