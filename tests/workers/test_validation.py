"""A training job validates on meta-val tasks as it goes: val_* metrics with their 95% CIs reach
its progress events and checkpoints, the model is the best state on meta-val, and a plateau
ends the job early when early_stopping_patience asks for it."""

from __future__ import annotations

import pytest

from models.recipe import resolve
from store.artifacts import artifact_store
from store.db import Checkpoint, Job, JobEvent, Model, init_db, session_scope
from store.settings import Settings
from workers import pipelines


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    settings = Settings(data_dir=tmp_path_factory.mktemp("validation"))
    init_db(settings.sqlalchemy_url)
    return settings


def _job(settings: Settings, config: dict) -> str:
    recipe = resolve("maml", "sinusoid", config)
    with session_scope(settings.sqlalchemy_url) as session:
        job = Job(algorithm="maml", dataset="sinusoid", config=recipe.to_json(), total_steps=recipe.training.steps)
        session.add(job)
        session.flush()
        return job.id


def _events(settings: Settings, job_id: str, type_: str) -> list[dict]:
    with session_scope(settings.sqlalchemy_url) as session:
        rows = session.query(JobEvent).filter(JobEvent.job_id == job_id, JobEvent.type == type_).order_by(JobEvent.seq)
        return [dict(e.data) for e in rows]


def test_validation_metrics_reach_events_checkpoints_and_the_model(settings):
    config = {"steps": 6, "meta_batch_size": 2, "eval_every": 2, "val_episodes": 4, "eval_episodes": 4, "checkpoint_every": 3}
    job_id = _job(settings, config)
    model_id = pipelines.train_job(job_id, settings)
    assert model_id is not None
    progress = {e["step"]: e["metrics"] for e in _events(settings, job_id, "progress")}
    elapsed = [e["elapsed_s"] for e in _events(settings, job_id, "progress")]  # learning curves against wall time
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0
    for step in (2, 4, 6):  # every validation is an event, however fast the steps
        assert progress[step]["val_step"] == step and progress[step]["val_mse"] > 0 and progress[step]["val_mse_ci95"] > 0
    with session_scope(settings.sqlalchemy_url) as session:
        checkpoints = session.query(Checkpoint).filter(Checkpoint.job_id == job_id).order_by(Checkpoint.step).all()
        assert [c.step for c in checkpoints] == [3, 6]
        assert checkpoints[0].metrics["val_step"] == 2 and "val_mse" in checkpoints[0].metrics  # the latest validation
        _, metadata = artifact_store(settings).load_with_metadata(checkpoints[1].artifact)
        assert "validation" in metadata  # the best state so far, so that a resumed run keeps it
        model = session.get(Model, model_id)
        assert model is not None
        best = min(progress[s]["val_mse"] for s in (2, 4, 6))
        assert model.metrics["kept"] == "best" and model.metrics["best_val_mse"] == best
        assert progress[model.metrics["kept_step"]]["val_mse"] == best
        assert "mse" in model.metrics and model.metrics["evaluated_on"] == "test"


def test_a_plateau_ends_the_job_early(settings):
    # meta_lr 1e-30 leaves theta unchanged in float32: no evaluation beats the first.
    config = {"steps": 100, "meta_batch_size": 2, "eval_every": 1, "val_episodes": 3, "eval_episodes": 3,
              "meta_lr": 1e-30, "early_stopping_patience": 2, "checkpoint_every": 0}
    job_id = _job(settings, config)
    model_id = pipelines.train_job(job_id, settings)
    assert model_id is not None
    warnings = _events(settings, job_id, "warning")
    assert warnings and warnings[-1]["message"].startswith("stopped early at step 3") and warnings[-1]["step"] == 3
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "succeeded" and job.step == 3
        model = session.get(Model, model_id)
        assert model is not None and model.metrics["kept_step"] == 1
