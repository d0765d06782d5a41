"""The store's money rules against a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from evplug.core import ledger
from evplug.core.plug import Plug, SessionClosed, SessionOpened
from evplug.store.database import create_schema, make_engine, sqlite_url
from evplug.store.repository import Repository, UnknownUser


@pytest.fixture
async def repo(tmp_path: Path) -> Repository:
    engine = make_engine(sqlite_url(tmp_path / "store.sqlite3"))
    await create_schema(engine)
    repo = Repository(engine)
    await repo.ensure_site("site", "Site", 30, "AUD")
    await repo.ensure_user("u", "Driver", "d@example.invalid")
    plug = Plug("p", "f")
    await repo.register_plug("p", "site", "f", "sim", plug.snapshot())
    yield repo
    await engine.dispose()


async def test_a_top_up_delivered_twice_is_applied_once(repo: Repository) -> None:
    top_up = ledger.Entry("u", ledger.EntryKind.TOP_UP, 2500, "pi_123", 1)
    assert await repo.post(top_up)
    assert not await repo.post(top_up)
    assert await repo.balance("u") == 2500 == await repo.ledger_sum("u")
    assert len(await repo.entries("u")) == 1


async def test_a_session_is_billed_once_even_if_closed_twice(repo: Repository) -> None:
    await repo.post(ledger.Entry("u", ledger.EntryKind.TOP_UP, 1000, "pi_1", 1))
    snapshot = Plug("p", "f").snapshot()
    await repo.open_session(SessionOpened("s1", "p", "u", 10, 30), snapshot)
    closed = SessionClosed("s1", "p", "u", 10, 20, 1500.0, 45, 30, "complete")
    assert await repo.close_session(closed, snapshot) == 955
    assert await repo.close_session(closed, snapshot) is None
    assert await repo.balance("u") == 955 == await repo.ledger_sum("u")
    session = await repo.get_session("s1")
    assert session is not None and session.cost_cents == 45 and session.ended_ms == 20


async def test_posting_for_an_unknown_user_changes_nothing(repo: Repository) -> None:
    with pytest.raises(UnknownUser):
        await repo.post(ledger.Entry("ghost", ledger.EntryKind.TOP_UP, 100, "pi_9", 1))
    assert await repo.ledger_sum("ghost") == 0


async def test_closing_a_session_that_was_never_opened_is_an_error(repo: Repository) -> None:
    closed = SessionClosed("nope", "p", "u", 10, 20, 1.0, 0, 30, "driver")
    with pytest.raises(LookupError):
        await repo.close_session(closed, Plug("p", "f").snapshot())
    assert await repo.ledger_sum("u") == 0
