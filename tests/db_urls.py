"""Databases for tests: a SQLite file, or a fresh database on the real PostgreSQL on 127.0.0.1:5432.

FEWSHOT_TEST_DATABASE=postgres (default sqlite) runs every test marked `database` on PostgreSQL:
tests/conftest.py then sets DATABASE_URL to a fresh database per module (for module-scoped
fixtures) and per test, and drops each afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text

POSTGRES_ADMIN_URL = os.environ.get("FEWSHOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
KINDS = ("sqlite", "postgres")
TEST_DATABASE = os.environ.get("FEWSHOT_TEST_DATABASE", "sqlite")
if TEST_DATABASE not in KINDS:
    raise ValueError(f"FEWSHOT_TEST_DATABASE={TEST_DATABASE!r}: use one of {KINDS}")
# The variables Settings reads its database from (store/settings.py); the tests own them.
DATABASE_ENV = ("DATABASE_URL", "FEWSHOT_DATABASE_URL")


# Every engine that connected, held until its database is dropped: an engine that store.db's
# lru_cache lets go of would otherwise be collected with its connections open (ResourceWarning).
_ENGINES: set[Engine] = set()


@event.listens_for(Engine, "engine_connect")
def _remember(connection: Connection) -> None:
    if connection.engine.dialect.name == "postgresql":
        _ENGINES.add(connection.engine)


@contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A new, empty database: a SQLite file, or a database on the real PostgreSQL, dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'fewshot.db'}"
        return
    name = f"fewshot_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        for engine in [e for e in _ENGINES if e.url.database == name]:
            engine.dispose()  # this process's pooled connections, closed rather than killed
            _ENGINES.discard(engine)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
