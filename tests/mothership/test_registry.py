"""The registry's circuit tree: from the store, and for relays given no circuit of their own."""

from __future__ import annotations

from pathlib import Path

from evplug.contracts import evplug_pb2 as pb
from evplug.core.plug import Settings
from evplug.mothership.registry import PlugRegistry
from evplug.store.database import create_schema, make_engine, sqlite_url
from evplug.store.repository import Repository


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
