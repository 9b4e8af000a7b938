"""Uploads are validated before any job can use them; ArrayTasks draws episodes on disjoint classes.

Pure validation paths, through the in-process app's HTTP interface (nothing reaches Redis).
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from models.arrays import ArrayTasks, read_npz
from service.main import create_app
from store.settings import Settings
from tests.e2e.api_support import assert_error, blobs_npz, pattern_png, pattern_zip


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("uploads"), redis_url="redis://127.0.0.1:6379/13")
    with TestClient(create_app(settings)) as c:
        yield c


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


X = np.random.default_rng(0).normal(size=(24, 3)).astype(np.float32)
Y = np.repeat(np.arange(6), 4)
BAD_X = X.copy()
BAD_X[3, 1] = np.nan


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (_npz(x=BAD_X, y=Y), "NaN"),
        (_npz(x=X, y=Y[:-1]), "one entry per example"),
        (_npz(x=X, y=np.repeat(np.arange(4), 6)), "at least 6 are needed"),
        (_npz(x=X, y=np.array([*np.repeat(np.arange(6), 4)[:-1], 6])), "fewer than 2 examples"),
        (_npz(x=X, y=np.array(["a"] * 24)), "integers (class labels) or floats"),
        (_npz(x=X, y=np.zeros(24)), "need a `task` array"),
        (_npz(x=X, y=Y, extra=Y), "holds arrays x, y and optionally task"),
        (_npz(x=np.arange(24.0), y=Y), "[examples, *input_shape]"),
        (_npz(x=np.array([object()] * 24, dtype=object).reshape(24, 1), y=Y), "readable .npz"),
        (b"PK\x03\x04 broken", "neither an .npz nor a .zip"),
        (_zip({"a.png": pattern_png(0, 0)}), "class folders"),
        (_zip({"c/readme.txt": b"hi"}), "no .png or .jpg"),
        (_zip({f"c{i}/x.png": b"not a png" for i in range(6)}), "not a readable PNG"),
        (_zip({"top/a/1.png": pattern_png(0, 0), "b/1.png": pattern_png(1, 0)}), "same level"),
    ],
)
def test_bad_uploads_are_refused_with_what_to_fix(client, content, needle):
    before = client.get("/v1/datasets").json()["data"]
    error = assert_error(client.post("/v1/datasets", files={"file": ("data.npz" if b".npy" in content else "d.zip", content)}),
                         422, "invalid_dataset")
    assert needle in error["message"] and error["param"] == "file"
    assert client.get("/v1/datasets").json()["data"] == before


def test_uploads_list_paginate_after_builtins(client):
    ids = [client.post("/v1/datasets", files={"file": ("b.npz", blobs_npz(seed=i))}).json()["id"] for i in range(2)]
    first = client.get("/v1/datasets", params={"limit": 3}).json()
    assert [d["id"] for d in first["data"]][:2] == ids[::-1] and first["has_more"]
    rest = client.get("/v1/datasets", params={"limit": 10, "after": first["data"][-1]["id"]}).json()
    assert [d["id"] for d in first["data"] + rest["data"]][-4:] == ["sinusoid", "omniglot", "mnist", "mtl-synthetic"]
    assert not rest["has_more"]


def test_regression_npz_and_image_zip_summaries(client):
    x = np.linspace(-1, 1, 40).reshape(40, 1)
    task = np.repeat(np.arange(4), 10)
    r = client.post("/v1/datasets", files={"file": ("r.npz", _npz(x=x, y=np.sin(x[:, 0] * (task + 1)), task=task))})
    assert r.status_code == 201, r.text
    assert r.json()["output"] == "regression" and r.json()["summary"]["tasks"] == 4
    r = client.post("/v1/datasets", files={"file": ("s.zip", pattern_zip(n_classes=7, per_class=3))},
                    data={"image_size": "20", "invert": "true"})
    assert r.status_code == 201, r.text
    assert r.json()["input_shape"] == [1, 20, 20] and r.json()["summary"]["classes"] == 7


def test_array_tasks_use_disjoint_classes_per_split():
    data = read_npz(blobs_npz(n_classes=15, per_class=6))
    tasks = ArrayTasks(data, n_way=3, k_shot=2, k_query=3, seed=1)
    splits = {s: set(v) for s, v in tasks.splits.items()}
    assert not (splits["train"] & splits["val"]) and not (splits["train"] & splits["test"]) and not (splits["val"] & splits["test"])
    assert sum(len(v) for v in splits.values()) == 15
    generator = torch.Generator().manual_seed(0)
    for split in ("train", "val", "test"):
        for ep in tasks.sample(split, 4, generator):
            assert ep.support_x.shape == (6, 8) and ep.query_x.shape == (9, 8)
            assert ep.support_y.tolist() == [0, 0, 1, 1, 2, 2]
            # every example of an episode comes from the split's classes
            members = {c for c in splits[split]}
            rows = torch.cat([ep.support_x, ep.query_x])
            owners = {int(data.y[(data.x == row).all(dim=1)][0]) for row in rows}
            assert owners <= members
    with pytest.raises(ValueError, match="lower k_shot or k_query"):
        ArrayTasks(data, n_way=3, k_shot=3, k_query=4)
    with pytest.raises(ValueError, match="lower n_way"):
        ArrayTasks(data, n_way=6)


def test_array_tasks_for_regression_draw_each_episode_from_one_function():
    x = np.linspace(-1, 1, 60).reshape(60, 1)
    task = np.tile(np.arange(6), 10)
    y = (task + 1.0) * x[:, 0]  # function t: y = (t + 1) x
    data = read_npz(_npz(x=x, y=y, task=task))
    tasks = ArrayTasks(data, k_shot=3, k_query=4, seed=0)
    assert tasks.spec.output == "regression" and tasks.spec.output_dim == 1
    for ep in tasks.sample("train", 5, torch.Generator().manual_seed(0)):
        assert ep.support_x.shape == (3, 1) and ep.query_y.shape == (4, 1)
        slopes = torch.cat([ep.support_y / ep.support_x, ep.query_y / ep.query_x]).flatten()
        assert torch.allclose(slopes, slopes[0].expand_as(slopes), atol=1e-4)  # one function per episode
