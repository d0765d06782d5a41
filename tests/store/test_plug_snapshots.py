"""Plug snapshots on both stores: saved many at a time, read back exactly, in parts."""

from __future__ import annotations

from typing import Any

import orjson

from evplug.core.actual import ActualState
from evplug.core.plug import Plug, State
from evplug.store.effect_batches import PlugWrite
from evplug.store.repository import Repository


def writes(snapshots: list[dict[str, Any]]) -> list[PlugWrite]:
    """Snapshots saved as an effect batch saves them: whole, with no effects."""
    return [PlugWrite(s["plug_id"], [], s) for s in snapshots]


def varied(n: int) -> Plug:
    """A plug whose snapshot holds each kind of value the store must keep exactly."""
    plug = Plug(f"p{n}", f'relay {n} "east" ü')
    plug.state = State.CHARGING if n % 2 else State.ACCOUNT_NULL
    plug.actual = ActualState.ON
    plug.last_reading_ms = 1_700_000_000_000 + n
    plug.power_w = 2299.9 + n
    plug.energy_wh = 0.1 + 0.2  # not a short decimal
    plug.last_counter_wh = None if n % 3 else 12345.678
    plug.session_id = f"s{n}" if n % 2 else ""
    plug.end_reason = "é\n\\"
    return plug


async def test_saved_snapshots_are_read_back_exactly_in_parts_in_id_order(
    repo: Repository,
) -> None:
    plugs = [varied(n) for n in (3, 1, 6, 0, 5, 2, 4)]
    for plug in plugs:
        new = Plug(plug.plug_id, plug.fuze_id).snapshot()
        await repo.sites.register_plug(plug.plug_id, "site", plug.fuze_id, "sim", new)
    await repo.effects.write(writes([p.snapshot() for p in plugs]), 50)

    parts = [part async for part in repo.sites.plug_snapshots(part_rows=3)]

    assert [len(part) for part in parts] == [3, 3, 2]  # p, then p0 ... p6
    records = [record for part in parts for record in part]
    assert [r.id for r in records] == ["p", *(f"p{n}" for n in range(7))]
    by_id = {r.id: r for r in records}
    for plug in plugs:
        record = by_id[plug.plug_id]
        assert (record.site_id, record.fuze_id) == ("site", plug.fuze_id)
        assert record.snapshot == orjson.loads(orjson.dumps(plug.snapshot()))
        assert Plug.restore(record.snapshot).snapshot() == plug.snapshot()
    states = {r.id: r.state for r in await repo.sites.load_plugs()}
    assert states["p1"] == "CHARGING" and states["p0"] == "ACCOUNT_NULL"


async def test_saving_no_snapshots_changes_nothing(repo: Repository) -> None:
    before = await repo.sites.load_plugs()
    await repo.effects.write(writes([]), 50)
    assert await repo.sites.load_plugs() == before


async def test_a_meter_is_read_with_its_snapshot_until_a_whole_snapshot_replaces_it(
    repo: Repository,
) -> None:
    plug = varied(1)
    plug.plug_id = "p"
    await repo.effects.write(writes([plug.snapshot()]), 50)
    plug.energy_wh, plug.last_counter_wh, plug.credit_cents = 7.5, None, 120
    await repo.sites.save_meters({"p": plug.meter()}, 60)  # a checkpoint

    async def read() -> tuple[dict, dict]:
        (part,) = [part async for part in repo.sites.plug_snapshots()]
        (record,) = await repo.sites.load_plugs()
        return part[0].snapshot, record.snapshot

    for snapshot in await read():
        assert Plug.restore(snapshot).snapshot() == plug.snapshot()

    plug.energy_wh = 6.0  # the batch of a later transition: its snapshot is the whole truth
    await repo.effects.write(writes([plug.snapshot()]), 70)
    for snapshot in await read():
        assert snapshot == orjson.loads(orjson.dumps(plug.snapshot()))


async def test_a_plug_saved_twice_in_one_batch_keeps_the_later_snapshot(
    repo: Repository,
) -> None:
    first, later = Plug("p"), Plug("p")
    first.energy_wh, later.energy_wh = 1.0, 2.0
    later.state = State.CHARGING
    await repo.effects.write(writes([first.snapshot(), later.snapshot()]), 50)

    (record,) = await repo.sites.load_plugs()
    assert record.state == "CHARGING"
    assert Plug.restore(record.snapshot).snapshot() == later.snapshot()
