"""Modalities through the API of a real `fewshot serve` (API, Celery workers, Redis):
colour images keep their colour, a model given the other colour kind converts and says so,
CSV tables upload (or are refused naming the row and column), and vector models take raw units.
"""

from __future__ import annotations

import base64
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.e2e.api_support import assert_error, client, served, wait_job

SIZE = 16
N_HUES = 12
# Colours of equal luminance: grey plus a chroma vector orthogonal to PIL's L weights, so that an
# image's greyscale conversion (L = 0.299 R + 0.587 G + 0.114 B) is the same grey for every hue.
L_WEIGHTS = np.array([0.299, 0.587, 0.114])
U = np.array([0.587, -0.299, 0.0])
V = np.cross(L_WEIGHTS, U)
U, V = U / np.linalg.norm(U), V / np.linalg.norm(V)


def hue_png(hue: float, rng: np.random.Generator) -> bytes:
    """A SIZE x SIZE image of one hue at luminance 128: per-pixel chroma noise, never luminance."""
    angle = hue + rng.normal(0, 0.08, (SIZE, SIZE, 1))  # radians of jitter per pixel
    chroma = 45 * (np.cos(angle) * U + np.sin(angle) * V)  # [S, S, 3], zero luminance
    pixels = np.clip(np.rint(128 + chroma), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def grey_png(level: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((SIZE, SIZE), level, dtype=np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def hue_zip(per_class: int = 8, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k in range(N_HUES):
            for i in range(per_class):
                z.writestr(f"hues/hue_{k:02d}/{i}.png", hue_png(2 * np.pi * k / N_HUES, rng))
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


HUE_JOB = {"steps": 40, "n_way": 5, "k_shot": 1, "k_query": 5, "meta_batch_size": 4, "channels": 16,
           "eval_episodes": 40, "val_fraction": 0.0, "test_fraction": 0.5, "checkpoint_every": 0, "seed": 0}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with served(tmp_path_factory.mktemp("modalities"), redis_db=1) as serve, client(serve) as c:
        yield c


def _train(api, dataset_id: str, config: dict, algorithm: str = "protonet") -> dict:
    job = api.post("/v1/jobs", json={"algorithm": algorithm, "dataset": dataset_id, "config": config})
    assert job.status_code == 202, job.text
    job = wait_job(api, job.json()["id"])
    assert job["status"] == "succeeded", job
    return api.get(f"/v1/models/{job['model_id']}").json()


@pytest.fixture(scope="module")
def colour_model(api) -> dict:
    ds = api.post("/v1/datasets", files={"file": ("hues.zip", hue_zip())}, data={"image_size": str(SIZE)})
    assert ds.status_code == 201, ds.text
    ds = ds.json()
    assert ds["modality"] == "image" and ds["modality_params"]["channels"] == 3  # detected: the images have colour
    assert ds["input_shape"] == [3, SIZE, SIZE] and ds["modality_params"]["size"] == SIZE
    return _train(api, ds["id"], HUE_JOB)


def test_hue_only_classes_are_learned_5_way_1_shot(api, colour_model):
    """Classes that differ only in hue at equal luminance: impossible through greyscale."""
    assert colour_model["modality"] == "image" and colour_model["modality_params"]["channels"] == 3
    assert colour_model["metrics"]["accuracy"] >= 0.9, colour_model["metrics"]
    hues = colour_model["splits"]["test"]["names"][:5]  # classes never trained on
    rng = np.random.default_rng(1)
    angle = {f"hue_{k:02d}": 2 * np.pi * k / N_HUES for k in range(N_HUES)}
    support = [b64(hue_png(angle[h], rng)) for h in hues]
    task = api.post(f"/v1/models/{colour_model['id']}/tasks", json={"support": {"inputs": support, "labels": hues}})
    assert task.status_code == 201, task.text
    assert task.json()["conversions"] == []
    queries = [(b64(hue_png(angle[h], rng)), h) for h in hues for _ in range(4)]
    got = api.post(f"/v1/tasks/{task.json()['id']}/predictions", json={"inputs": [q for q, _ in queries]}).json()
    accuracy = np.mean([p == want for p, (_, want) in zip(got["predictions"], queries, strict=True)])
    assert accuracy >= 0.9, accuracy


def test_greyscale_forced_upload_cannot_tell_the_hues_apart(api):
    ds = api.post("/v1/datasets", files={"file": ("hues.zip", hue_zip())},
                  data={"image_size": str(SIZE), "channels": "1"}).json()
    assert ds["modality_params"]["channels"] == 1 and ds["input_shape"] == [1, SIZE, SIZE]
    model = _train(api, ds["id"], {**HUE_JOB, "steps": 10})
    assert model["metrics"]["accuracy"] < 0.5, model["metrics"]  # chance is 0.2: every image is the same grey
    colour = b64(hue_png(0.0, np.random.default_rng(2)))
    task = api.post(f"/v1/models/{model['id']}/tasks", json={"support": {"inputs": [colour, b64(grey_png(90))],
                                                                          "labels": ["a", "b"]}})
    assert task.status_code == 201, task.text
    assert task.json()["conversions"] == ["support.inputs[0]: colour image converted to greyscale (the model takes greyscale images)"]
    got = api.post(f"/v1/tasks/{task.json()['id']}/predictions", json={"inputs": [b64(grey_png(90)), colour]}).json()
    assert got["conversions"] == ["inputs[1]: colour image converted to greyscale (the model takes greyscale images)"]


def test_colour_model_given_greyscale_images_replicates_and_says_so(api, colour_model):
    rng = np.random.default_rng(3)
    support = [b64(grey_png(60)), b64(hue_png(0.0, rng))]
    task = api.post(f"/v1/models/{colour_model['id']}/tasks", json={"support": {"inputs": support, "labels": ["g", "c"]}})
    assert task.status_code == 201, task.text
    assert task.json()["conversions"] == ["support.inputs[0]: greyscale image replicated to 3 channels (the model takes colour images)"]
    got = api.post(f"/v1/tasks/{task.json()['id']}/predictions", json={"inputs": [b64(grey_png(60))]}).json()
    assert got["predictions"] == ["g"] and len(got["conversions"]) == 1 and "replicated" in got["conversions"][0]
    numeric = api.post(f"/v1/tasks/{task.json()['id']}/predictions", json={"inputs": [np.zeros((1, SIZE, SIZE)).tolist()]})
    error = assert_error(numeric, 422, "invalid_input_shape")  # nested lists must have the model's shape
    assert f"[3, {SIZE}, {SIZE}]" in error["message"]


# Tabular data: CSV uploads.

def blobs_csv(n_classes: int = 12, per_class: int = 12, seed: int = 0, task: bool = False) -> str:
    """Classes told apart by f1..f3 (unit scale); f0 is noise of scale 1000 around 5000: learnable only
    once each feature is standardised with the training classes' statistics."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (n_classes, 3))
    lines = ["f0,f1,f2,f3,y" + (",task" if task else "")]
    for c, centre in enumerate(centres):
        for _ in range(per_class):
            f = [5000 + 1000 * rng.normal(), *(centre + rng.normal(0, 0.3, 3))]
            label = f"{rng.normal():.4f}" if task else f"class_{c}"
            lines.append(",".join(f"{v:.5f}" for v in f) + f",{label}" + (f",t{c}" if task else ""))
    return "\n".join(lines) + "\n"


def test_csv_upload_trains_and_serves_in_raw_units(api):
    r = api.post("/v1/datasets", files={"file": ("blobs.csv", blobs_csv().encode())}, data={"label_column": "y"})
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["format"] == "csv" and ds["output"] == "classification" and ds["input_shape"] == [4]
    assert ds["modality"] == "vector" and ds["modality_params"]["features"] == 4 and ds["summary"]["classes"] == 12
    config = {"steps": 60, "n_way": 3, "k_shot": 2, "k_query": 4, "meta_batch_size": 4, "eval_episodes": 40,
              "hidden": [32, 32], "checkpoint_every": 0}
    model = _train(api, ds["id"], config)
    assert model["modality"] == "vector" and model["modality_params"] == {"features": 4, "standardized": True}
    assert model["metrics"]["accuracy"] >= 0.8, model["metrics"]  # chance 1/3; the noise feature would swamp f1..f3

    rows = [line.split(",") for line in blobs_csv(seed=0).splitlines()[1:]]  # raw units, as in the file
    by_class: dict[str, list[list[float]]] = {}
    for *features, label in rows:
        by_class.setdefault(label, []).append([float(v) for v in features])
    classes = model["splits"]["test"]["names"][:3]
    support = [x for c in classes for x in by_class[c][:2]]
    task = api.post(f"/v1/models/{model['id']}/tasks",
                    json={"support": {"inputs": support, "labels": [c for c in classes for _ in range(2)]}})
    assert task.status_code == 201, task.text
    queries = [(x, c) for c in classes for x in by_class[c][2:10]]
    got = api.post(f"/v1/tasks/{task.json()['id']}/predictions", json={"inputs": [x for x, _ in queries]}).json()
    accuracy = np.mean([p == want for p, (_, want) in zip(got["predictions"], queries, strict=True)])
    assert accuracy >= 0.8, accuracy


def test_csv_with_a_task_column_is_regression(api):
    r = api.post("/v1/datasets", files={"file": ("fns.csv", blobs_csv(task=True).encode())}, data={"label_column": "y"})
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["output"] == "regression" and ds["summary"]["tasks"] == 12 and ds["input_shape"] == [4]


@pytest.mark.parametrize(
    ("csv", "fields", "needle"),
    [
        ("a,b,label\n1,2,x\n3,,y\n", {}, "row 3, column 'b': the cell is empty"),
        ("a,b,label\n1,2,x\n3,4kg,y\n", {}, "row 3, column 'b': '4kg' is not a number"),
        ("a,b,label\n1,2,x\n3,nan,y\n", {}, "row 3, column 'b': 'nan' is not a finite"),
        ("a,b,label\n1,2\n", {}, "row 2 has 2 cells, the header has 3 columns"),
        ("a,b,kind\n1,2,x\n", {}, "no label column 'label'"),
        ("a,b,kind\n1,2,x\n", {"label_column": "y"}, "no label column 'y'"),
        ("a,b,y,task\n1,2,big,t1\n", {"label_column": "y"}, "row 2, column 'y': 'big' is not a number"),
        ("a,label\n1,\n", {}, "row 2, column 'label': the label is missing"),
        ("a,label\n", {}, "no rows"),
        ("a,a,label\n1,2,x\n", {}, "column 'a' twice"),
    ],
)
def test_bad_csv_is_refused_naming_row_and_column(api, csv, fields, needle):
    r = api.post("/v1/datasets", files={"file": ("t.csv", csv.encode())}, data=fields)
    error = assert_error(r, 422, "invalid_dataset")
    assert needle in error["message"] and error["param"] == "file", error


def test_channels_other_than_1_or_3_are_refused(api):
    error = assert_error(api.post("/v1/datasets", files={"file": ("hues.zip", hue_zip(per_class=2))}, data={"channels": "2"}),
                         422, "invalid_channels")
    assert error["param"] == "channels" and "1 (greyscale) or 3 (colour)" in error["message"]
