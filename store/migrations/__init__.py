"""Alembic migrations of the fewshot schema (SQLite and PostgreSQL)."""
