"""Requests per minute per tenant, counted in the real Redis: 429 with Retry-After past the limit."""

from __future__ import annotations

import redis
from fastapi.testclient import TestClient

from service.auth import create_key
from service.main import create_app
from store.db import init_db, session_scope
from store.settings import Settings
from tests.e2e.api_support import assert_error

REDIS_URL = "redis://127.0.0.1:6379/10"


def test_a_tenant_over_its_limit_gets_429_and_others_do_not(tmp_path):
    redis.Redis.from_url(REDIS_URL).flushdb()
    settings = Settings(data_dir=tmp_path, redis_url=REDIS_URL, rate_limit_per_minute=5)
    init_db(settings.sqlalchemy_url)
    with session_scope(settings.sqlalchemy_url) as session:
        a, b = create_key(session), create_key(session)
    with TestClient(create_app(settings)) as c:
        heads_a = {"Authorization": f"Bearer {a.key}"}
        assert [c.get("/v1/jobs", headers=heads_a).status_code for _ in range(5)] == [200] * 5
        response = c.get("/v1/jobs", headers=heads_a)
        error = assert_error(response, 429, "rate_limited")
        assert "more than 5 requests" in error["message"]
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert c.get("/v1/jobs", headers={"Authorization": f"Bearer {b.key}"}).status_code == 200  # per tenant
        assert c.get("/healthz").status_code == 200  # health is never limited


def test_no_limit_by_default(tmp_path):
    settings = Settings(data_dir=tmp_path, redis_url=REDIS_URL)
    with TestClient(create_app(settings)) as c:
        assert all(c.get("/v1/jobs").status_code == 200 for _ in range(30))
