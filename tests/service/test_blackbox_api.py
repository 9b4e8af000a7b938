"""Black-box models through the API: jobs of both architectures are accepted and trained by the
real pipeline function, tasks adapt from PNG or numeric support sets and answer predictions,
and support sets the model cannot take are refused with a 4xx that says why.

In-process app through the HTTP client (as test_api_errors.py); the worker's functions
(train_job, adapt_task) are called directly, so no worker process is needed.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from models.images import encode_png
from service.main import create_app
from store.artifacts import ArtifactStore, state_key
from store.settings import Settings
from workers.pipelines import adapt_task, train_job

REDIS_URL = "redis://127.0.0.1:6379/12"
ARCHITECTURES = ["mann", "attention"]
IMAGE_MODELS = {  # the default readouts, and attention's older one (a slot per label)
    "mann": {"architecture": "mann"},
    "attention": {"architecture": "attention"},
    "attention, label_slots": {"architecture": "attention", "attention_readout": "label_slots"},
}
LABEL_SLOTS = ["mann", "attention, label_slots"]  # at most n_way classes
TINY = {"steps": 3, "meta_batch_size": 2, "eval_episodes": 3, "width": 16, "heads": 2}


@pytest.fixture(scope="module")
def settings(tmp_path_factory, omniglot_dir) -> Settings:
    data = tmp_path_factory.mktemp("blackbox-api")
    yield Settings(data_dir=data, redis_url=REDIS_URL, omniglot_dir=omniglot_dir)
    redis.Redis.from_url(REDIS_URL).delete("train", "adapt")  # the messages no worker consumed


@pytest.fixture(scope="module")
def client(settings) -> TestClient:
    return TestClient(create_app(settings))


def _train(client: TestClient, settings: Settings, dataset: str, config: dict) -> dict:
    """Submit through the API, run the worker's pipeline on it, return the model."""
    r = client.post("/v1/jobs", json={"algorithm": "blackbox", "dataset": dataset, "config": config})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    model_id = train_job(job_id, settings)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job["error"]
    return client.get(f"/v1/models/{model_id}").json()


@pytest.fixture(scope="module")
def image_models(client, settings) -> dict[str, dict]:
    config = {**TINY, "n_way": 5, "k_shot": 1, "k_query": 2, "channels": 8}
    return {name: _train(client, settings, "omniglot", {**config, **extra}) for name, extra in IMAGE_MODELS.items()}


def _png(seed: int) -> str:
    pixels = np.random.default_rng(seed).random((28, 28))
    return base64.b64encode(encode_png(pixels)).decode()


def _adapt(client: TestClient, settings: Settings, model_id: str, inputs: list, labels: list) -> str:
    r = client.post(f"/v1/models/{model_id}/tasks", json={"support": {"inputs": inputs, "labels": labels}, "wait": False})
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    assert adapt_task(task_id, settings) == "ready"  # what the adapt worker runs
    return task_id


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_image_models_adapt_to_fewer_classes_and_predict_in_the_task_labels(client, settings, image_models, architecture):
    model = image_models[architecture]
    assert model["algorithm"] == "blackbox" and model["config"]["architecture"] == architecture
    assert model["ways"] == 5 and "accuracy" in model["metrics"]
    labels = ["alpha", "beta", "gamma", "alpha", "beta", "gamma"]  # 3 of the 5 classes, 2 shots
    task_id = _adapt(client, settings, model["id"], [_png(i) for i in range(6)], labels)
    phi = ArtifactStore(settings.artifact_dir).load(state_key(task_id))
    assert int(phi["n_classes"][0]) == 3 and "norm.0.mean" in phi  # h_i and the support statistics
    queries = [_png(100 + i) for i in range(5)]
    r = client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": queries})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["labels"] == ["alpha", "beta", "gamma"]
    assert all(p in body["labels"] for p in body["predictions"])
    assert all(len(p) == 3 and abs(sum(p) - 1) < 1e-5 for p in body["probabilities"])
    reversed_body = client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": queries[::-1]}).json()
    assert reversed_body["predictions"] == body["predictions"][::-1]  # no query influences another
    np.testing.assert_allclose(reversed_body["probabilities"], body["probabilities"][::-1], atol=1e-6)


def test_attention_trained_five_way_adapts_to_twenty_classes(client, settings, image_models):
    model = image_models["attention"]  # the default readout, "summaries"
    assert model["ways"] == 5 and model["max_classes"] == 1000, model
    assert model["config"]["attention_readout"] == "summaries"
    labels = [f"class {i}" for i in range(20)]
    task_id = _adapt(client, settings, model["id"], [_png(i) for i in range(20)], labels)
    assert ArtifactStore(settings.artifact_dir).load(state_key(task_id))["attention.summary"].shape[0] == 20
    r = client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": [_png(3), _png(17)]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["labels"] == labels and all(len(p) == 20 for p in body["probabilities"])
    assert body["predictions"] == ["class 3", "class 17"]  # a support image is its own class, the 4th and the 18th


@pytest.mark.parametrize("architecture", LABEL_SLOTS)
def test_more_classes_than_the_model_supports_or_wrong_shapes_are_refused(client, settings, image_models, architecture):
    assert image_models[architecture]["max_classes"] == 5
    model_id = image_models[architecture]["id"]
    r = client.post(f"/v1/models/{model_id}/tasks", json={"support": {"inputs": [_png(i) for i in range(6)], "labels": list("abcdef")}})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "too_many_classes" and "at most 5" in error["message"]
    r = client.post(f"/v1/models/{model_id}/tasks", json={"support": {"inputs": [[[0.0] * 28] * 27], "labels": ["a"]}})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_input_shape" and "[1, 28, 28]" in r.json()["error"]["message"]
    task_id = _adapt(client, settings, model_id, [_png(1), _png(2)], ["a", "b"])
    r = client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": [[0.5, 0.5]]})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == "inputs[0]" and "[1, 28, 28]" in r.json()["error"]["message"]


def test_vector_models_read_numeric_support_sets(client, settings):
    model = _train(client, settings, "sinusoid", {**TINY, "architecture": "attention", "hidden": [16]})
    assert model["output"] == "regression"
    x = [[-2.0], [-1.0], [0.0], [1.0], [2.0]]
    task_id = _adapt(client, settings, model["id"], x, [-1.8, -0.8, 0.0, 0.8, 1.8])
    r = client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": [[0.5], [1.5]]})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 2 and all(isinstance(v, float) for v in r.json()["predictions"])


def test_unknown_architecture_is_refused(client):
    r = client.post("/v1/jobs", json={"algorithm": "blackbox", "dataset": "omniglot", "config": {"architecture": "ntm"}})
    assert r.status_code == 422, r.text
    assert "architecture must be one of 'mann', 'attention'" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "config.architecture"
