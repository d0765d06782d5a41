"""`evplug db` and the demo on PostgreSQL, as an operator runs them: real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from evplug.store import schema
from evplug.store.database import driver_url, make_engine
from tests.test_cli_demo import evplug, one_line_error

pytestmark = pytest.mark.integration


@pytest.mark.slow
async def test_upgrade_then_smoke_on_postgresql_keeps_the_data_there(postgres_url: str) -> None:
    env = {"EVPLUG_DATABASE_URL": postgres_url}
    behind = evplug("demo", "--scenario", "smoke", env=env)
    assert "revision none (empty)" in one_line_error(behind)
    assert "run `evplug db upgrade`" in behind.stderr

    upgraded = evplug("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    applied = upgraded.stderr.count("db.migration_applied")
    assert applied == int(schema.head()) > 1  # one line per migration
    assert upgraded.stdout == evplug("db", "current", env=env).stdout == f"{schema.head()} (head)\n"

    smoke = evplug("demo", "--scenario", "smoke", env=env)
    assert smoke.returncode == 0, smoke.stderr
    result = json.loads(smoke.stdout)
    engine = make_engine(driver_url(postgres_url))
    try:
        stored = await _stored(engine, result["session_id"])
    finally:
        await engine.dispose()
    assert stored["cost_cents"] == result["cents"] > 0
    assert stored["balance_cents"] == result["balance_after_cents"] == stored["ledger_sum"]
    assert stored["readings"] > 0 and stored["transitions"] >= len(result["states"]) - 1


async def _stored(engine: AsyncEngine, session_id: str) -> dict[str, int]:
    async with engine.connect() as conn:
        queries = {
            "cost_cents": f"SELECT cost_cents FROM sessions WHERE id = '{session_id}'",
            "balance_cents": "SELECT balance_cents FROM users WHERE id = 'demo-driver'",
            "ledger_sum": "SELECT sum(amount_cents) FROM ledger_entries",
            "readings": "SELECT count(*) FROM readings",
            "transitions": "SELECT count(*) FROM transitions",
        }
        return {k: (await conn.exec_driver_sql(q)).scalar_one() for k, q in queries.items()}


def test_db_current_on_an_empty_database_names_the_command(tmp_path: Path) -> None:
    done = evplug("db", "current", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"none (empty) (head is {schema.head()}: run `evplug db upgrade`)\n"
