"""The README walkthrough through `fewshot serve`: a real API, real Celery workers, real Redis."""

from __future__ import annotations

import base64
import math
import random

import pytest
import torch

from models.images import encode_png
from models.omniglot import load_omniglot, split_characters
from tests.db_urls import TEST_DATABASE
from tests.e2e.server import ServeProcess

pytestmark = pytest.mark.e2e

SINE_CONFIG = {"steps": 1000, "meta_batch_size": 10, "meta_lr": 0.003, "adapt_steps": 10, "eval_episodes": 100}


def _sine(amplitude: float, phase: float, xs: list[float]) -> list[float]:
    return [amplitude * math.sin(x - phase) for x in xs]


def test_sinusoid_walkthrough_learns_on_postgres(tmp_path, redis_url, postgres_url):
    env = {"REDIS_URL": redis_url, "DATABASE_URL": postgres_url}
    with ServeProcess(tmp_path / "data", env) as serve:
        c = serve.client
        r = c.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": SINE_CONFIG})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] == "queued" and job["config"]["steps"] == 1000 and job["config"]["hidden"] == [40, 40]
        job = serve.wait_job(job["id"])
        assert job["status"] == "succeeded", job
        assert job["seen_running"] and job["progress"]["step"] == 1000 and "loss" in job["progress"]["metrics"]
        model = c.get(f"/v1/models/{job['model_id']}").json()
        assert model["output"] == "regression" and model["input_shape"] == [1]
        assert model["metrics"]["mse"] < 0.5 * model["metrics"]["mse_unadapted"]

        rng = random.Random(0)

        def query_mse(amplitude: float, phase: float, options: dict) -> float:
            support_x = [rng.uniform(-5, 5) for _ in range(10)]
            query_x = [rng.uniform(-5, 5) for _ in range(100)]
            support = {"inputs": [[x] for x in support_x], "labels": _sine(amplitude, phase, support_x)}
            r = c.post(f"/v1/models/{model['id']}/tasks", json={"support": support, "options": options})
            assert r.status_code == 201, r.text
            task = r.json()
            assert task["status"] == "ready"
            p = c.post(f"/v1/tasks/{task['id']}/predictions", json={"inputs": [[x] for x in query_x]})
            assert p.status_code == 200, p.text
            preds = p.json()["predictions"]
            assert all(isinstance(v, float) for v in preds)  # numbers in, numbers out
            truth = _sine(amplitude, phase, query_x)
            return sum((a - b) ** 2 for a, b in zip(preds, truth, strict=True)) / len(truth)

        waves = [(1.5, 0.3), (3.0, 1.2), (4.5, 2.5)]
        adapted = sum(query_mse(a, p, {}) for a, p in waves) / len(waves)
        unadapted = sum(query_mse(a, p, {"inner_steps": 0}) for a, p in waves) / len(waves)
        assert adapted < 0.4 * unadapted, (adapted, unadapted)

        listing = c.get("/v1/jobs").json()
        assert listing["object"] == "list" and [j["id"] for j in listing["data"]] == [job["id"]]


def _png(image: torch.Tensor) -> str:
    return base64.b64encode(encode_png(1.0 - image.numpy())).decode()  # back to dark-on-white


def test_omniglot_walkthrough_with_png_images_and_string_labels(tmp_path, redis_url, omniglot_dir):
    env = {"REDIS_URL": redis_url, "FEWSHOT_OMNIGLOT_DIR": str(omniglot_dir)}
    config = {"steps": 80, "meta_batch_size": 4, "k_query": 5, "channels": 32, "eval_episodes": 50}
    with ServeProcess(tmp_path / "data", env) as serve:
        c = serve.client
        job = c.post("/v1/jobs", json={"algorithm": "maml", "dataset": "omniglot", "config": config}).json()
        job = serve.wait_job(job["id"])
        assert job["status"] == "succeeded", job
        model = c.get(f"/v1/models/{job['model_id']}").json()
        assert model["ways"] == 5 and model["accepts_images"] and model["input_shape"] == [1, 28, 28]

        # Five held-out characters (the job's meta-test split), one drawing each as support.
        data = load_omniglot(omniglot_dir)
        test_chars = split_characters(data, by="character", seed=0)["test"]
        chars = random.Random(1).sample(test_chars, 5)
        names = [data.characters[i] for i in chars]
        support = {"inputs": [_png(data.images[i, 0]) for i in chars], "labels": names}
        r = c.post(f"/v1/models/{model['id']}/tasks", json={"support": support})
        assert r.status_code == 201, r.text
        task = r.json()
        assert task["labels"] == names

        queries = [(name, _png(data.images[i, d])) for i, name in zip(chars, names, strict=True) for d in range(1, 11)]
        p = c.post(f"/v1/tasks/{task['id']}/predictions", json={"inputs": [q for _, q in queries]}).json()
        assert set(p["predictions"]) <= set(names) and p["labels"] == names
        assert all(abs(sum(row) - 1) < 1e-4 for row in p["probabilities"])
        accuracy = sum(pred == name for pred, (name, _) in zip(p["predictions"], queries, strict=True)) / len(queries)
        assert accuracy > 0.2 + 0.2, accuracy  # chance is 0.2

        assert c.delete(f"/v1/tasks/{task['id']}").status_code == 204
        assert c.get(f"/v1/tasks/{task['id']}").status_code == 404


def test_embedded_redis_and_state_survive_a_restart(tmp_path):
    data = tmp_path / "data"
    config = {"steps": 50, "meta_batch_size": 4, "eval_episodes": 10}
    with ServeProcess(data, {}) as serve:  # no REDIS_URL: serve starts its own
        job = serve.client.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": config}).json()
        job = serve.wait_job(job["id"])
        assert job["status"] == "succeeded"
        support = {"inputs": [[0.0], [1.0], [2.0]], "labels": [0.0, 0.8, 0.9]}
        task = serve.client.post(f"/v1/models/{job['model_id']}/tasks", json={"support": support}).json()
        before = serve.client.post(f"/v1/tasks/{task['id']}/predictions", json={"inputs": [[0.5]]}).json()
        assert serve.stop() == 0
    assert (data / "redis").is_dir()
    assert (data / "fewshot.db").exists() == (TEST_DATABASE == "sqlite")  # else the state is in PostgreSQL
    with ServeProcess(data, {}) as serve:
        assert serve.client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"
        assert serve.client.get(f"/v1/models/{job['model_id']}").status_code == 200
        after = serve.client.post(f"/v1/tasks/{task['id']}/predictions", json={"inputs": [[0.5]]}).json()
        assert after["predictions"] == before["predictions"]
