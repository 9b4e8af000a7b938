"""The database schema is managed by Alembic: `upgrade()` brings any database to the latest.

Every process that opens the database calls it (the API, each worker, the CLI); on
PostgreSQL an advisory lock makes concurrent upgrades from several machines take turns.
`fewshot db revision -m "..."` writes a new migration from the table definitions.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_ID = 0x66657773  # "fews": the advisory lock key for schema upgrades


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_ID})
        config = alembic_config(conn)
        tables = set(inspect(conn).get_table_names())
        if "jobs" in tables and "alembic_version" not in tables:
            raise RuntimeError(
                f"the database at {engine.url.render_as_string(hide_password=True)} was made by a "
                "development build before schema migrations; move it aside and start again"
            )
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None before the first upgrade)."""
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a migration from the difference between the tables and the database."""
    with engine.begin() as conn:
        command.revision(alembic_config(conn), message=message, autogenerate=True)
