"""Alembic environment: run by store.schema.upgrade() with a connection, never from a URL in a file."""

from __future__ import annotations

from alembic import context

from store.db import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
