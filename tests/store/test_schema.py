"""The migrations build exactly the tables the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from store.db import Base, get_engine, init_db
from tests.db_urls import fresh_database


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_migrations_match_the_declared_tables(tmp_path, kind):
    with fresh_database(kind, tmp_path) as url:
        init_db(url)
        init_db(url)  # a second start finds the schema current and changes nothing
        with get_engine(url).connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == [], (
                "store/db.py and store/migrations/ differ: add a migration with `fewshot db revision -m ...`"
            )
            assert context.get_current_revision() is not None
            assert {"jobs", "models", "tasks", "checkpoints"} <= set(inspect(conn).get_table_names())
        get_engine(url).dispose()
