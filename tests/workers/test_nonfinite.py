"""Numbers that break the maths fail the work instead of storing a broken state: a meta-training
job whose loss explodes ends `failed` with `diverged at step N`, and a task whose adapted state
predicts non-finite outputs for its own support set ends `failed`, never `ready`."""

from __future__ import annotations

import pytest
import torch

from models.learners import AdaptRequest, Learner, build_learner
from models.recipe import resolve
from models.sinusoid import SinusoidTasks
from store.artifacts import artifact_store, support_key
from store.db import Job, JobEvent, Model, Task, init_db, session_scope
from store.ids import new_id
from store.settings import Settings
from workers import pipelines


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    settings = Settings(data_dir=tmp_path_factory.mktemp("nonfinite"))
    init_db(settings.sqlalchemy_url)
    return settings


def _job(settings: Settings, config: dict) -> str:
    recipe = resolve("maml", "sinusoid", config)
    with session_scope(settings.sqlalchemy_url) as session:
        job = Job(algorithm="maml", dataset="sinusoid", config=recipe.to_json(), total_steps=recipe.training.steps)
        session.add(job)
        session.flush()
        return job.id


@pytest.fixture(scope="module")
def sine_model(settings) -> str:
    # adapt_steps 1: one plain inner step turns labels of 1e38 into a finite state of 1e36 with infinite outputs
    config = {"steps": 3, "meta_batch_size": 2, "eval_episodes": 3, "adapt_steps": 1}
    model_id = pipelines.train_job(_job(settings, config), settings)
    assert model_id is not None
    return model_id


def _task(settings: Settings, model_id: str, x: list[float], y: list[float]) -> str:
    task_id = new_id("tsk")
    artifact_store(settings).save(support_key(task_id), {"x": torch.tensor(x).unsqueeze(1), "y": torch.tensor(y).unsqueeze(1)})
    with session_scope(settings.sqlalchemy_url) as session:
        session.add(Task(id=task_id, model_id=model_id, status="adapting", support_size=len(x), scalar_targets=True, options={}))
    return task_id


def test_a_job_whose_loss_explodes_fails_with_its_step(settings):
    job_id = _job(settings, {"steps": 200, "meta_lr": 1.0, "inner_lr": 10, "eval_episodes": 5, "checkpoint_every": 0})
    assert pipelines.train_job(job_id, settings) is None
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "failed" and job.model_id is None
        assert job.error is not None and job.error.startswith("diverged at step 2: "), job.error
        assert "divergence_factor" in job.error and "meta_lr" in job.error
        assert session.query(Model).filter(Model.job_id == job_id).count() == 0
        events = [e.data for e in session.query(JobEvent).filter(JobEvent.job_id == job_id, JobEvent.type == "status").order_by(JobEvent.seq)]
        assert events[-1]["status"] == "failed" and events[-1]["error"] == job.error


def test_a_support_set_whose_state_predicts_infinity_fails_the_task(settings, sine_model):
    task_id = _task(settings, sine_model, [0.0, 1.0], [1e38, 1.0])  # finite float32; the state is 1e36, outputs inf
    assert pipelines.adapt_task(task_id, settings) == "failed"
    with session_scope(settings.sqlalchemy_url) as session:
        task = session.get(Task, task_id)
        assert task is not None and task.status == "failed" and task.artifact is None
        assert "not finite" in task.error and "1e+38" in task.error, task.error


def test_an_ordinary_support_set_stays_ready(settings, sine_model):
    task_id = _task(settings, sine_model, [-2.0, 0.0, 2.0], [-0.9, 0.0, 0.9])
    assert pipelines.adapt_task(task_id, settings) == "ready"


def _sine_learner() -> Learner:
    torch.manual_seed(0)
    return build_learner("maml", SinusoidTasks().spec, {"adapt_steps": 1, "hidden": [16, 16]})


def test_maml_refuses_infinite_support_outputs_itself_eagerly_and_vectorised():
    """The MAML family's support pass (the one that records the batch-norm statistics) is what phi
    predicts for the support inputs: adapt() checks it, so the worker does not predict them again."""
    learner = _sine_learner()
    x, bad, good = torch.tensor([[0.0], [1.0]]), torch.tensor([[1e38], [1.0]]), torch.tensor([[0.5], [1.0]])
    with pytest.raises(pipelines.AdaptationDiverged, match=r"not finite .*the largest \|label\| is 1e\+38"):
        learner.adapt(x, bad)
    with pytest.raises(pipelines.AdaptationDiverged, match="not finite"):
        learner.adapt_many([AdaptRequest(x, good), AdaptRequest(x, bad)], vectorize=True)
    phi = learner.adapt(x, good)
    learner.predict = None  # type: ignore[method-assign]  # check_adapted must not predict again: adapt() checked
    pipelines.check_adapted(learner, phi, x, good)
    key = next(iter(phi))
    with pytest.raises(pipelines.AdaptationDiverged, match=f"non-finite values in {key}"):  # the state itself still is
        pipelines.check_adapted(learner, {**phi, key: torch.full_like(phi[key], float("nan"))}, x, good)
