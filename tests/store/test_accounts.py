"""Accounts, signed-in devices and one-time tokens in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from evplug.store.accounts import EmailTaken
from evplug.store.repository import Repository
from evplug.store.sql import UnknownUser

DAY_MS = 24 * 3600 * 1000


async def test_an_email_has_one_account_whatever_its_case(repo: Repository) -> None:
    made = await repo.accounts.create("a1", "ana@example.com", "Ana", "hash", 5)
    assert (made.role, made.email_verified, made.created_ms) == ("driver", False, 5)
    assert (await repo.users.get_user("a1")).balance_cents == 0  # a driver like any other
    with pytest.raises(EmailTaken):
        await repo.accounts.create("a2", "ANA@example.com", "Other", None, 6)
    assert (await repo.accounts.by_email("Ana@Example.com")).id == "a1"
    assert await repo.accounts.by_email("nobody@example.com") is None
    with pytest.raises(EmailTaken):
        await repo.accounts.set_email("u", "ana@example.com")
    with pytest.raises(UnknownUser):
        await repo.accounts.set_password("ghost", "hash")


async def test_two_sign_ups_racing_on_one_address_make_one_account(repo: Repository) -> None:
    results = await asyncio.gather(
        *(repo.accounts.create(f"r{n}", "race@example.com", "R", None, 1) for n in range(4)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, EmailTaken) for r in results if isinstance(r, Exception))


async def test_a_token_is_taken_once_for_its_purpose_before_it_expires(repo: Repository) -> None:
    await repo.accounts.issue_token("h1", "reset", "u", 0, 100, payload="p")
    assert await repo.accounts.take_token("h1", "verify", 1) is None  # another purpose
    taken = await repo.accounts.take_token("h1", "reset", 1)
    assert taken is not None and (taken.user_id, taken.payload) == ("u", "p")
    assert await repo.accounts.take_token("h1", "reset", 2) is None  # used
    await repo.accounts.issue_token("h2", "reset", "u", 0, 100)
    assert await repo.accounts.take_token("h2", "reset", 100) is None  # expired
    assert await repo.accounts.take_token("nope", "reset", 1) is None


async def test_racing_takes_of_one_token_succeed_once(repo: Repository) -> None:
    await repo.accounts.issue_token("h", "signin", "u", 0, 100)
    taken = await asyncio.gather(*(repo.accounts.take_token("h", "signin", 1) for _ in range(5)))
    assert sum(t is not None for t in taken) == 1


async def test_sessions_live_until_revoked_or_idle(repo: Repository) -> None:
    await repo.accounts.open_session("s1", "t1", "u", "Phone", 0)
    await repo.accounts.open_session("s2", "t2", "u", "Laptop", 10)
    live = await repo.accounts.live_session("t1", DAY_MS, 2 * DAY_MS, 60_000)
    assert live is not None and live[0].id == "s1" and live[1].id == "u"
    assert [d.id for d in await repo.accounts.devices("u")] == ["s1", "s2"]  # s1 seen last
    assert await repo.accounts.live_session("t1", 4 * DAY_MS, 2 * DAY_MS, 60_000) is None  # idle
    assert not await repo.accounts.revoke("someone-else", "s2")
    assert await repo.accounts.revoke("u", "s2")
    assert await repo.accounts.live_session("t2", 20, DAY_MS, 60_000) is None
    await repo.accounts.open_session("s3", "t3", "u", "", 0)
    assert await repo.accounts.revoke_all("u", keep="s3") == 1
    assert [d.id for d in await repo.accounts.devices("u")] == ["s3"]


async def test_claiming_an_address_drops_the_password_and_sessions(repo: Repository) -> None:
    await repo.accounts.create("c", "c@example.com", "C", "squatter's hash", 0)
    await repo.accounts.open_session("sc", "tc", "c", "", 0)
    await repo.accounts.claim("c")
    account = await repo.accounts.get("c")
    assert account.email_verified and account.password_hash is None
    assert await repo.accounts.devices("c") == []
