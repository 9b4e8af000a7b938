"""Multi-task models through the API: jobs of every architecture are accepted by the API and
trained by the real pipeline function, the model lists its training tasks, and those tasks
answer predictions by task id with no adaptation call; new tasks adapt from the model.

In-process app through the HTTP client (as test_api_errors.py); the worker's functions
(train_job, adapt_task) are called directly, so no worker process is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import torch
from fastapi.testclient import TestClient

from models.mnist import load_mnist
from models.multitask.networks import ARCHITECTURES
from service.main import create_app
from store.settings import Settings
from workers.pipelines import adapt_task, train_job

REDIS_URL = "redis://127.0.0.1:6379/11"
MNIST_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "mnist"
SYNTHETIC = {"input_dim": 10, "examples_per_task": 2000, "k_shot": 10, "k_query": 22, "steps": 30, "eval_episodes": 3}


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Iterator[Settings]:
    data = tmp_path_factory.mktemp("multitask-api")
    yield Settings(data_dir=data, redis_url=REDIS_URL, mnist_dir=MNIST_DIR)
    redis.Redis.from_url(REDIS_URL).delete("train", "adapt")  # the messages no worker consumed


@pytest.fixture(scope="module")
def client(settings) -> TestClient:
    return TestClient(create_app(settings))


def _train(client: TestClient, settings: Settings, dataset: str, config: dict) -> dict:
    """Submit through the API, run the worker's pipeline on it, return the model."""
    response = client.post("/v1/jobs", json={"algorithm": "multitask", "dataset": dataset, "config": config})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    model_id = train_job(job_id, settings)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job["error"]
    assert "loss/" + next(iter(client.get(f"/v1/models/{model_id}").json()["training_tasks"])) in job["progress"]["metrics"]
    return client.get(f"/v1/models/{model_id}").json()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_trains_and_serves_its_training_tasks(client, settings, architecture):
    model = _train(client, settings, "mtl-synthetic", {**SYNTHETIC, "architecture": architecture})
    assert model["algorithm"] == "multitask" and model["output"] == "regression"
    assert set(model["training_tasks"]) == {"task_1", "task_2"}
    assert {"mse/task_1", "mse/task_2", "mse"} <= set(model["metrics"])
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(0)).tolist()
    answers = {}
    for name, task_id in model["training_tasks"].items():
        assert client.get(f"/v1/tasks/{task_id}").json()["status"] == "ready"
        r = client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": x})
        assert r.status_code == 200, r.text
        answers[name] = r.json()["predictions"]
        assert len(answers[name]) == 4 and all(isinstance(v, float) for v in answers[name])
    assert answers["task_1"] != answers["task_2"]  # each task answers with its own conditioning


def test_digit_group_tasks_answer_in_their_own_digits(client, settings):
    model = _train(client, settings, "mnist", {"n_way": 2, "k_shot": 5, "k_query": 10, "meta_batch_size": 5,
                                               "steps": 100, "eval_episodes": 5, "lr": 0.003})
    assert list(model["training_tasks"]) == ["digits_0_1", "digits_2_3", "digits_4_5", "digits_6_7", "digits_8_9"]
    images, labels = load_mnist(MNIST_DIR)
    picked = torch.cat([torch.nonzero(labels == d).flatten()[-20:] for d in (2, 3)])  # [40]
    inputs = images[picked].unsqueeze(1).tolist()  # [40, 1, 28, 28]
    r = client.post(f"/v1/tasks/{model['training_tasks']['digits_2_3']}/predictions", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["labels"] == [2, 3]
    accuracy = sum(p == int(t) for p, t in zip(body["predictions"], labels[picked], strict=True)) / len(picked)
    assert accuracy > 0.8, accuracy  # chance: 0.5


def test_a_new_task_adapts_from_a_multitask_model(client, settings):
    model = _train(client, settings, "mtl-synthetic", {**SYNTHETIC, "architecture": "mmoe"})
    gen = torch.Generator().manual_seed(1)
    support_x = torch.randn(20, 10, generator=gen)
    support_y = support_x[:, 0] * 2.0
    r = client.post(f"/v1/models/{model['id']}/tasks", json={
        "support": {"inputs": support_x.tolist(), "labels": support_y.tolist()}, "wait": False,
    })
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    assert adapt_task(task_id, settings) == "ready"  # what the adapt worker runs
    r = client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": support_x[:3].tolist()})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 3


def test_multitask_needs_a_dataset_of_named_tasks(client):
    r = client.post("/v1/jobs", json={"algorithm": "multitask", "dataset": "sinusoid", "config": {}})
    assert r.status_code == 422
    assert r.json()["error"]["param"] == "dataset"
    r = client.post("/v1/jobs", json={"algorithm": "multitask", "dataset": "mtl-synthetic", "config": {"architecture": "moe"}})
    assert r.status_code == 422


def test_an_uploaded_npz_with_tasks_trains_a_multitask_model(client, settings):
    import io

    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6 * 60, 2)).astype(np.float32)
    task = np.repeat(np.arange(6), 60)
    y = (np.linspace(-1, 1, 6)[task] * x[:, 0] + x[:, 1]).astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y, task=task)
    r = client.post("/v1/datasets", files={"file": ("tasks.npz", buffer.getvalue(), "application/octet-stream")})
    assert r.status_code == 201, r.text
    model = _train(client, settings, r.json()["id"], {"k_shot": 5, "k_query": 10, "steps": 20, "eval_episodes": 3})
    assert model["training_tasks"] and all(name.startswith("task_") for name in model["training_tasks"])
    task_id = next(iter(model["training_tasks"].values()))
    r = client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": x[:2].tolist()})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 2
