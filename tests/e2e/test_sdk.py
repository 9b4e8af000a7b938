"""The fewshot_client SDK against a live `fewshot serve`: a whole flow, each error class from a real
answer, retries through real 429s and 503s, and lists that page by themselves."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fewshot_client import (
    APIConnectionError,
    AuthenticationError,
    ConflictError,
    Fewshot,
    InvalidRequestError,
    JobEvent,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
)
from PIL import Image

from models.weights import read_weights
from service.auth import create_key
from store.db import init_db, session_scope
from store.settings import Settings
from tests.e2e.api_support import QUICK_SINE, pattern_png, pattern_zip, served
from tests.e2e.server import ServeProcess

pytestmark = pytest.mark.e2e

IMAGE_CONFIG = {"steps": 10, "n_way": 2, "k_shot": 1, "k_query": 2, "meta_batch_size": 2, "channels": 8,
                "eval_episodes": 5, "inner_lr": 0.1}
SINE_X = [[-4.0], [-2.0], [0.0], [1.0], [2.5], [4.0]]
SINE_Y = [float(np.sin(x[0] - 1.0)) for x in SINE_X]


@dataclass
class Served:
    serve: ServeProcess
    url: str
    key: str
    other_key: str  # a second tenant

    def sdk(self, **kwargs: object) -> Fewshot:
        return Fewshot(self.url, self.key, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def served_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("sdk")
    settings = Settings(data_dir=data_dir)  # DATABASE_URL as tests/conftest.py set it: the server's database
    init_db(settings.sqlalchemy_url)
    with session_scope(settings.sqlalchemy_url) as session:
        key, other = create_key(session).key, create_key(session).key
    # Two adaptations in flight per process, one per tenant; a waited-for adaptation answers 202 after 2 s;
    # at most 2,000 numbers a request. One API process: the process's bound is that process's own, and
    # which of two processes takes a connection is the kernel's choice (the tenant's bound is shared).
    env = {"FEWSHOT_MAX_INFLIGHT_ADAPTATIONS": "2", "FEWSHOT_MAX_INFLIGHT_ADAPTATIONS_PER_TENANT": "1",
           "FEWSHOT_ADAPT_WAIT_SECONDS": "2", "FEWSHOT_MAX_REQUEST_NUMBERS": "2000", "FEWSHOT_API_WORKERS": "1"}
    with served(data_dir, redis_db=1, **env) as serve:
        yield Served(serve, f"http://127.0.0.1:{serve.port}", key, other)


@pytest.fixture(scope="module")
def sine_model(served_api: Served) -> str:
    with served_api.sdk() as fs:
        job = fs.jobs.create("maml", "sinusoid", config=QUICK_SINE).wait(timeout=120)
    assert job.status == "succeeded" and job.model_id is not None, job
    return job.model_id


@pytest.fixture(scope="module")
def other_sine_model(served_api: Served) -> str:
    """The second tenant's own model (a tenant adapts only its own models)."""
    with Fewshot(served_api.url, served_api.other_key) as fs:
        job = fs.jobs.create("maml", "sinusoid", config=QUICK_SINE).wait(timeout=120)
    assert job.model_id is not None, job
    return job.model_id


