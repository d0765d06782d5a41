"""`evplug ledger check` as an operator runs it: a real subprocess on the data dir's database."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import update

from evplug.core import ledger
from evplug.store.database import create_schema, make_engine, sqlite_url
from evplug.store.models import User
from evplug.store.repository import Repository
from tests.test_cli_demo import evplug


async def _driver_with_a_top_up(path: Path, tamper: bool) -> None:
    engine = make_engine(sqlite_url(path))
    try:
        await create_schema(engine)
        repo = Repository(engine)
        await repo.users.ensure_user("u", "Driver", "d@example.invalid")
        await repo.ledger.post(ledger.top_up("u", "pi_1", 1_000, 1))
        if tamper:
            async with engine.begin() as conn:
                await conn.execute(update(User).values(balance_cents=1_500))
    finally:
        await engine.dispose()


def test_ledger_check_passes_a_consistent_ledger_and_fails_naming_the_account(
    tmp_path: Path,
) -> None:
    asyncio.run(_driver_with_a_top_up(tmp_path / "evplug.sqlite3", tamper=False))
    ok = evplug("ledger", "check", "--data-dir", str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert "ledger ok" in ok.stdout

    asyncio.run(_driver_with_a_top_up(tmp_path / "evplug.sqlite3", tamper=True))
    bad = evplug("ledger", "check", "--data-dir", str(tmp_path))
    assert bad.returncode == 1
    assert bad.stdout == "u: cached balance 1500 cents, ledger sum 1000 cents (off by 500)\n"
    assert "1 account(s)" in bad.stderr
