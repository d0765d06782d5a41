"""Checkpoints write only what moved, a chunk at a time; statuses are put a page per flush."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from evplug.contracts import subjects
from evplug.mothership.checkpoint import Checkpoints
from evplug.mothership.status import StatusPublisher
from tests.mothership.conftest import MakeSite
from tests.mothership.harness import SITE


async def test_a_checkpoint_writes_only_the_sessions_that_moved_in_chunks(
    make_site: MakeSite,
) -> None:
    site = await make_site(plugs=3, circuit_limit_a=100.0)
    for n, plug_id in enumerate(site.plug_ids[:2]):
        await site.add_driver(f"d{n}")
        site.sockets[plug_id].power_w = 2300.0
        await site.enable(plug_id, f"d{n}")
        await site.advance(3)
        await site.answer()
    ms = site.ms
    checkpoints = Checkpoints(ms.registry, ms.pending, ms.effects, site.repo, site.clock, 1)
    written: list[list[str]] = []
    real_save = site.repo.sites.save_plugs

    async def save(snapshots: Iterable[dict[str, Any]], now_ms: int) -> None:
        snapshots = list(snapshots)
        written.append([s["plug_id"] for s in snapshots])
        await real_save(snapshots, now_ms)

    site.repo.sites.save_plugs = save  # type: ignore[method-assign]
    await site.advance(2)
    await site.read()
    assert await checkpoints.run() == 2
    assert written == [[site.plug_ids[0]], [site.plug_ids[1]]]  # one statement per chunk
    assert await checkpoints.run() == 0  # nothing moved since

    await site.advance(2)
    await site.read()
    assert await checkpoints.run() == 2  # the meters moved; the idle plug is never written
    stored = {r.id: r.snapshot for r in await site.repo.sites.load_plugs()}
    for plug_id in site.plug_ids[:2]:
        assert stored[plug_id] == ms.plug(plug_id).snapshot()


async def test_statuses_are_put_a_page_per_flush_and_read_per_site(make_site: MakeSite) -> None:
    site = await make_site(plugs=5)
    ms = site.ms
    store = await site.bus.key_value(subjects.PLUG_STATUS_BUCKET)
    for key in await store.keys():
        await store.delete(key)
    status = StatusPublisher(ms.registry, site.repo, store, site.clock, page_plugs=2)
    status.publish_all()
    counts = []
    for _ in range(3):
        await status.flush()
        counts.append(len(await store.keys()))
    assert counts == [2, 4, 5]  # a start puts every plug, a page at a time

    page = await status.site_page(SITE, 1, 2)
    assert [s.plug_id for s in page] == sorted(site.plug_ids)[2:4]
    assert await status.site_page("no-such-site", 0, 2) == []


async def test_a_reading_during_a_checkpoint_write_is_saved_by_the_next(
    make_site: MakeSite,
) -> None:
    site = await make_site(plugs=1)
    plug_id = site.plug_ids[0]
    await site.add_driver("d")
    site.sockets[plug_id].power_w = 2300.0
    await site.enable(plug_id, "d")
    await site.answer()
    await site.advance(2)
    await site.read()
    real_save = site.repo.sites.save_plugs
    during: list[float] = []

    async def save_while_reading(snapshots: Iterable[dict[str, Any]], now_ms: int) -> None:
        snapshots = list(snapshots)
        if not during:  # the relay's next reading lands while the write is under way
            await site.clock.advance(2)
            await site.ms.handlers.on_telemetry(await site.chunk(60))
            during.append(site.ms.plug(plug_id).energy_wh)
        await real_save(snapshots, now_ms)

    site.repo.sites.save_plugs = save_while_reading  # type: ignore[method-assign]
    await site.ms.checkpoint()
    await site.ms.checkpoint()
    (stored,) = [r.snapshot for r in await site.repo.sites.load_plugs()]
    assert stored["energy_wh"] == during[0] == site.ms.plug(plug_id).energy_wh