def test_a_whole_flow_from_upload_to_export_and_delete(served_api: Served, tmp_path: Path) -> None:
    os.environ.pop("FEWSHOT_URL", None)
    fs = Fewshot(served_api.url, served_api.key)
    archive = tmp_path / "shapes.zip"
    archive.write_bytes(pattern_zip())
    dataset = fs.datasets.upload(archive, name="shapes", image_size=28, invert=False)
    assert dataset.id.startswith("ds_") and dataset.input_shape == [1, 28, 28] and dataset.name == "shapes"
    assert fs.datasets.get(dataset.id).summary == dataset.summary
    assert dataset.modality == "image" and dataset.modality_params == {"channels": 1, "size": 28, "invert": False}

    job = fs.jobs.create("maml", dataset.id, config=IMAGE_CONFIG)
    assert job.status == "queued" and job.progress.total_steps == 10
    events: list[JobEvent] = []
    done = job.wait(timeout=120, on_event=events.append)
    assert done.status == "succeeded" and done.model_id is not None, done
    statuses = [e.data["status"] for e in events if e.type == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert [e.id for e in fs.jobs.events(job.id)] == [e.id for e in events]  # the JSON pages: the same events

    model = fs.models.get(done.model_id)
    assert model.accepts_images and model.ways == 2 and model.output == "classification"
    assert model.modality == "image" and model.modality_params == dataset.modality_params and model.max_classes == 2
    images = []
    for label, cls in (("bar-top", 0), ("bar-low", 5)):
        path = tmp_path / f"{label}.png"
        path.write_bytes(pattern_png(cls, 0))
        images.append(path)
    task = fs.models.adapt(model.id, [str(images[0]), images[1]], ["bar-top", "bar-low"])  # str and Path
    assert task.status == "ready" and sorted(task.labels or []) == ["bar-low", "bar-top"]
    queries = [Image.open(images[0]), np.asarray(Image.open(images[1]), dtype=np.float32)[None] / 255.0]
    predictions = task.predict(queries)  # a PIL image and an array in the model's input shape
    assert len(predictions) == 2 and [p.label for p in predictions] == ["bar-top", "bar-low"]
    assert all(p.probability is not None and 0.5 <= p.probability <= 1.0 for p in predictions)
    assert predictions.conversions == [] and task.conversions == []  # greyscale images for a greyscale model
    tinted = np.asarray(Image.open(images[0]).convert("RGB")).copy()
    tinted[..., 2] = (tinted[..., 2] * 0.9).astype(np.uint8)  # the white bar a little yellow: a colour image
    coloured = fs.tasks.predict(task.id, [Image.fromarray(tinted)])
    assert coloured.predictions == ["bar-top"] and "converted to greyscale" in coloured.conversions[0]
    assert fs.tasks.predict(task.id, [images[0]]).predictions == ["bar-top"]
    batch = np.stack([np.asarray(Image.open(p), dtype=np.float32)[None] / 255.0 for p in images])  # [2, 1, 28, 28]
    raw = task.predict(batch, binary=True)  # one float32 octet-stream body
    as_json = task.predict(batch)
    assert raw.predictions == as_json.predictions == ["bar-top", "bar-low"]
    assert np.allclose(raw.probabilities, as_json.probabilities, atol=1e-5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        task.predict([str(images[0])], binary=True)  # binary bodies are numbers, not files
    assert [t.id for t in fs.models.tasks(model.id)] == [task.id]

    weights = fs.models.export(model.id, tmp_path / "model.safetensors")
    learner = read_weights(weights)
    assert learner.spec.input_shape == (1, 28, 28)

    fs.tasks.delete(task.id)
    with pytest.raises(NotFoundError):
        fs.tasks.get(task.id)
    fs.models.delete(model.id)
    with pytest.raises(NotFoundError):
        fs.models.get(model.id)
    fs.datasets.delete(dataset.id)
    assert dataset.id not in [d.id for d in fs.datasets.list()]
    fs.close()


def test_exported_weights_give_the_apis_predictions_in_plain_pytorch(served_api: Served, sine_model: str,
                                                                     tmp_path: Path) -> None:
    with served_api.sdk() as fs:
        task = fs.models.adapt(sine_model, np.array(SINE_X), SINE_Y)
        served = task.predict([[0.5], [3.0]]).predictions
        learner = read_weights(fs.models.export(sine_model, tmp_path / "sine.safetensors"))
    phi = learner.adapt(torch.tensor(SINE_X), torch.tensor(SINE_Y).unsqueeze(1))
    local = learner.predict(phi, torch.tensor([[0.5], [3.0]])).squeeze(1).tolist()
    assert local == pytest.approx(served, abs=1e-4)


def test_each_error_class_from_a_real_answer(served_api: Served, sine_model: str) -> None:
    fs = served_api.sdk(max_retries=0)
    with pytest.raises(AuthenticationError) as auth, Fewshot(served_api.url, "fs_wrong") as wrong:
        wrong.jobs.get("job_x")
    assert auth.value.status == 401
    with pytest.raises(NotFoundError) as missing:
        fs.jobs.get("job_nope")
    assert (missing.value.status, missing.value.code, missing.value.param) == (404, "not_found", "job_id")
    with pytest.raises(NotFoundError), Fewshot(served_api.url, served_api.other_key) as other:
        other.models.get(sine_model)  # another tenant's model is not there for this key
    with pytest.raises(InvalidRequestError) as invalid:
        fs.jobs.create("maml", "sinusoid", config={"steps": -1})
    assert invalid.value.status == 422 and invalid.value.code == "invalid_config" and invalid.value.param
    with pytest.raises(InvalidRequestError) as too_large:  # over FEWSHOT_MAX_REQUEST_NUMBERS
        fs.models.adapt(sine_model, [[0.0]] * 5_000, [0.0] * 5_000)
    assert too_large.value.status == 413 and too_large.value.code == "too_many_numbers"
    job = fs.jobs.create("maml", "sinusoid", config={**QUICK_SINE, "steps": 100_000})
    assert fs.jobs.cancel(job.id).status == "cancelled"
    with pytest.raises(ConflictError) as finished:
        fs.jobs.cancel(job.id)
    assert finished.value.code == "job_finished"
    with pytest.raises(ConflictError) as reused:  # one key, two different requests
        fs.jobs.create("maml", "sinusoid", config=QUICK_SINE, idempotency_key="sdk-once")
        fs.jobs.create("maml", "sinusoid", config={**QUICK_SINE, "seed": 7}, idempotency_key="sdk-once")
    assert reused.value.code == "idempotency_key_reused"
    with pytest.raises(APIConnectionError), Fewshot("http://127.0.0.1:9", served_api.key, max_retries=1) as nowhere:
        nowhere.jobs.get("job_x")
    fs.close()


@pytest.fixture
def frozen_adapt_worker(served_api: Served) -> Iterator[int]:
    """The adapt worker stopped (SIGSTOP), so that a waited-for adaptation holds its admission slot for the
    server's whole wait (2 s); thawed afterwards."""
    assert served_api.serve.process is not None
    parent = served_api.serve.process.pid
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _child_worker(int(p), parent, "adapt")]
    assert len(pids) == 1, pids
    os.killpg(pids[0], signal.SIGSTOP)  # the worker's own session: its pool process stops too
    try:
        yield pids[0]
    finally:
        os.killpg(pids[0], signal.SIGCONT)


def _child_worker(pid: int, parent: int, queue: str) -> bool:
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError, ValueError):
        return False
    return ppid == parent and b"-Q" in argv and argv[argv.index(b"-Q") + 1] == queue.encode()


