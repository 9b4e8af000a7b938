"""API keys and tenants through `fewshot serve`: 401 without a key on every /v1 route, and a
second tenant that cannot see or touch the first's datasets, jobs, models and tasks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.api_support import QUICK_SINE, assert_error, blobs_npz, client, served, wait_job
from tests.e2e.server import free_port

pytestmark = pytest.mark.e2e

FEWSHOT = str(Path(sys.executable).parent / "fewshot")
SUPPORT = {"inputs": [[-1.0], [0.0], [1.0]], "labels": [-0.8, -0.9, 0.0]}


def _keys_create(data_dir: Path, *args: str) -> str:
    env = {**os.environ, "FEWSHOT_DATA_DIR": str(data_dir)}  # and the DATABASE_URL of tests/conftest.py, if any
    out = subprocess.run([FEWSHOT, "keys", "create", *args], env=env, capture_output=True, text=True, timeout=60, check=True)
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("fsk_") and " " not in key and len(key) > 40, out.stdout
    return key


@pytest.fixture(scope="module")
def tenants(tmp_path_factory):
    data = tmp_path_factory.mktemp("tenants")
    key_a, key_b = _keys_create(data, "--name", "a"), _keys_create(data, "--name", "b")
    assert key_b != key_a
    with served(data, redis_db=9) as serve, client(serve, key_a) as a, client(serve, key_b) as b, client(serve) as anon:
        yield serve, a, b, anon


@pytest.fixture(scope="module")
def owned(tenants) -> dict[str, str]:
    """One of each object, made by tenant a."""
    _, a, _, _ = tenants
    ds = a.post("/v1/datasets", files={"file": ("blobs.npz", blobs_npz())}).json()
    job = wait_job(a, a.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE}).json()["id"])
    assert job["status"] == "succeeded", job
    task = a.post(f"/v1/models/{job['model_id']}/tasks", json={"support": SUPPORT}).json()
    assert task["status"] == "ready", task
    return {"dataset": ds["id"], "job": job["id"], "model": job["model_id"], "task": task["id"]}


def _routes(ids: dict[str, str]) -> list[tuple[str, str, dict]]:
    """Every /v1 route, on the given objects."""
    return [
        ("GET", "/v1/datasets", {}), ("POST", "/v1/datasets", {"files": {"file": ("b.npz", blobs_npz())}}),
        ("GET", f"/v1/datasets/{ids['dataset']}", {}), ("DELETE", f"/v1/datasets/{ids['dataset']}", {}),
        ("GET", "/v1/jobs", {}), ("POST", "/v1/jobs", {"json": {"algorithm": "maml", "dataset": "sinusoid"}}),
        ("GET", f"/v1/jobs/{ids['job']}", {}), ("POST", f"/v1/jobs/{ids['job']}/cancel", {}),
        ("GET", f"/v1/jobs/{ids['job']}/events", {}), ("GET", f"/v1/jobs/{ids['job']}/checkpoints", {}),
        ("GET", "/v1/models", {}), ("GET", f"/v1/models/{ids['model']}", {}), ("DELETE", f"/v1/models/{ids['model']}", {}),
        ("POST", f"/v1/models/{ids['model']}/tasks", {"json": {"support": SUPPORT}}),
        ("GET", f"/v1/models/{ids['model']}/tasks", {}),
        ("GET", f"/v1/tasks/{ids['task']}", {}), ("DELETE", f"/v1/tasks/{ids['task']}", {}),
        ("POST", f"/v1/tasks/{ids['task']}/predictions", {"json": {"inputs": [[0.5]]}}),
    ]


def test_every_v1_route_needs_a_key(tenants, owned):
    _, a, _, anon = tenants
    for method, path, kwargs in _routes(owned):
        assert_error(anon.request(method, path, **kwargs), 401, "missing_api_key")
        assert_error(anon.request(method, path, headers={"Authorization": "Bearer fsk_wrong"}, **kwargs), 401, "invalid_api_key")
    assert_error(anon.get("/v1/jobs", headers={"Authorization": "Basic abc"}), 401)
    assert anon.get("/healthz").status_code == 200 and anon.get("/metrics").status_code == 200
    assert a.get(f"/v1/jobs/{owned['job']}").status_code == 200  # nothing was touched


def test_another_tenant_gets_404_on_every_route_and_sees_nothing(tenants, owned):
    _, a, b, _ = tenants
    for method, path, kwargs in _routes(owned):
        if path.count("/") == 2:
            continue  # the collection routes: b may list and create its own
        assert_error(b.request(method, path, **kwargs), 404, "not_found")
    assert_error(b.post("/v1/jobs", json={"algorithm": "maml", "dataset": owned["dataset"]}), 404, "not_found")
    for collection in ("/v1/jobs", "/v1/models", "/v1/datasets"):
        ids = {o["id"] for o in b.get(collection, params={"limit": 100}).json()["data"]}
        assert not ids & set(owned.values()), collection
    # a still has everything, untouched
    assert a.get(f"/v1/datasets/{owned['dataset']}").status_code == 200
    assert a.get(f"/v1/models/{owned['model']}").status_code == 200
    assert a.post(f"/v1/tasks/{owned['task']}/predictions", json={"inputs": [[0.5]]}).status_code == 200
    assert a.get(f"/v1/jobs/{owned['job']}").json()["status"] == "succeeded"


def test_idempotency_keys_are_per_tenant(tenants):
    _, a, b, _ = tenants
    body = {"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE}
    headers = {"Idempotency-Key": "same-key"}
    job_a = a.post("/v1/jobs", json=body, headers=headers).json()
    job_b = b.post("/v1/jobs", json=body, headers=headers).json()
    assert job_a["id"] != job_b["id"]
    assert a.post("/v1/jobs", json=body, headers=headers).json()["id"] == job_a["id"]
    assert_error(b.get(f"/v1/jobs/{job_a['id']}"), 404)
    wait_job(a, job_a["id"])
    wait_job(b, job_b["id"])


def test_serve_refuses_other_addresses_without_keys(tmp_path):
    env = {**os.environ, "FEWSHOT_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:6379/9"}
    out = subprocess.run([FEWSHOT, "serve", "--host", "0.0.0.0", "--port", str(free_port())], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "refusing to serve on 0.0.0.0 without API keys" in out.stderr, out
