"""Load management on a fake clock: cars take turns, an overloaded circuit sheds, a full car frees.

Every site here has one circuit and cars of 2300 W (10 A at 230 V) unless a test says otherwise.
"""

from __future__ import annotations

from evplug.contracts import evplug_pb2 as pb
from evplug.core.plug import State
from evplug.mothership.admission import LoadSettings
from tests.mothership.conftest import MakeSite
from tests.mothership.harness import Site

SLOT_S = 60
LOAD = LoadSettings(slot_ms=SLOT_S * 1000, stagger_ms=2_000, overcurrent_window_ms=5_000)


def is_on(site: Site) -> list[bool]:
    return [site.sockets[p].on for p in site.plug_ids]


def states(site: Site) -> list[State]:
    return [site.ms.plug(p).state for p in site.plug_ids]


async def run(site: Site, seconds: int) -> None:
    """The relay manager at work: commands carried out, a reading every two seconds."""
    for _ in range(seconds // 2):
        await site.answer()
        await site.read()
        await site.advance(2)
    await site.answer()


async def start(site: Site, watts: float = 2300.0) -> None:
    """Every driver asks for power, one second apart, in plug order."""
    for n, plug_id in enumerate(site.plug_ids):
        await site.add_driver(f"d{n}")
        site.sockets[plug_id].power_w = watts
        await site.enable(plug_id, f"d{n}")
        await run(site, 2)


async def test_cars_take_turns_when_the_circuit_cannot_take_them_all(make_site: MakeSite) -> None:
    site = await make_site(plugs=2, circuit_limit_a=16.0, load=LOAD)
    first, second = site.plug_ids
    await start(site)
    assert is_on(site) == [True, False]
    assert states(site) == [State.CHARGING, State.IN_QUEUE]
    status = await site.ms.status.build(site.ms.plug(second))  # type: ignore[union-attr]
    assert (status.queue_position, status.queue_eta_min) == (1, 1)

    await run(site, SLOT_S)  # the first car's slot is over: it yields
    assert is_on(site) == [False, True]
    assert states(site) == [State.IN_QUEUE, State.CHARGING]
    await run(site, SLOT_S)  # and the second's
    assert is_on(site) == [True, False]
    ons = [c.plug_id for c in site.commands if c.requested_state == pb.REQUESTED_STATE_ON]
    assert ons == [first, second, first]


async def test_nobody_yields_while_nobody_waits(make_site: MakeSite) -> None:
    site = await make_site(plugs=2, circuit_limit_a=32.0, load=LOAD)
    await start(site)
    await run(site, 3 * SLOT_S)
    assert is_on(site) == [True, True]
    assert len(site.commands) == 2


async def test_an_overloaded_circuit_sheds_its_latest_plug_to_the_front_of_the_queue(
    make_site: MakeSite,
) -> None:
    site = await make_site(plugs=3, circuit_limit_a=20.0, load=LOAD)
    first, second, third = site.plug_ids
    await start(site)
    assert is_on(site) == [True, True, False]
    # Both cars draw more than their first minutes showed: 13 A each on a 20 A circuit.
    site.sockets[first].power_w = site.sockets[second].power_w = 3000.0
    await run(site, 2)
    assert is_on(site) == [True, True, False]  # over its limit, but not yet for 5 s
    await run(site, 4)
    assert is_on(site) == [True, False, False]
    assert states(site) == [State.CHARGING, State.IN_QUEUE, State.IN_QUEUE]
    # Back in front of the plug that queued after it; learned at 13 A, it stays off meanwhile.
    outlook = site.ms.admission.outlook
    assert [outlook(site.ms.plug(p)).position for p in (second, third)] == [1, 2]  # type: ignore[union-attr]
    await run(site, 20)
    assert is_on(site) == [True, False, False]


async def test_a_full_car_frees_its_place_at_once(make_site: MakeSite) -> None:
    long_turns = LoadSettings(slot_ms=3_600_000, stagger_ms=2_000)
    site = await make_site(plugs=2, circuit_limit_a=10.0, load=long_turns)
    first = site.plug_ids[0]
    await start(site)
    assert states(site) == [State.CHARGING, State.IN_QUEUE]
    site.sockets[first].power_w = 0.0  # full: it draws nothing any more
    await site.read()
    await site.advance(1)
    # Its place is free before the car is even taken for complete, let alone switched off.
    assert states(site) == [State.CHARGING, State.SENSING_START_ISSUED_LOCALLY]
    await run(site, 130)
    assert is_on(site) == [False, True]
    assert states(site) == [State.ACCOUNT_NULL, State.CHARGING]
