"""The store's money rules against a real database: each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from evplug.core import ledger
from evplug.core.plug import Plug, SessionClosed, SessionOpened, State, Transitioned, Trigger
from evplug.store.database import make_engine
from evplug.store.repository import Repository
from evplug.store.sql import UnknownUser


async def test_a_top_up_delivered_twice_is_applied_once(repo: Repository) -> None:
    top_up = ledger.top_up("u", "pi_123", 2500, 1)
    assert await repo.ledger.post(top_up)
    assert not await repo.ledger.post(top_up)
    assert await repo.ledger.balance("u") == 2500 == await repo.ledger.ledger_sum("u")
    assert len(await repo.ledger.entries("u")) == 1


async def test_a_session_is_billed_once_even_if_closed_twice(repo: Repository) -> None:
    await repo.ledger.post(ledger.top_up("u", "pi_1", 1000, 1))
    snapshot = Plug("p", "f").snapshot()
    await repo.sessions.open_session(SessionOpened("s1", "p", "u", 10, 30), snapshot)
    closed = SessionClosed("s1", "p", "u", 10, 20, 1500.0, 45, 30, "complete")
    assert await repo.sessions.close_session(closed, snapshot) == 955
    assert await repo.sessions.close_session(closed, snapshot) is None
    assert await repo.ledger.balance("u") == 955 == await repo.ledger.ledger_sum("u")
    session = await repo.sessions.get_session("s1")
    assert session is not None and session.cost_cents == 45 and session.ended_ms == 20


async def test_posting_for_an_unknown_user_changes_nothing(repo: Repository) -> None:
    with pytest.raises(UnknownUser):
        await repo.ledger.post(ledger.top_up("ghost", "pi_9", 100, 1))
    assert await repo.ledger.ledger_sum("ghost") == 0


async def test_closing_a_session_that_was_never_opened_is_an_error(repo: Repository) -> None:
    closed = SessionClosed("nope", "p", "u", 10, 20, 1.0, 0, 30, "driver")
    with pytest.raises(LookupError):
        await repo.sessions.close_session(closed, Plug("p", "f").snapshot())
    assert await repo.ledger.ledger_sum("u") == 0


async def test_debits_at_once_all_count(repo: Repository) -> None:
    await repo.ledger.post(ledger.top_up("u", "pi_1", 1000, 1))
    debits = [ledger.adjustment("u", f"d{n}", -n, 2, "ops", "fee") for n in range(20)]
    assert all(await asyncio.gather(*(repo.ledger.post(d) for d in debits)))
    assert (
        await repo.ledger.balance("u") == 1000 - sum(range(20)) == await repo.ledger.ledger_sum("u")
    )


async def test_sessions_closed_twice_at_once_are_billed_once(repo: Repository) -> None:
    await repo.ledger.post(ledger.top_up("u", "pi_1", 1000, 1))
    snapshot = Plug("p", "f").snapshot()
    ids = [f"s{n}" for n in range(10)]
    for session_id in ids:
        await repo.sessions.open_session(SessionOpened(session_id, "p", "u", 10, 30), snapshot)
    closes = [SessionClosed(s, "p", "u", 10, 20, 1500.0, 45, 30, "complete") for s in ids]
    results = await asyncio.gather(*(repo.sessions.close_session(c, snapshot) for c in closes * 2))
    assert results.count(None) == 10
    assert sorted(r for r in results if r is not None) == [1000 - 45 * n for n in range(10, 0, -1)]
    assert await repo.ledger.balance("u") == 550 == await repo.ledger.ledger_sum("u")
    assert len(await repo.ledger.entries("u")) == 11


async def test_top_ups_posted_from_two_connections_at_once_are_applied_once(
    repo: Repository,
) -> None:
    other_engine = make_engine(repo.engine.url)
    try:
        other = Repository(other_engine)
        top_ups = [ledger.top_up("u", f"pi_{n}", 100, 1) for n in range(10)]
        results = await asyncio.gather(*(r.ledger.post(t) for t in top_ups for r in (repo, other)))
    finally:
        await other_engine.dispose()
    assert results.count(True) == 10 == results.count(False)
    assert await repo.ledger.balance("u") == 1000 == await repo.ledger.ledger_sum("u")


async def test_a_transition_recorded_again_is_not_added_twice(
    repo: Repository, engine: AsyncEngine
) -> None:
    first = Transitioned("p", State.ACCOUNT_NULL, State.ACCOUNT_ADDED, Trigger.ENABLE, 5, "")
    later = Transitioned("p", State.ACCOUNT_ADDED, State.ACCOUNT_NULL, Trigger.ENABLE, 6, "")
    await repo.sites.record_transitions([first])
    await asyncio.gather(*(repo.sites.record_transitions([first, later]) for _ in range(2)))
    async with engine.connect() as conn:
        rows = await conn.exec_driver_sql("SELECT at_ms FROM transitions ORDER BY at_ms")
        assert [at for (at,) in rows] == [5, 6]


async def test_ensuring_what_exists_keeps_it_as_it_was(repo: Repository) -> None:
    await repo.sites.ensure_site("site", "Renamed", 99, "EUR")
    await asyncio.gather(
        *(repo.users.ensure_user("u", "Other", "d@example.invalid") for _ in range(2))
    )
    site, user = await repo.sites.get_site("site"), await repo.users.get_user("u")
    assert site is not None and (site.name, site.price_cents_per_kwh) == ("Site", 30)
    assert user.name == "Driver"


async def test_what_the_store_hands_out_is_plain_and_detached(repo: Repository) -> None:
    await repo.ledger.post(ledger.top_up("u", "pi_plain", 100, 1))
    snapshot = Plug("p", "f").snapshot()
    await repo.sessions.open_session(SessionOpened("s-plain", "p", "u", 10, 30), snapshot)
    handed_out = [
        await repo.sites.get_site("site"),
        await repo.users.get_user("u"),
        await repo.sessions.get_session("s-plain"),
        *await repo.ledger.entries("u"),
        *await repo.sites.load_plugs(),
    ]
    for value in handed_out:
        assert dataclasses.is_dataclass(value) and type(value).__module__ == "evplug.store.records"
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.id = "changed"  # type: ignore[union-attr,misc]


async def test_many_drivers_balances_are_read_together(repo: Repository) -> None:
    drivers = [f"d{n:04}" for n in range(1_200)]  # more than one read's worth of ids
    for n, user_id in enumerate(drivers[:3]):
        await repo.users.ensure_user(user_id, user_id, f"{user_id}@example.invalid")
        await repo.ledger.post(ledger.top_up(user_id, f"pi_{user_id}", 100 * (n + 1), 1))
    for user_id in drivers[3:]:
        await repo.users.ensure_user(user_id, user_id, f"{user_id}@example.invalid")
    balances = await repo.ledger.balances([*drivers, "nobody"])
    assert len(balances) == len(drivers) and "nobody" not in balances
    assert [balances[u] for u in drivers[:4]] == [100, 200, 300, 0]
