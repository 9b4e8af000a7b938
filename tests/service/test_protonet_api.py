"""A prototypical network through the API: a job trained by the real pipeline function, a task
adapted from Omniglot PNGs by the adapt worker's function, predictions from the in-process app.

No worker process: train_job and adapt_task are what the workers run (as test_blackbox_api.py).
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from models.images import encode_png
from models.omniglot import load_omniglot, split_characters
from service.main import create_app
from store.artifacts import ArtifactStore, state_key
from store.settings import Settings
from workers.pipelines import adapt_task, train_job

REDIS_URL = "redis://127.0.0.1:6379/11"
# augment off: its gain comes over longer runs (benchmarks/results/augmentation-protonet.md); 30 steps learn faster without
CONFIG = {"steps": 30, "meta_batch_size": 2, "k_query": 5, "channels": 8, "eval_episodes": 20, "split_by": "alphabet", "meta_lr": 0.005,
          "augment": False, "n_way": 5, "rotations": False}  # 5-way: the default is 60-way, 3,000 steps


@pytest.fixture(scope="module")
def settings(tmp_path_factory, omniglot_dir) -> Settings:
    data = tmp_path_factory.mktemp("protonet-api")
    yield Settings(data_dir=data, redis_url=REDIS_URL, omniglot_dir=omniglot_dir)
    redis.Redis.from_url(REDIS_URL).delete("train", "adapt")  # the messages no worker consumed


def _png(image: np.ndarray) -> str:
    return base64.b64encode(encode_png(1.0 - image)).decode()  # model space back to dark-on-white


def test_protonet_trains_adapts_and_predicts_through_the_api(settings, omniglot_dir):
    client = TestClient(create_app(settings))
    r = client.post("/v1/jobs", json={"algorithm": "protonet", "dataset": "omniglot", "config": CONFIG})
    assert r.status_code == 202, r.text
    model_id = train_job(r.json()["id"], settings)
    assert model_id is not None, client.get(f"/v1/jobs/{r.json()['id']}").json()["error"]
    model = client.get(f"/v1/models/{model_id}").json()
    assert model["algorithm"] == "protonet" and model["metrics"]["accuracy"] > 0.2 + 0.1

    data = load_omniglot(omniglot_dir, settings.cache_dir)
    test_chars = split_characters(data, by="alphabet", seed=0)["test"][:4]  # alphabets never trained on
    images = data.images[test_chars].numpy()  # [4, 20, 28, 28]
    labels = ["ka", "ki", "ku", "ke"]
    support = [_png(images[c, 0]) for c in range(4)]
    r = client.post(f"/v1/models/{model_id}/tasks", json={"support": {"inputs": support, "labels": labels}, "wait": False})
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    assert adapt_task(task_id, settings) == "ready"  # what the adapt worker runs
    phi = ArtifactStore(settings.artifact_dir).load(state_key(task_id))
    # The Omniglot recipe's test-time augmentation (8 views) is on unless a task's options say otherwise.
    assert set(phi) == {"prototypes", "tta_views"} and phi["prototypes"].shape[0] == 4 and int(phi["tta_views"]) == 8

    # The support images themselves are their own prototypes: each comes back as its label,
    # one image per request as well as all at once.
    r = client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": support})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == labels
    for image, label in zip(support, labels, strict=True):
        assert client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": [image]}).json()["predictions"] == [label]
    # Other drawings of the same characters: better than chance (0.25) by a margin.
    queries = [(_png(images[c, d]), labels[c]) for c in range(4) for d in range(1, 6)]
    got = client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": [q for q, _ in queries]}).json()["predictions"]
    accuracy = sum(g == want for g, (_, want) in zip(got, queries, strict=True)) / len(queries)
    assert accuracy > 0.25 + 0.15, accuracy

    # Raw bodies (issue 15, point 2): one PNG, or float32 in the model's input shape, answer as JSON does.
    for image in support[:2]:
        as_json = client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": [image]}).json()
        png = client.post(f"/v1/tasks/{task_id}/predictions", content=base64.b64decode(image), headers={"Content-Type": "image/png"})
        assert png.status_code == 200 and png.json() == as_json, png.text
    pixels = [np.asarray(images[c, 0], dtype="<f4") for c in range(4)]  # [28, 28] each, in model space
    as_json = client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": [p[None].tolist() for p in pixels]}).json()
    raw = client.post(f"/v1/tasks/{task_id}/predictions", content=np.stack(pixels).tobytes(),
                      headers={"Content-Type": "application/octet-stream"})
    assert raw.status_code == 200 and raw.json() == as_json, raw.text
    assert as_json["predictions"] == labels


@pytest.mark.parametrize("algorithm", ["protonet", "finetune"])
def test_trained_5_way_serves_20_way_with_every_adaptation_option(settings, omniglot_dir, algorithm):
    client = TestClient(create_app(settings))
    config = {"steps": 3, "meta_batch_size": 2, "k_query": 2, "channels": 8, "eval_episodes": 3, "n_way": 5}
    if algorithm == "finetune":
        config.update(batch_size=8, inner_steps=20)
    r = client.post("/v1/jobs", json={"algorithm": algorithm, "dataset": "omniglot", "config": config})
    assert r.status_code == 202, r.text
    model_id = train_job(r.json()["id"], settings)
    assert model_id is not None
    model = client.get(f"/v1/models/{model_id}").json()
    assert model["ways"] == 5 and model["max_classes"] == 1000

    data = load_omniglot(omniglot_dir, settings.cache_dir)
    images = data.images[:20, 0].numpy()  # 20 characters, one drawing each
    support, labels = [_png(image) for image in images], [f"c{i}" for i in range(20)]
    for options in ({}, {"test_time_augmentation": 4, "feature_normalization": True}):
        r = client.post(f"/v1/models/{model_id}/tasks",
                        json={"support": {"inputs": support, "labels": labels}, "options": options, "wait": False})
        assert r.status_code == 202, r.text
        assert adapt_task(r.json()["id"], settings) == "ready"
        assert client.get(f"/v1/tasks/{r.json()['id']}").json()["labels"] == labels
        got = client.post(f"/v1/tasks/{r.json()['id']}/predictions", json={"inputs": support[:10]}).json()
        assert len(got["predictions"]) == 10 and len(got["probabilities"][0]) == 20
        if algorithm == "protonet":  # a support image is its own prototype, with or without the options
            assert got["predictions"] == labels[:10]
        alone = client.post(f"/v1/tasks/{r.json()['id']}/predictions", json={"inputs": support[3:4]}).json()
        assert alone["predictions"] == got["predictions"][3:4]  # a prediction never depends on its batch
