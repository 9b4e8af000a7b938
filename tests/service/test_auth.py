"""API keys in-process: stored hashed, required once one exists or FEWSHOT_REQUIRE_AUTH is set,
and objects scoped to the key's tenant; `fewshot keys create` prints the key alone on its last line."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from cli.main import cli
from service.auth import create_key
from service.main import create_app
from store.db import ApiKey, init_db, session_scope
from store.settings import Settings
from tests.e2e.api_support import assert_error, blobs_npz


def _settings(tmp_path, **extra) -> Settings:
    return Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/13", **extra)


def test_require_auth_without_any_key_refuses_every_v1_request(tmp_path):
    with TestClient(create_app(_settings(tmp_path, require_auth=True))) as c:
        assert_error(c.get("/v1/datasets"), 401, "missing_api_key")
        assert c.get("/v1/datasets").headers["www-authenticate"] == "Bearer"
        assert c.get("/healthz").status_code == 200


def test_keys_are_stored_hashed_and_scope_objects_to_their_tenant(tmp_path):
    settings = _settings(tmp_path)
    init_db(settings.sqlalchemy_url)
    with TestClient(create_app(settings)) as c:
        local = c.post("/v1/datasets", files={"file": ("b.npz", blobs_npz())}).json()  # no key yet: local user
        with session_scope(settings.sqlalchemy_url) as session:
            a, b = create_key(session), create_key(session)
            local_key = create_key(session, "tnt_local")
        assert_error(c.get("/v1/datasets"), 401, "missing_api_key")  # a key exists now
        with session_scope(settings.sqlalchemy_url) as session:
            hashes = list(session.scalars(select(ApiKey.key_hash)))
        assert hashlib.sha256(a.key.encode()).hexdigest() in hashes and a.key not in hashes

        def auth(key):
            return {"Authorization": f"Bearer {key.key}"}

        mine = c.post("/v1/datasets", files={"file": ("b.npz", blobs_npz())}, headers=auth(a)).json()
        assert c.get(f"/v1/datasets/{mine['id']}", headers=auth(a)).status_code == 200
        assert c.get(f"/v1/datasets/{mine['id']}", headers={"X-API-Key": a.key}).status_code == 200
        assert_error(c.get(f"/v1/datasets/{mine['id']}", headers=auth(b)), 404, "not_found")
        assert_error(c.delete(f"/v1/datasets/{mine['id']}", headers=auth(b)), 404, "not_found")
        assert_error(c.get(f"/v1/datasets/{local['id']}", headers=auth(a)), 404, "not_found")
        assert c.get(f"/v1/datasets/{local['id']}", headers=auth(local_key)).status_code == 200  # claimed by a key
        assert_error(c.get("/v1/datasets", headers={"Authorization": "Bearer fsk_nope"}), 401, "invalid_api_key")


def test_keys_create_prints_the_key_alone_on_the_last_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["keys", "create", "--name", "team"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("fsk_") and len(key) >= 40 and " " not in key
    settings = Settings()
    with session_scope(settings.sqlalchemy_url) as session:
        assert session.scalar(select(ApiKey).where(ApiKey.key_hash == hashlib.sha256(key.encode()).hexdigest()))
    bad = CliRunner().invoke(cli, ["keys", "create", "--tenant", "tnt_nobody"])
    assert bad.exit_code != 0 and "no tenant" in bad.output
