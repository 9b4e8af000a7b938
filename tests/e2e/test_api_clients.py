"""The `fewshot` CLI against a live `fewshot serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e.api_support import QUICK_SINE, pattern_png, pattern_zip, served, wait_job

pytestmark = pytest.mark.e2e

FEWSHOT = str(Path(sys.executable).parent / "fewshot")
IMAGE_CONFIG = {"steps": 10, "n_way": 2, "k_shot": 1, "k_query": 2, "meta_batch_size": 2, "channels": 8,
                "eval_episodes": 5, "inner_lr": 0.1}


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    with served(tmp_path_factory.mktemp("clients"), redis_db=8) as serve:
        yield serve


def _cli(serve, *args: str, ok: bool = True, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEWSHOT_URL": f"http://127.0.0.1:{serve.port}", "COLUMNS": str(columns)}
    out = subprocess.run([FEWSHOT, *args], env=env, capture_output=True, text=True, timeout=180)
    if ok:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def _json(serve, *args: str) -> Any:
    return json.loads(_cli(serve, *args, "--json").stdout)


def test_cli_against_a_live_server(serve, tmp_path):
    archive = tmp_path / "shapes.zip"
    archive.write_bytes(pattern_zip())
    ds = _json(serve, "datasets", "upload", str(archive), "--name", "shapes", "--image-size", "28")
    assert ds["id"].startswith("ds_") and ds["input_shape"] == [1, 28, 28]
    assert {"sinusoid", "omniglot", ds["id"]} <= {d["id"] for d in _json(serve, "datasets", "list")}
    assert ds["id"] in _cli(serve, "datasets", "list", columns=40).stdout  # a narrow terminal cuts no id

    created = _json(serve, "jobs", "create", "--algorithm", "maml", "--dataset", ds["id"],
                    "--config", json.dumps(IMAGE_CONFIG))
    watched = _cli(serve, "jobs", "watch", created["id"])
    assert f"{created['id']} succeeded: model mdl_" in watched.stdout and "eta" in watched.stdout
    assert "final metrics: accuracy=" in watched.stdout
    assert created["id"] in [j["id"] for j in _json(serve, "jobs", "list")]
    assert created["id"] in _cli(serve, "jobs", "list", columns=50).stdout
    got = _json(serve, "jobs", "get", created["id"])
    assert got["status"] == "succeeded"
    assert got["model_id"] in [m["id"] for m in _json(serve, "models", "list")]
    assert _json(serve, "models", "get", got["model_id"])["accepts_images"] is True
    events = _json(serve, "jobs", "events", created["id"])
    assert [e["data"]["status"] for e in events if e["type"] == "status"] == ["queued", "running", "succeeded"]

    support = tmp_path / "support"
    for label, cls in (("bar-top", 0), ("bar-low", 5)):
        (support / label).mkdir(parents=True)
        (support / label / "a.png").write_bytes(pattern_png(cls, 0))
    task = _json(serve, "tasks", "adapt", got["model_id"], "--support", str(support))
    assert task["status"] == "ready" and sorted(task["labels"]) == ["bar-low", "bar-top"]
    assert [t["id"] for t in _json(serve, "tasks", "list", got["model_id"])] == [task["id"]]
    queries = [tmp_path / "q0.png", tmp_path / "q1.png"]
    queries[0].write_bytes(pattern_png(0, 1))
    queries[1].write_bytes(pattern_png(5, 1))
    lines = _cli(serve, "predict", task["id"], *map(str, queries)).stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(q) for q in queries]  # each file beside its answer
    assert all(line.split("\t")[1] in ("bar-top", "bar-low") and 0.0 <= float(line.split("\t")[2]) <= 1.0
               for line in lines)
    answers = _json(serve, "predict", task["id"], *map(str, queries))
    assert [a["input"] for a in answers] == [str(q) for q in queries]
    assert [a["prediction"] for a in answers] == [line.split("\t")[1] for line in lines]

    exported = _json(serve, "models", "export", got["model_id"], str(tmp_path / "m.safetensors"))
    assert exported["bytes"] == (tmp_path / "m.safetensors").stat().st_size > 0

    sine = wait_job_cli(serve, {"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE})
    npz = tmp_path / "support.npz"
    np.savez(npz, x=np.array([[-1.0], [0.0], [1.0]]), y=np.array([-0.8, -0.9, 0.0]))
    sine_task = _json(serve, "tasks", "adapt", sine["model_id"], "--support", str(npz))
    assert sine_task["status"] == "ready" and sine_task["support_size"] == 3
    value = _json(serve, "predict", sine_task["id"], "--values", "[[0.5]]")
    assert len(value) == 1 and isinstance(value[0]["prediction"], float) and value[0]["probability"] is None

    long = _json(serve, "jobs", "create", "--algorithm", "maml", "--dataset", "sinusoid",
                 "--config", json.dumps({**QUICK_SINE, "steps": 100_000}))
    assert _json(serve, "jobs", "cancel", long["id"])["status"] == "cancelled"
    watched = _cli(serve, "jobs", "watch", long["id"], ok=False)
    assert watched.returncode == 1 and f"{long['id']} cancelled" in watched.stdout
    again = _cli(serve, "jobs", "cancel", long["id"], ok=False)
    assert again.returncode == 1 and "409 job_finished" in again.stderr
    assert _json(serve, "tasks", "delete", sine_task["id"]) == {"id": sine_task["id"], "deleted": True}
    assert _json(serve, "datasets", "delete", ds["id"])["deleted"] is True


def wait_job_cli(serve, body: dict) -> dict:
    job = _json(serve, "jobs", "create", "--algorithm", body["algorithm"], "--dataset", body["dataset"],
                "--config", json.dumps(body["config"]))
    from tests.e2e.api_support import client

    with client(serve) as c:
        job = wait_job(c, job["id"])
    assert job["status"] == "succeeded", job
    return job


def test_keys_create_says_which_database_it_wrote_to(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "FEWSHOT_DATA_DIR")}
    out = subprocess.run([FEWSHOT, "keys", "create"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    database = tmp_path / ".fewshot" / "fewshot.db"
    assert f"wrote to the database sqlite:///{database}" in out.stdout
    assert "FEWSHOT_DATA_DIR is not set" in out.stderr and database.exists()
    as_json = subprocess.run([FEWSHOT, "keys", "create", "--json"], env={**env, "FEWSHOT_DATA_DIR": str(tmp_path / "d")},
                             capture_output=True, text=True, timeout=60)
    created = json.loads(as_json.stdout)
    assert created["key"].startswith("fsk_") and created["database"].endswith(str(tmp_path / "d" / "fewshot.db"))


def test_keys_revoke_and_db_upgrade_print_json(tmp_path):
    """The database commands' --json is all that stdout holds, so a script can parse it; no server needed."""
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url

    from store.schema import alembic_config
    from store.settings import Settings

    env = {**{k: v for k, v in os.environ.items() if k != "REDIS_URL"}, "FEWSHOT_DATA_DIR": str(tmp_path)}

    def fewshot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([FEWSHOT, *args], env=env, capture_output=True, text=True, timeout=60)

    upgraded = fewshot("db", "upgrade", "--json")
    assert upgraded.returncode == 0, upgraded.stderr
    database = make_url(Settings(data_dir=tmp_path).sqlalchemy_url).render_as_string(hide_password=True)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert json.loads(upgraded.stdout) == {"database": database, "revision": head}

    key_id = json.loads(fewshot("keys", "create", "--json").stdout)["key_id"]
    revoked = fewshot("keys", "revoke", key_id, "--json")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout) == {"key_id": key_id, "revoked": True}
    again = fewshot("keys", "revoke", key_id, "--json")
    assert again.returncode == 2 and again.stdout == "" and "no live key" in again.stderr
