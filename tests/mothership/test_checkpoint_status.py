"""Checkpoints write only what moved, a chunk at a time; statuses are put a page per flush."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evplug.contracts import subjects
from evplug.core.plug import Plug, Prompt
from evplug.mothership.checkpoint import Checkpoints
from evplug.mothership.status import StatusPublisher
from tests.mothership.conftest import MakeSite
from tests.mothership.harness import SITE, Site, restart


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
    real_save = site.repo.sites.save_meters

    async def save(meters: Mapping[str, dict[str, Any]], now_ms: int) -> None:
        written.append(list(meters))
        await real_save(meters, now_ms)

    site.repo.sites.save_meters = save  # type: ignore[method-assign]
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


async def one_plug_charging(make_site: MakeSite) -> tuple[Site, str]:
    """A site of one plug, its driver's car charging and read once."""
    site = await make_site(plugs=1)
    plug_id = site.plug_ids[0]
    await site.add_driver("d")
    site.sockets[plug_id].power_w = 2300.0
    await site.enable(plug_id, "d")
    await site.answer()
    await site.advance(2)
    await site.read()
    return site, plug_id


async def test_a_reading_during_a_checkpoint_write_is_saved_by_the_next(
    make_site: MakeSite,
) -> None:
    site, plug_id = await one_plug_charging(make_site)
    real_save = site.repo.sites.save_meters
    during: list[float] = []

    async def save_while_reading(meters: Mapping[str, dict[str, Any]], now_ms: int) -> None:
        if not during:  # the relay's next reading lands while the write is under way
            await site.clock.advance(2)
            await site.ms.handlers.on_telemetry(await site.chunk(60))
            during.append(site.ms.plug(plug_id).energy_wh)
        await real_save(meters, now_ms)

    site.repo.sites.save_meters = save_while_reading  # type: ignore[method-assign]
    await site.ms.checkpoint()
    await site.ms.checkpoint()
    (stored,) = [r.snapshot for r in await site.repo.sites.load_plugs()]
    assert stored["energy_wh"] == during[0] == site.ms.plug(plug_id).energy_wh


def slots(plug: Plug) -> dict[str, object]:
    return {name: getattr(plug, name) for name in Plug.__slots__}


async def test_a_restart_after_a_checkpoint_restores_every_plug_as_it_was(
    make_site: MakeSite,
) -> None:
    site = await make_site(plugs=3, circuit_limit_a=100.0)
    for n, plug_id in enumerate(site.plug_ids[:2]):
        await site.add_driver(f"d{n}")
        site.sockets[plug_id].power_w = 2300.0
        await site.enable(plug_id, f"d{n}")
        await site.advance(3)
        await site.answer()
    for _ in range(3):  # the meters move with readings, no transition saves them
        await site.advance(2)
        await site.read()
    topped_up = site.ms.plug(site.plug_ids[1])  # a top-up moves a credit, with no effect
    await site.ms.apply(topped_up, topped_up.credit_changed(9_000, site.clock.now_ms()))
    await site.ms.checkpoint()

    revived = await restart(site)
    try:  # (an idle plug's readings are not checkpointed: it has no meter running)
        for plug_id in site.plug_ids[:2]:
            assert slots(revived.ms.plug(plug_id)) == slots(site.ms.plug(plug_id))
        assert revived.ms.plug(site.plug_ids[1]).credit_cents == 9_000
    finally:
        await revived.repo.engine.dispose()


async def test_a_checkpoint_never_saves_a_meter_ahead_of_its_plugs_waiting_effects(
    make_site: MakeSite,
) -> None:
    site, plug_id = await one_plug_charging(make_site)
    await site.ms.checkpoint()
    real_write = site.repo.effects.write
    down = True

    async def flaky_write(batch, now_ms):  # type: ignore[no-untyped-def]
        if down:
            raise ConnectionError("database unavailable")
        return await real_write(batch, now_ms)

    async def stored() -> dict[str, Any]:
        (record,) = await site.repo.sites.load_plugs()
        return record.snapshot

    site.repo.effects.write = flaky_write  # type: ignore[method-assign]
    await site.ms.choose(plug_id, Prompt.DISABLE_SOCKET, "d")  # its effects wait
    before = await stored()
    await site.clock.advance(2)
    await site.ms.handlers.on_telemetry(await site.chunk(2))  # its meter moves meanwhile
    assert site.ms.pending.waiting(plug_id) > 0
    assert await site.ms.checkpoints.run() == 0
    assert await stored() == before

    down = False
    await site.advance(20)  # past the backoff: the effects land, with the whole snapshot
    assert site.ms.pending.waiting(plug_id) == 0
    assert Plug.restore(await stored()).snapshot() == site.ms.plug(plug_id).snapshot()
