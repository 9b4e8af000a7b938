"""The `fewshot` CLI against a live `fewshot serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def _cli(serve, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEWSHOT_URL": f"http://127.0.0.1:{serve.port}", "COLUMNS": "200"}
    out = subprocess.run([FEWSHOT, *args], env=env, capture_output=True, text=True, timeout=180)
    if ok:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def test_cli_against_a_live_server(serve, tmp_path):
    archive = tmp_path / "shapes.zip"
    archive.write_bytes(pattern_zip())
    ds = json.loads(_cli(serve, "datasets", "upload", str(archive), "--name", "shapes").stdout)
    listed = _cli(serve, "datasets", "list").stdout
    assert ds["id"] in listed and "omniglot" in listed

    created = _cli(serve, "jobs", "create", "--algorithm", "maml", "--dataset", ds["id"],
                   "--config", json.dumps(IMAGE_CONFIG), "--watch")
    job = json.loads(created.stdout[: created.stdout.index("\n}\n") + 3])
    assert f"{job['id']} succeeded: model mdl_" in created.stdout
    assert job["id"] in _cli(serve, "jobs", "list").stdout
    got = json.loads(_cli(serve, "jobs", "get", job["id"]).stdout)
    assert got["status"] == "succeeded"
    assert got["model_id"] in _cli(serve, "models", "list").stdout
    assert json.loads(_cli(serve, "models", "get", got["model_id"]).stdout)["accepts_images"] is True

    support = tmp_path / "support"
    for label, cls in (("bar-top", 0), ("bar-low", 5)):
        (support / label).mkdir(parents=True)
        (support / label / "a.png").write_bytes(pattern_png(cls, 0))
    task = json.loads(_cli(serve, "tasks", "adapt", got["model_id"], "--support", str(support)).stdout)
    assert task["status"] == "ready" and sorted(task["labels"]) == ["bar-low", "bar-top"]
    queries = [tmp_path / "q0.png", tmp_path / "q1.png"]
    queries[0].write_bytes(pattern_png(0, 1))
    queries[1].write_bytes(pattern_png(5, 1))
    lines = _cli(serve, "predict", task["id"], *map(str, queries)).stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in ("bar-top", "bar-low") for line in lines)
    assert all(0.0 <= float(line.split("\t")[1]) <= 1.0 for line in lines)

    sine = wait_job_cli(serve, {"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE})
    npz = tmp_path / "support.npz"
    np.savez(npz, x=np.array([[-1.0], [0.0], [1.0]]), y=np.array([-0.8, -0.9, 0.0]))
    sine_task = json.loads(_cli(serve, "tasks", "adapt", sine["model_id"], "--support", str(npz)).stdout)
    assert sine_task["status"] == "ready" and sine_task["support_size"] == 3
    values = _cli(serve, "predict", sine_task["id"], "--json", "[[0.5]]").stdout.split()
    assert len(values) == 1 and float(values[0]) == pytest.approx(float(values[0]))

    long = json.loads(_cli(serve, "jobs", "create", "--algorithm", "maml", "--dataset", "sinusoid",
                           "--config", json.dumps({**QUICK_SINE, "steps": 100_000})).stdout)
    cancelled = json.loads(_cli(serve, "jobs", "cancel", long["id"]).stdout)
    assert cancelled["status"] == "cancelled"
    watched = _cli(serve, "jobs", "watch", long["id"], ok=False)
    assert watched.returncode == 1 and f"{long['id']} cancelled" in watched.stdout
    again = _cli(serve, "jobs", "cancel", long["id"], ok=False)
    assert again.returncode == 1 and "409 job_finished" in again.stderr


def wait_job_cli(serve, body: dict) -> dict:
    out = _cli(serve, "jobs", "create", "--algorithm", body["algorithm"], "--dataset", body["dataset"],
               "--config", json.dumps(body["config"]))
    from tests.e2e.api_support import client

    with client(serve) as c:
        job = wait_job(c, json.loads(out.stdout)["id"])
    assert job["status"] == "succeeded", job
    return job
