"""The cached balances against their ledgers, and many writers on one account at once."""

from __future__ import annotations

import asyncio

from sqlalchemy import update

from evplug.core import ledger
from evplug.core.plug import Plug, SessionClosed, SessionOpened
from evplug.store.database import make_engine
from evplug.store.models import User
from evplug.store.records import LedgerMismatch
from evplug.store.repository import Repository


async def test_the_check_finds_only_a_balance_that_is_not_its_sum(repo: Repository) -> None:
    await repo.users.ensure_user("v", "Other", "v@example.invalid")  # no entries: 0 == 0
    await repo.ledger.post(ledger.top_up("u", "pi_1", 1_000, 1))
    await repo.ledger.post(ledger.adjustment("u", "a1", -30, 2, "alice", "goodwill reversed"))
    assert await repo.ledger.mismatches() == []

    async with repo.engine.begin() as conn:  # a write that bypassed the ledger
        await conn.execute(update(User).where(User.id == "u").values(balance_cents=5_000))
    assert await repo.ledger.mismatches() == [LedgerMismatch("u", 5_000, 970)]


async def test_who_and_why_are_kept_with_the_entry(repo: Repository) -> None:
    await repo.ledger.post(ledger.adjustment("u", "a1", 250, 2, "alice", "socket was faulty"))
    (entry,) = await repo.ledger.entries("u")
    assert (entry.kind, entry.actor, entry.memo) == ("adjustment", "alice", "socket was faulty")


async def test_twenty_sessions_of_one_account_closing_at_once_debit_exactly_their_costs(
    repo: Repository,
) -> None:
    """Two processes (engines) close the same 20 sessions at once: each is billed once."""
    await repo.ledger.post(ledger.top_up("u", "pi_1", 10_000, 1))
    snapshot = Plug("p", "f").snapshot()
    costs = {f"s{n}": 10 + n for n in range(20)}
    for session_id in costs:
        await repo.sessions.open_session(SessionOpened(session_id, "p", "u", 10, 30), snapshot)
    closes = [
        SessionClosed(s, "p", "u", 10, 20, cost / 30 * 1000, cost, 30, "complete")
        for s, cost in costs.items()
    ]
    other_engine = make_engine(repo.engine.url)
    try:
        other = Repository(other_engine)
        results = await asyncio.gather(
            *(r.sessions.close_session(c, snapshot) for c in closes for r in (repo, other))
        )
    finally:
        await other_engine.dispose()
    assert len([r for r in results if r is not None]) == 20
    assert await repo.ledger.balance("u") == 10_000 - sum(costs.values())
    assert await repo.ledger.ledger_sum("u") == 10_000 - sum(costs.values())
    assert await repo.ledger.mismatches() == []
