from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from tests.db_urls import fresh_database


@pytest.fixture
def redis_url() -> str:
    """A database of the real Redis on 127.0.0.1:6379, emptied for the test."""
    url = os.environ.get("FEWSHOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def postgres_url(tmp_path) -> Iterator[str]:
    """A fresh database on the real PostgreSQL on 127.0.0.1:5432, dropped afterwards."""
    with fresh_database("postgres", tmp_path) as url:
        yield url
