"""Issue 15, point 1: API processes serve hot predictions from in-process caches of task, model and
API-key rows, and every process drops them at once when any process deletes a task or a model or
a key is revoked (predictions and new tasks). Two real API processes (`fewshot serve` and a second `fewshot api` on its own
port, the same database and Redis) with a TTL of 10 minutes: only the invalidation message can
make the second process see a change within the test. Also point 2: raw float32 bodies answer
as the JSON ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.api_support import QUICK_SINE, assert_error, client, served, wait_job
from tests.e2e.server import free_port

pytestmark = pytest.mark.e2e

FEWSHOT = str(Path(sys.executable).parent / "fewshot")
SUPPORT = {"inputs": [[-1.0], [0.0], [1.0]], "labels": [-0.8, -0.9, 0.0]}
REDIS_DB = 2
ENV = {"FEWSHOT_HOT_CACHE_TTL_SECONDS": "600"}


def _cli_env(data_dir: Path) -> dict[str, str]:
    """The environment of the module's servers, taken when they start: each test gets a fresh
    DATABASE_URL of its own on PostgreSQL (tests/conftest.py), the servers keep the module's."""
    return {**os.environ, "FEWSHOT_DATA_DIR": str(data_dir), "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}"}


def _fewshot(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([FEWSHOT, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def two_apis(tmp_path_factory):
    data = tmp_path_factory.mktemp("hot")
    cli_env = _cli_env(data)
    out = _fewshot(cli_env, "keys", "create", "--name", "a").strip().splitlines()
    key, key_id = out[-1], out[-2].split("key ")[1].split(";")[0]
    with served(data, REDIS_DB, **ENV) as serve, client(serve, key) as first:
        port = free_port()
        env = {**os.environ, **ENV, "FEWSHOT_DATA_DIR": str(data), "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}"}
        log = (data / "api2.log").open("ab")
        second_api = subprocess.Popen([FEWSHOT, "api", "--port", str(port), "--api-workers", "1"], env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"},
                              timeout=60) as second:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if second.get("/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.monotonic() < deadline and second_api.poll() is None, "the second API did not start"
                    time.sleep(0.3)
                yield cli_env, key_id, first, second
        finally:
            second_api.send_signal(signal.SIGINT)
            second_api.wait(30)
            log.close()


def _ready_task(api: httpx.Client, model_id: str) -> str:
    answer = api.post(f"/v1/models/{model_id}/tasks", json={"support": SUPPORT})
    task = answer.json()
    assert answer.status_code == 201 and task["status"] == "ready", task
    # Answered from the adapt worker's announcement, not from a read of the row: the same as the row.
    stored = api.get(f"/v1/tasks/{task['id']}").json()
    assert {k: task[k] for k in ("status", "error", "ready_at", "created_at")} == {
        k: stored[k] for k in ("status", "error", "ready_at", "created_at")
    }
    return task["id"]


def _predict(api: httpx.Client, task_id: str) -> httpx.Response:
    return api.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": [[0.5], [1.5]]})


def test_deletes_and_revocations_reach_every_api_process(two_apis):
    cli_env, key_id, first, second = two_apis
    job = wait_job(first, first.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE}).json()["id"])
    assert job["status"] == "succeeded", job
    task, other = _ready_task(first, job["model_id"]), _ready_task(first, job["model_id"])
    for _ in range(3):  # every process of both has the rows, the key and the state cached
        for api in (first, second):
            assert _predict(api, task).status_code == 200
            assert _predict(api, other).status_code == 200
    answers = {_predict(api, task).json()["predictions"][0] for api in (first, second)}
    assert len(answers) == 1

    assert first.delete(f"/v1/tasks/{task}").status_code == 204  # deleted through the first
    assert_error(_predict(second, task), 404, "not_found")  # the second's cached row is gone at once
    assert _predict(second, other).status_code == 200

    model_two = second.post(f"/v1/models/{job['model_id']}/tasks", json={"support": SUPPORT}).json()["id"]
    assert _predict(first, model_two).status_code == 200
    assert second.delete(f"/v1/models/{job['model_id']}").status_code == 204  # the model and its tasks
    for api in (first, second):
        assert_error(_predict(api, model_two), 404, "not_found")
        assert_error(_predict(api, other), 404, "not_found")

    _fewshot(cli_env, "keys", "revoke", key_id)
    for api in (first, second):
        assert_error(api.get("/v1/models"), 401, "invalid_api_key")
        assert_error(_predict(api, other), 401, "invalid_api_key")
        # POST .../tasks reads the same key cache (both processes have served one with the key)
        assert_error(api.post(f"/v1/models/{job['model_id']}/tasks", json={"support": SUPPORT}), 401, "invalid_api_key")


def test_float32_bodies_answer_as_json(two_apis):
    cli_env, _, first_a, second_a = two_apis
    key = _fewshot(cli_env, "keys", "create", "--name", "b").strip().splitlines()[-1]  # tenant a's key may be revoked
    first, second = (httpx.Client(base_url=c.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
                     for c in (first_a, second_a))
    job = wait_job(first, first.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE}).json()["id"])
    task = first.post(f"/v1/models/{job['model_id']}/tasks", json={"support": SUPPORT}).json()["id"]
    inputs = [[0.5], [1.5], [-2.25]]
    raw_type = {"Content-Type": "application/octet-stream"}
    for api in (first, second):
        as_json = api.post(f"/v1/tasks/{task}/predictions", json={"inputs": inputs})
        raw = api.post(f"/v1/tasks/{task}/predictions", content=np.asarray(inputs, "<f4").tobytes(), headers=raw_type)
        assert raw.status_code == 200 and raw.json() == as_json.json(), (raw.text, as_json.text)
        assert_error(api.post(f"/v1/tasks/{task}/predictions", content=b"\x00" * 6, headers=raw_type), 422, "invalid_input_shape")
        assert_error(api.post(f"/v1/tasks/{task}/predictions", json={"inputs": inputs, "x": 1}), 422)  # FastAPI's own check
        api.close()
