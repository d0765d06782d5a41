"""Alembic's entry point: migrations run on the connection ``evplug.store.schema`` hands in."""

from __future__ import annotations

from alembic import context

from evplug.store.models import Base, described

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "evplug's migrations run through evplug itself: use `evplug db upgrade`, not the"
        " alembic command"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    include_object=described,
    # SQLite alters a table by copying it: batch mode does that for every ALTER.
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=True,
    on_version_apply=context.config.attributes.get("on_version_apply"),
)
with context.begin_transaction():
    context.run_migrations()
