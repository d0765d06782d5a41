"""The schema's version: Alembic migrations, run on the engine the store uses.

The migrations live in this package (``migrations/``) and work on SQLite and PostgreSQL alike.
A database made before there were migrations (its tables, no version) is taken to be at the
baseline and upgraded from there.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"
UPGRADE_COMMAND = "evplug db upgrade"
_UPGRADE_LOCK = 0x657670_6C7567  # "evplug": a key no other advisory lock of ours uses


class SchemaMismatch(RuntimeError):
    """The database's schema is not the one this evplug was built for."""


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def _config(**attributes: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes.update(attributes)
    return config


def head() -> str:
    """The revision this code's models are at."""
    revision = _scripts().get_current_head()
    assert revision is not None, f"no migrations in {MIGRATIONS}"
    return revision


async def current(engine: AsyncEngine) -> str | None:
    """The database's revision; None for an empty database."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def _current(conn: Connection) -> str | None:
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None and inspect(conn).has_table("sites"):
        return BASELINE  # made by create_all before there were migrations
    return revision


async def upgrade(engine: AsyncEngine, revision: str = "head") -> str | None:
    """Bring the database to ``revision``, logging each step; returns where it is now."""
    if engine.dialect.name == "sqlite":
        async with engine.connect() as conn:
            # WAL lets the web read while the mothership writes; it is kept in the file, so
            # setting it once here spares every new connection a lock-taking mode switch.
            await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    async with engine.connect() as conn:
        await conn.run_sync(_upgrade, revision)
        await conn.commit()
    return await current(engine)


def _upgrade(conn: Connection, revision: str) -> None:
    # Of two upgrades at once, the second waits for the first, then finds nothing to do.
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK})")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite's write lock, before the version is read
    before, target = _current(conn), head() if revision == "head" else revision
    if before == target:
        return
    log.info("db.upgrade", url=_safe_url(conn), at=before or "empty", to=target)
    config = _config(connection=conn, on_version_apply=_log_step)
    if before == BASELINE and MigrationContext.configure(conn).get_current_revision() is None:
        command.stamp(config, BASELINE)
    command.upgrade(config, revision)


def _log_step(*, step: Any, **_: Any) -> None:
    if step.is_migration:
        script = step.up_revision
        log.info("db.migration_applied", revision=script.revision, what=script.doc)


async def check(engine: AsyncEngine) -> None:
    """Refuse a database whose schema is not this code's, saying what to run."""
    at, wanted = await current(engine), head()
    if at == wanted:
        return
    where = engine.url.render_as_string(hide_password=True)
    if at is None or at in _known():
        raise SchemaMismatch(
            f"the database {where} is at schema revision {at or 'none (empty)'}, this evplug"
            f" needs {wanted}: run `{UPGRADE_COMMAND}` with the same settings first"
        )
    raise SchemaMismatch(
        f"the database {where} is at schema revision {at}, newer than this evplug knows"
        f" ({wanted}): run a newer evplug"
    )


def _known() -> set[str]:
    return {s.revision for s in _scripts().walk_revisions()}


def _safe_url(conn: Connection) -> str:
    return conn.engine.url.render_as_string(hide_password=True)