def _hold_slot(url: str, key: str, model_id: str) -> threading.Thread:
    """A raw request that waits for its adaptation (2 s with the worker frozen), holding a slot."""
    body = {"support": {"inputs": SINE_X, "labels": SINE_Y}}

    def run() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            assert c.post(f"/v1/models/{model_id}/tasks", json=body).status_code == 202

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)  # admitted, waiting
    return thread


def test_creates_retry_through_real_429s_and_503s(served_api: Served, sine_model: str, other_sine_model: str,
                                                  frozen_adapt_worker: int) -> None:
    url, key, other = served_api.url, served_api.key, served_api.other_key
    holder = _hold_slot(url, key, sine_model)  # this tenant's one slot
    with pytest.raises(RateLimitError) as limited, served_api.sdk(max_retries=0) as fs:
        fs.models.adapt(sine_model, SINE_X, SINE_Y, wait=False)
    assert limited.value.code == "too_many_adaptations" and limited.value.retry_after == 1
    started = time.monotonic()
    with served_api.sdk(max_retries=5) as fs:
        task = fs.models.adapt(sine_model, SINE_X, SINE_Y, wait=False)  # retried until admitted
    assert task.status == "adapting" and time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured
    holder.join()

    holders = [_hold_slot(url, key, sine_model), _hold_slot(url, other, other_sine_model)]  # the process's 2 slots
    with pytest.raises(ServiceUnavailableError) as overloaded, Fewshot(url, other, max_retries=0) as fs:
        fs.models.adapt(other_sine_model, SINE_X, SINE_Y, wait=False)
    assert overloaded.value.code == "overloaded" and overloaded.value.retry_after == 1
    with Fewshot(url, other, max_retries=5) as fs:
        task = fs.models.adapt(other_sine_model, SINE_X, SINE_Y, wait=False)
    assert task.status == "adapting"
    for thread in holders:
        thread.join()
    os.killpg(frozen_adapt_worker, signal.SIGCONT)
    with Fewshot(url, other) as fs:
        assert fs.tasks.get(task.id).wait(timeout=60).status == "ready"


