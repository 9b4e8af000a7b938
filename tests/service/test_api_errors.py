"""Bad input gets a 4xx with the JSON error shape, and nothing is written.

The app runs in-process through the HTTP client; models are made by the real pipeline
function (no broker needed to train one); requests that pass validation would reach Redis.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.main import create_app
from store.db import Job, Task, init_db, session_scope
from store.settings import Settings
from workers.pipelines import train_job


@pytest.fixture(scope="module")
def settings(tmp_path_factory, omniglot_dir) -> Settings:
    data = tmp_path_factory.mktemp("api")
    return Settings(data_dir=data, redis_url="redis://127.0.0.1:6379/13", omniglot_dir=omniglot_dir)


def _train(settings: Settings, dataset: str, config: dict) -> str:
    from models.recipe import resolve

    init_db(settings.sqlalchemy_url)
    recipe = resolve("maml", dataset, config)
    with session_scope(settings.sqlalchemy_url) as session:
        job = Job(algorithm="maml", dataset=dataset, config=recipe.to_json(), total_steps=recipe.training.steps)
        session.add(job)
        session.flush()
        job_id = job.id
    model_id = train_job(job_id, settings)
    assert model_id is not None
    return model_id


@pytest.fixture(scope="module")
def sine_model(settings) -> str:
    return _train(settings, "sinusoid", {"steps": 5, "meta_batch_size": 2, "eval_episodes": 5})


@pytest.fixture(scope="module")
def image_model(settings) -> str:
    return _train(settings, "omniglot", {"steps": 2, "meta_batch_size": 2, "k_query": 2, "channels": 8, "eval_episodes": 5})


@pytest.fixture(scope="module")
def client(settings) -> TestClient:
    return TestClient(create_app(settings))


def _state(settings: Settings) -> tuple[int, list[Path]]:
    with session_scope(settings.sqlalchemy_url) as session:
        tasks = session.scalar(select(func.count()).select_from(Task)) or 0
    files = sorted(p for p in (settings.artifact_dir / "tasks").rglob("*")) if (settings.artifact_dir / "tasks").exists() else []
    return tasks, files


def _assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "code", "message", "param"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def _png_b64(pixels=None) -> str:
    import numpy as np

    from models.images import encode_png

    return base64.b64encode(encode_png(np.zeros((28, 28)) if pixels is None else pixels)).decode()


SINE = [[0.5], [1.0], [-2.0]]


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"support": {"inputs": [[0.5, 1.0]], "labels": [1.0]}}, "invalid_input_shape", "support.inputs[0]"),
        ({"support": {"inputs": SINE, "labels": [1.0, 2.0]}}, "length_mismatch", "support.labels"),
        ({"support": {"inputs": [[float("nan")], [1.0], [2.0]], "labels": [0, 1, 2]}}, "non_finite_input", "support.inputs[0]"),
        ({"support": {"inputs": SINE, "labels": [0, float("inf"), 1]}}, "non_finite_label", "support.labels[1]"),
        ({"support": {"inputs": SINE, "labels": ["a", "b", "c"]}}, "invalid_label", "support.labels[0]"),
        ({"support": {"inputs": [], "labels": []}}, "empty_inputs", "support.inputs"),
        ({"support": {"inputs": ["aGVsbG8="], "labels": [1.0]}}, "invalid_input_type", "support.inputs[0]"),
        ({"support": {"inputs": [[[1.0]], [2.0]], "labels": [1.0, 2.0]}}, "invalid_input_shape", "support.inputs[0]"),
        ({"support": {"inputs": SINE, "labels": [1, 2, 3]}, "options": {"inner_steps": 1000}}, "invalid_request", None),
        ({"support": {"inputs": SINE, "labels": [1, 2, 3]}, "surprise": 1}, "invalid_request", None),
    ],
)
def test_bad_support_sets_are_refused_and_nothing_is_written(client, settings, sine_model, body, code, param):
    before = _state(settings)
    raw = json.dumps(body)  # allow_nan: NaN and Infinity as the JSON extensions clients send
    response = client.post(f"/v1/models/{sine_model}/tasks", content=raw, headers={"content-type": "application/json"})
    error = _assert_error(response, 422, code)
    if param is not None:
        assert error["param"] == param
    assert _state(settings) == before


def test_image_models_refuse_malformed_base64_and_non_images(client, settings, image_model):
    before = _state(settings)
    labels = ["a", "b"]
    r = client.post(f"/v1/models/{image_model}/tasks", json={"support": {"inputs": ["not base64!!", _png_b64()], "labels": labels}})
    assert _assert_error(r, 422, "invalid_base64")["param"] == "support.inputs[0]"
    r = client.post(f"/v1/models/{image_model}/tasks", json={"support": {"inputs": [_png_b64(), "aGVsbG8="], "labels": labels}})
    assert _assert_error(r, 422, "invalid_image")["param"] == "support.inputs[1]"
    r = client.post(f"/v1/models/{image_model}/tasks", json={"support": {"inputs": [[[0.0] * 28] * 28], "labels": ["a"]}})
    _assert_error(r, 422, "invalid_input_shape")
    six = [_png_b64()] * 6
    r = client.post(f"/v1/models/{image_model}/tasks", json={"support": {"inputs": six, "labels": list("abcdef")}})
    message = _assert_error(r, 422, "too_many_classes")["message"]
    assert "meta-trained 5-way and adapts to at most 5 (its max_classes)" in message, message
    assert client.get(f"/v1/models/{image_model}").json()["max_classes"] == 5  # MAML: the way it trained at
    assert _state(settings) == before


def test_unknown_ids_give_404(client, sine_model):
    _assert_error(client.get("/v1/models/mdl_nope"), 404, "not_found")
    _assert_error(client.get("/v1/jobs/job_nope"), 404, "not_found")
    _assert_error(client.get("/v1/tasks/tsk_nope"), 404, "not_found")
    _assert_error(client.delete("/v1/tasks/tsk_nope"), 404, "not_found")
    _assert_error(client.post("/v1/tasks/tsk_nope/predictions", json={"inputs": [[1.0]]}), 404, "not_found")
    _assert_error(client.post("/v1/models/mdl_nope/tasks", json={"support": {"inputs": SINE, "labels": [1, 2, 3]}}), 404)
    _assert_error(client.get("/v1/nothing-here"), 404)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"algorithm": "reptile", "dataset": "sinusoid"}, "algorithm"),
        ({"algorithm": "maml", "dataset": "imagenet"}, "dataset"),
        ({"algorithm": "maml", "dataset": "sinusoid", "config": {"stepz": 3}}, "config.stepz"),
        ({"algorithm": "maml", "dataset": "sinusoid", "config": {"steps": "many"}}, "config.steps"),
        ({"algorithm": "maml", "dataset": "sinusoid", "config": {"steps": 0}}, "config.steps"),
        ({"algorithm": "maml", "dataset": "sinusoid", "config": {"steps": True}}, "config.steps"),
        ({"algorithm": "maml", "dataset": "sinusoid", "config": {"inner_lr": -1}}, "config.inner_lr"),
        ({"algorithm": "maml", "dataset": "sinusoid", "config": {"hidden": [0]}}, "config.hidden"),
    ],
)
def test_bad_jobs_are_refused_and_nothing_is_queued(client, settings, body, param):
    with session_scope(settings.sqlalchemy_url) as session:
        jobs_before = session.scalar(select(func.count()).select_from(Job))
    error = _assert_error(client.post("/v1/jobs", json=body), 422, "invalid_config")
    assert error["param"] == param
    with session_scope(settings.sqlalchemy_url) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == jobs_before


def test_malformed_json_and_oversized_bodies(client):
    r = client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    _assert_error(r, 422, "invalid_request")
    big = b"[" + b"1," * (20 * 1024 * 1024) + b"1]"
    r = client.post("/v1/jobs", content=big, headers={"content-type": "application/json"})
    _assert_error(r, 413, "payload_too_large")
