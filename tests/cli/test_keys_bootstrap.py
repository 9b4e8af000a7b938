"""The first API key without a manual step: `fewshot keys create --if-none`, and docker/init.sh,
the one-shot `init` service of docker-compose.yml, run as compose runs it (the real `fewshot`
executable): the first run creates a key and prints it last, later runs find it and create none."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from cli.main import cli
from store.db import ApiKey, session_scope
from store.settings import Settings

INIT_SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "init.sh"


def _live_key_hashes() -> list[str]:
    with session_scope(Settings().sqlalchemy_url) as session:
        return list(session.scalars(select(ApiKey.key_hash).where(ApiKey.revoked_at.is_(None))))


def _create_if_none() -> dict[str, str | None]:
    result = CliRunner().invoke(cli, ["keys", "create", "--if-none", "--json"])
    assert result.exit_code == 0, result.output
    answer: dict[str, str | None] = json.loads(result.stdout)
    return answer


def test_if_none_creates_a_key_only_while_no_live_key_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("REDIS_URL", raising=False)
    first = _create_if_none()
    assert first["key"] and first["key"].startswith("fsk_") and first["key_id"]

    again = _create_if_none()
    assert again == {"tenant_id": None, "key_id": None, "key": None, "database": first["database"]}
    assert _live_key_hashes() == [hashlib.sha256(first["key"].encode()).hexdigest()]

    revoked = CliRunner().invoke(cli, ["keys", "revoke", first["key_id"]])
    assert revoked.exit_code == 0, revoked.output
    after_revoke = _create_if_none()  # a revoked key is no key: the next start makes a new one
    assert after_revoke["key"] and after_revoke["key"] != first["key"]
    assert _live_key_hashes() == [hashlib.sha256(after_revoke["key"].encode()).hexdigest()]


def _run_init(data_dir: Path, **extra: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "FLOWER_BASIC_AUTH")}  # DATABASE_URL stays
    env.update(extra)
    env["FEWSHOT_DATA_DIR"] = str(data_dir)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this venv's `fewshot`
    done = subprocess.run(["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()


def test_init_script_migrates_then_prints_the_first_key_once(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_DATA_DIR", str(tmp_path))
    first = _run_init(tmp_path)
    assert first[0].startswith("database schema is current: ")
    key = first[-1]
    assert key.startswith("fsk_") and " " not in key

    auth_file = tmp_path / "flower" / "basic_auth"  # Flower's credentials, made once, printed once
    user, _, password = auth_file.read_text().strip().partition(":")
    assert user == "admin" and len(password) >= 20 and (auth_file.stat().st_mode & 0o777) == 0o600
    assert sum(auth_file.read_text().strip() in line for line in first) == 1

    second = _run_init(tmp_path)
    assert "none created" in second[-1] and not any(line.startswith("fsk_") for line in second)
    assert not any("Flower" in line for line in second) and auth_file.read_text().strip() == f"{user}:{password}"
    assert _live_key_hashes() == [hashlib.sha256(key.encode()).hexdigest()]


def test_init_makes_no_flower_credentials_when_the_variable_gives_them(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_DATA_DIR", str(tmp_path))
    lines = _run_init(tmp_path, FLOWER_BASIC_AUTH="admin:given")
    assert not (tmp_path / "flower").exists() and not any("Flower" in line for line in lines)
