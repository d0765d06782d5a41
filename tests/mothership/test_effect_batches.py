"""Effects applied in batches keep their guarantees: each plug's order, exactly once across a
crash between batches, and nothing lost when the store refuses part of a batch."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import structlog
from sqlalchemy import select

from evplug.bus.base import BusError, Outgoing
from evplug.contracts import evplug_pb2 as pb
from evplug.core.plug import Prompt, SessionClosed, State, SwitchRelay
from evplug.mothership.admission import LoadSettings
from evplug.store.effect_batches import PlugWrite
from evplug.store.models import Transition
from tests.mothership.conftest import MakeSite
from tests.mothership.harness import CREDIT_CENTS, Site, restart

NO_STAGGER = LoadSettings(stagger_ms=0)  # every car switched on at once


async def charging(site: Site, plug_ids: Sequence[str]) -> None:
    """Every plug in ``plug_ids`` in session, relay on, its car not yet seen drawing."""
    for n, plug_id in enumerate(plug_ids):
        await site.add_driver(f"d{n}")
        site.sockets[plug_id].power_w = 2300.0
        await site.enable(plug_id, f"d{n}")
    await site.answer()


def spy_writes(site: Site) -> list[list[str]]:
    """The plugs of every batch the store is asked to write, in order."""
    calls: list[list[str]] = []
    real_write = site.repo.effects.write

    async def write(batch: Sequence[PlugWrite], now_ms: int) -> dict[str, int]:
        calls.append([w.plug_id for w in batch])
        return await real_write(batch, now_ms)

    site.repo.effects.write = write  # type: ignore[method-assign]
    return calls


async def stored_path(site: Site, plug_id: str) -> list[tuple[str, str]]:
    async with site.repo.engine.connect() as db:
        rows = await db.execute(
            select(Transition.from_state, Transition.to_state)
            .where(Transition.plug_id == plug_id)
            .order_by(Transition.id)
        )
        return [(a, b) for a, b in rows]


async def test_a_batch_of_many_plugs_keeps_each_plugs_order(make_site: MakeSite) -> None:
    site = await make_site(plugs=6, circuit_limit_a=100.0, load=NO_STAGGER)
    await charging(site, site.plug_ids)
    writes = spy_writes(site)
    applied: list[object] = []
    site.ms.events.attach(applied.append)
    await site.advance(2)
    # A reading that starts every car and a driver's Disable on one plug, queued together.
    await asyncio.gather(site.read(), site.ms.choose(site.plug_ids[0], Prompt.DISABLE_SOCKET, "d0"))
    await site.answer()
    await site.ms.pending.idle()

    assert any(len(batch) == len(site.plug_ids) for batch in writes)  # one write for the chunk
    for plug_id in site.plug_ids:
        path = await stored_path(site, plug_id)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(path)), path
        emitted = [
            (str(e.from_state), str(e.to_state))
            for e in applied
            if getattr(e, "plug_id", None) == plug_id and hasattr(e, "to_state")
        ]
        assert path[-len(emitted) :] == emitted
    assert site.ms.plug(site.plug_ids[0]).state is State.ACCOUNT_NULL
    assert all(site.ms.plug(p).state is State.CHARGING for p in site.plug_ids[1:])


async def test_a_batchs_commands_are_in_flight_together(make_site: MakeSite) -> None:
    """On a broker each publish waits for its ack: a batch's plugs must not wait in turn, so
    their commands go to the bus together (``publish_many`` has them all in flight at once)."""
    site = await make_site(plugs=4)
    calls: list[list[str]] = []
    real_publish_many = site.bus.publish_many

    async def publish_many(messages: Sequence[Outgoing]) -> list[bool | BaseException]:
        calls.append([msg_id for _, _, msg_id in messages])
        return await real_publish_many(messages)

    site.bus.publish_many = publish_many  # type: ignore[method-assign]
    settled = [
        site.ms.pending.submit(site.ms.plug(p), [SwitchRelay(p, f"{p}#on", True, 1)])
        for p in site.plug_ids
    ]
    assert all(await asyncio.gather(*settled))
    assert calls == [[f"{p}#on" for p in site.plug_ids]]
    assert sorted(c.request_id for c in site.commands) == sorted(f"{p}#on" for p in site.plug_ids)


async def test_a_command_the_bus_refuses_parks_its_plug_alone(make_site: MakeSite) -> None:
    site = await make_site(plugs=3)
    refused_plug = site.plug_ids[1]
    real_publish_many = site.bus.publish_many

    async def publish_many(messages: Sequence[Outgoing]) -> list[bool | BaseException]:
        kept = [m for m in messages if not m[2].startswith(refused_plug)]
        results = iter(await real_publish_many(kept))
        return [
            BusError("no answer from the broker")
            if m[2].startswith(refused_plug)
            else next(results)
            for m in messages
        ]

    site.bus.publish_many = publish_many  # type: ignore[method-assign]
    settled = [
        site.ms.pending.submit(site.ms.plug(p), [SwitchRelay(p, f"{p}#on", True, 1)])
        for p in site.plug_ids
    ]
    assert await asyncio.gather(*settled) == [True, False, True]
    assert site.ms.pending.waiting(refused_plug) == 1  # kept, to be sent again
    assert sorted(c.request_id for c in site.commands) == [
        f"{p}#on" for p in site.plug_ids if p != refused_plug
    ]


async def test_a_crash_between_batches_applies_every_effect_once(make_site: MakeSite) -> None:
    for crash_after_commit in (True, False):
        await crash_and_restart(await make_site(), crash_after_commit)


async def crash_and_restart(site: Site, crash_after_commit: bool) -> None:
    plug_id = site.plug_ids[0]
    await charging(site, [plug_id])
    await site.advance(2)
    await site.read()
    await site.advance(60)
    await site.read(60)
    await site.ms.choose(plug_id, Prompt.DISABLE_SOCKET, "d0")  # this batch is committed
    (off,) = [c for c in site.commands[site.answered :] if c.plug_id == plug_id]
    site.answered = len(site.commands)
    assert off.requested_state == pb.REQUESTED_STATE_OFF

    # The relay's OFF closes the session; the mothership dies in the middle of that batch.
    real_write = site.repo.effects.write
    reached = asyncio.Event()

    async def die(batch: Sequence[PlugWrite], now_ms: int) -> dict[str, int]:
        if crash_after_commit:
            await real_write(batch, now_ms)
        reached.set()
        await asyncio.Event().wait()  # never returns: nothing after this point happens
        raise AssertionError("unreachable")

    site.repo.effects.write = die  # type: ignore[method-assign]
    answer = site.carry_out(off)
    dying = asyncio.create_task(site.ms.handlers.on_response(answer))
    await reached.wait()
    assert not answer.acked

    after = await restart(site)
    closed: list[SessionClosed] = []
    after.ms.events.attach(lambda e: closed.append(e) if isinstance(e, SessionClosed) else None)
    await after.ms.handlers.on_response(answer)  # redelivered: it was never acked
    await after.answer()
    await after.advance(2)

    assert answer.acked
    assert after.ms.plug(plug_id).state is State.ACCOUNT_NULL
    charges = [e for e in await after.repo.ledger.entries("d0") if e.kind == "session_charge"]
    assert len(charges) == 1  # billed once, whichever side of the commit it died on
    assert len(closed) == (0 if crash_after_commit else 1)
    assert await after.repo.ledger.balance("d0") == CREDIT_CENTS + charges[0].amount_cents
    path = await stored_path(after, plug_id)
    assert path[-1][1] == str(State.ACCOUNT_NULL)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(path)), path
    dying.cancel()
    await after.repo.engine.dispose()


async def test_a_refused_batch_is_split_the_bad_plug_parked_the_rest_applied(
    make_site: MakeSite,
) -> None:
    site = await make_site(plugs=5, circuit_limit_a=100.0, load=NO_STAGGER)
    await charging(site, site.plug_ids)
    bad = site.plug_ids[3]
    writes = spy_writes(site)
    spied = site.repo.effects.write
    refusing = True

    async def refuse_bad(batch: Sequence[PlugWrite], now_ms: int) -> dict[str, int]:
        if refusing and any(w.plug_id == bad for w in batch):
            writes.append([w.plug_id for w in batch])
            raise ValueError("value too long for type character varying(40)")
        return await spied(batch, now_ms)

    site.repo.effects.write = refuse_bad  # type: ignore[method-assign]
    await site.advance(2)
    with structlog.testing.capture_logs() as logs:
        await site.read()  # every car starts drawing: one chunk, one batch

    assert writes[0] == site.plug_ids  # the whole chunk was tried together first
    assert [bad] in writes  # then split down to the plug the store refuses
    refused = [e for e in logs if e["event"] == "effects.refused"]
    assert [e["plug_id"] for e in refused] == [bad]
    assert site.ms.pending.waiting(bad) > 0
    for plug_id in site.plug_ids:
        stored = await stored_path(site, plug_id)
        if plug_id == bad:
            assert stored[-1][1] != str(State.CHARGING)
        else:
            assert stored[-1][1] == str(State.CHARGING)
            assert site.ms.pending.waiting(plug_id) == 0

    refusing = False
    await site.advance(2)  # its backoff runs out: retried, applied once
    assert site.ms.pending.waiting(bad) == 0
    path = await stored_path(site, bad)
    assert path[-1][1] == str(State.CHARGING)
    assert len(path) == len(set(path))
