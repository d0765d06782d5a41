"""The ledger's rules, held by the repository production uses (a real SQLite file)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evplug.core import ledger
from evplug.core.plug import Plug, SessionClosed, SessionOpened
from evplug.store.database import create_schema, make_engine, sqlite_url
from evplug.store.repository import Repository

entries = st.builds(
    ledger.Entry,
    user_id=st.just("u"),
    kind=st.sampled_from(list(ledger.EntryKind)),
    amount_cents=st.integers(-2 * ledger.MAX_ENTRY_CENTS, 2 * ledger.MAX_ENTRY_CENTS),
    # Some keys carry another kind's prefix: those entries are refused.
    idempotency_key=st.sampled_from([p + k for p in ledger.KEY_PREFIX.values() for k in "ab"]),
    created_ms=st.just(0),
    memo=st.sampled_from(["", "goodwill"]),
    actor=st.sampled_from(["", "ops"]),
)
# (session number, cost): a session may be closed more than once, as a retried close would be.
closes = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5_000)), max_size=12)


async def with_repo(work) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(sqlite_url(Path(tmp) / "ledger.sqlite3"))
        await create_schema(engine)
        repo = Repository(engine)
        await repo.sites.ensure_site("site", "Site", 30, "AUD")
        await repo.users.ensure_user("u", "Driver", "d@example.invalid")
        await repo.sites.register_plug("p", "site", "f", "sim", Plug("p", "f").snapshot())
        try:
            await work(repo)
        finally:
            await engine.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries, max_size=25))
def test_each_key_is_applied_once_and_the_balance_is_the_sum(posts: list[ledger.Entry]) -> None:
    async def check(repo: Repository) -> None:
        applied: dict[str, int] = {}
        for entry in posts:
            try:
                ledger.validate(entry)
            except ledger.LedgerError:
                valid = False
            else:
                valid = True
            balance_before = await repo.ledger.balance("u")
            try:
                took = await repo.ledger.post(entry)
            except ledger.LedgerError:
                assert not valid
                assert await repo.ledger.balance("u") == balance_before  # refused: nothing changed
                continue
            assert valid and took == (entry.idempotency_key not in applied)
            applied.setdefault(entry.idempotency_key, entry.amount_cents)
        assert (
            await repo.ledger.balance("u")
            == sum(applied.values())
            == await repo.ledger.ledger_sum("u")
        )
        assert len(await repo.ledger.entries("u")) == len(applied)

    asyncio.run(with_repo(check))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(closes)
def test_a_session_is_billed_once_however_often_it_is_closed(sequence: list[tuple]) -> None:
    async def check(repo: Repository) -> None:
        await repo.ledger.post(ledger.top_up("u", "top-up", 10_000, 0))
        billed: dict[int, int] = {}
        snapshot = Plug("p", "f").snapshot()
        for number, cost in sequence:
            session_id = f"s{number}"
            if await repo.sessions.get_session(session_id) is None:
                await repo.sessions.open_session(
                    SessionOpened(session_id, "p", "u", 1, 30), snapshot
                )
            closed = SessionClosed(session_id, "p", "u", 1, 2, cost / 30 * 1000, cost, 30, "x")
            balance = await repo.sessions.close_session(closed, snapshot)
            if number in billed:
                assert balance is None  # closed before: billed before, nothing changes
            else:
                billed[number] = cost
                assert balance == 10_000 - sum(billed.values())
        assert await repo.ledger.balance("u") == 10_000 - sum(billed.values())
        assert await repo.ledger.balance("u") == await repo.ledger.ledger_sum("u")

    asyncio.run(with_repo(check))
