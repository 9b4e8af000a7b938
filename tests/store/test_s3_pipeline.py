"""The real pipeline functions (what the train and adapt workers run) with artifacts in S3.

A tiny sinusoid job is meta-trained by train_job and a task adapted by adapt_task against a
bucket on a real S3-compatible server; the same job on a local folder is the reference: the
predictions served by service.predictor.Predictor from the bucket must match it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.arrays import read_npz
from models.learners import AdaptOptions
from models.recipe import resolve
from service.predictor import Predictor
from store.artifacts import ObjectArtifactStore, artifact_store, dataset_key, state_key, support_key, theta_key
from store.db import Job, Model, Task, init_db, session_scope
from store.settings import Settings
from tests.e2e.api_support import blobs_npz
from tests.store.conftest import S3Server, s3_settings
from workers.pipelines import adapt_task, model_learner, train_job

CONFIG = {"steps": 6, "meta_batch_size": 2, "eval_episodes": 5, "checkpoint_every": 3}


def _support_and_queries() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(20, 1, generator=g) * 10 - 5  # [20, 1] in [-5, 5]
    y = 2.0 * torch.sin(x - 0.5)  # [20, 1] one sinusoid: amplitude 2, phase 0.5
    return x[:10], y[:10], x[10:]


def _train_adapt_predict(settings: Settings) -> tuple[str, str, torch.Tensor, float, float]:
    """Job -> model -> task -> predictions, as the API and the workers do it; returns ids, predictions, support MSEs."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # as create_app and the CLI do
    init_db(settings.sqlalchemy_url)
    recipe = resolve("maml", "sinusoid", CONFIG)
    with session_scope(settings.sqlalchemy_url) as session:
        job = Job(algorithm="maml", dataset="sinusoid", config=recipe.to_json(), total_steps=recipe.training.steps)
        session.add(job)
        session.flush()
        job_id = job.id
    model_id = train_job(job_id, settings)
    assert model_id is not None, "train_job did not finish the job"

    store = artifact_store(settings)
    support_x, support_y, queries = _support_and_queries()
    with session_scope(settings.sqlalchemy_url) as session:  # what POST /v1/models/{id}/tasks writes
        task = Task(model_id=model_id, support_size=10, scalar_targets=True)
        session.add(task)
        session.flush()
        task_id = task.id
    store.save(support_key(task_id), {"x": support_x, "y": support_y})
    assert adapt_task(task_id, settings) == "ready"

    with session_scope(settings.sqlalchemy_url) as session:
        model, ready = session.get(Model, model_id), session.get(Task, task_id)
        assert model is not None and ready is not None
        predictor = Predictor(artifact_store(settings), task_capacity=4)  # what the API serves from
        predictions = predictor.predict(model, ready, queries)  # [10, 1]
        learner = model_learner(model, settings)
    phi = store.load(state_key(task_id))
    unadapted = learner.adapt(support_x, support_y, AdaptOptions(inner_steps=0))
    mse = float(((learner.predict(phi, support_x) - support_y) ** 2).mean())
    mse_unadapted = float(((learner.predict(unadapted, support_x) - support_y) ** 2).mean())
    return model_id, task_id, predictions, mse, mse_unadapted


def test_training_and_adaptation_write_to_the_bucket_and_serve_the_same_predictions(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    settings = s3_settings(tmp_path / "s3-node", s3_server, bucket, prefix="prod")
    assert isinstance(artifact_store(settings), ObjectArtifactStore)
    model_id, task_id, predictions, mse, mse_unadapted = _train_adapt_predict(settings)

    objects = s3_server.objects(bucket)
    assert f"prod/{theta_key(model_id)}" in objects
    assert f"prod/{state_key(task_id)}" in objects and f"prod/{support_key(task_id)}" in objects
    assert sum("/checkpoints/step-" in key for key in objects) == 2  # steps 3 and 6
    assert not (settings.data_dir / "artifacts").exists()  # nothing went to a local folder

    reference = Settings(data_dir=tmp_path / "folder-node")  # the same job on the default backend
    _, _, local_predictions, _, _ = _train_adapt_predict(reference)
    assert torch.isfinite(predictions).all() and predictions.shape == (10, 1)
    assert torch.allclose(predictions, local_predictions, atol=1e-6)
    assert mse < mse_unadapted  # the stored phi is an adaptation: the support loss went down


def test_a_job_on_an_uploaded_dataset_reads_it_from_the_bucket(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    settings = s3_settings(tmp_path, s3_server, bucket)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    init_db(settings.sqlalchemy_url)
    data = read_npz(blobs_npz(n_classes=12, per_class=20, dim=8))  # what POST /v1/datasets stores
    artifact_store(settings).save(dataset_key("ds_blobs"), data.tensors(), metadata=data.metadata())
    recipe = resolve("protonet", "ds_blobs", {"steps": 20, "meta_batch_size": 2, "n_way": 3, "k_shot": 2, "k_query": 4, "eval_episodes": 20})
    with session_scope(settings.sqlalchemy_url) as session:
        job = Job(algorithm="protonet", dataset="ds_blobs", config=recipe.to_json(), total_steps=recipe.training.steps)
        session.add(job)
        session.flush()
        job_id = job.id
    model_id = train_job(job_id, settings)
    with session_scope(settings.sqlalchemy_url) as session:
        finished = session.get(Job, job_id)
        assert finished is not None and model_id is not None, finished and finished.error
        model = session.get(Model, model_id)
        assert model is not None
        assert model.metrics["accuracy"] > 1 / 3 + 0.2, model.metrics  # blobs 3-way: well above chance
    cached = list((settings.cache_dir / "artifacts" / bucket).rglob("*.safetensors"))
    assert [p.parent.name for p in cached] == ["ds_blobs"]  # the worker read its local copy