def test_lists_page_by_themselves(served_api: Served, sine_model: str) -> None:
    fs = served_api.sdk()
    created = [fs.jobs.create("maml", "sinusoid", config={**QUICK_SINE, "steps": 100_000}) for _ in range(3)]
    for job in created:
        fs.jobs.cancel(job.id)
    first = fs.jobs.list(limit=2)
    assert len(first.data) == 2 and first.has_more
    ids = [job.id for job in fs.jobs.list(limit=2)]
    assert len(ids) == len(set(ids)) >= 4 and ids[:3] == [j.id for j in reversed(created)]
    assert [j.id for j in fs.jobs.list(limit=1, status="cancelled")][:3] == [j.id for j in reversed(created)]
    datasets = [d.id for d in fs.datasets.list(limit=1)]
    assert {"sinusoid", "omniglot", "mnist", "mtl-synthetic"} <= set(datasets)
    statuses = [e.data["status"] for e in fs.jobs.events(created[0].id, limit=1) if e.type == "status"]
    assert statuses[0] == "queued" and statuses[-1] == "cancelled"  # one event a page
    models = [m.id for m in fs.models.list(limit=1)]
    assert sine_model in models
    fs.close()


def test_jobs_take_a_name_and_metadata_and_list_by_them(served_api: Served) -> None:
    with served_api.sdk() as fs:
        config = {**QUICK_SINE, "steps": 100_000}
        tagged = fs.jobs.create("maml", "sinusoid", config, name="nightly", metadata={"team": "vision", "run": "1"})
        other = fs.jobs.create("maml", "sinusoid", config, name="nightly", metadata={"team": "speech"})
        for job in (tagged, other):
            fs.jobs.cancel(job.id)
        assert (tagged.name, tagged.metadata) == ("nightly", {"run": "1", "team": "vision"})
        assert fs.jobs.get(tagged.id).metadata == {"run": "1", "team": "vision"}
        assert [j.id for j in fs.jobs.list(name="nightly")] == [other.id, tagged.id]
        assert [j.id for j in fs.jobs.list(limit=1, metadata={"team": "vision"})] == [tagged.id]
        assert [j.id for j in fs.jobs.list(name="nightly", metadata={"team": "vision", "run": "2"})] == []
        with pytest.raises(InvalidRequestError) as too_many:
            fs.jobs.create("maml", "sinusoid", config, metadata={f"k{i}": "v" for i in range(17)})
        assert too_many.value.status == 422 and too_many.value.param is not None
        with pytest.raises(InvalidRequestError):
            fs.jobs.create("maml", "sinusoid", config, metadata={"k": "v" * 513})
