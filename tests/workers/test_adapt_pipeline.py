"""The adapt worker's functions without a broker: adapt_task on the ledger, and the warm-ups that
take a fresh worker's one-time costs out of its first task."""

from __future__ import annotations

import pytest
import torch

from models.recipe import resolve
from store.artifacts import artifact_store, serialize, state_key, support_key, theta_key
from store.db import Job, Model, Task, init_db, session_scope
from store.ids import new_id
from store.settings import Settings
from workers import pipelines


@pytest.fixture(scope="module")
def settings(tmp_path_factory, omniglot_dir) -> Settings:
    settings = Settings(data_dir=tmp_path_factory.mktemp("adapt-pipeline"), omniglot_dir=omniglot_dir)
    init_db(settings.sqlalchemy_url)
    return settings


def _train(settings: Settings, algorithm: str, dataset: str, config: dict) -> str:
    recipe = resolve(algorithm, dataset, config)
    with session_scope(settings.sqlalchemy_url) as session:
        job = Job(algorithm=algorithm, dataset=dataset, config=recipe.to_json(), total_steps=recipe.training.steps)
        session.add(job)
        session.flush()
        job_id = job.id
    model_id = pipelines.train_job(job_id, settings)
    assert model_id is not None
    return model_id


@pytest.fixture(scope="module")
def sine_model(settings) -> str:
    return _train(settings, "maml", "sinusoid", {"steps": 3, "meta_batch_size": 2, "eval_episodes": 3})


def _task(settings: Settings, model_id: str) -> str:
    """A task as the API leaves it for the worker: support in the store, row adapting."""
    task_id = new_id("tsk")
    x = torch.linspace(-3, 3, 5).unsqueeze(1)
    artifact_store(settings).save(support_key(task_id), {"x": x, "y": torch.sin(x)})
    with session_scope(settings.sqlalchemy_url) as session:
        session.add(Task(id=task_id, model_id=model_id, status="adapting", support_size=5, scalar_targets=True, options={}))
    return task_id


def test_adapt_task_records_ready_once(settings, sine_model):
    task_id = _task(settings, sine_model)
    assert pipelines.adapt_task(task_id, settings) == "ready"
    with session_scope(settings.sqlalchemy_url) as session:
        task = session.get(Task, task_id)
        assert task is not None and task.status == "ready" and task.artifact == state_key(task_id) and task.ready_at
    state = artifact_store(settings).path(state_key(task_id))
    written = state.stat().st_mtime_ns
    assert pipelines.adapt_task(task_id, settings) == "ready"  # a redelivered message adapts nothing
    assert state.stat().st_mtime_ns == written


def test_a_support_set_in_the_row_adapts_as_one_in_a_file(settings, sine_model):
    """The API stores a task's support set in its row (migration 0006); tasks stored before keep
    theirs in the artifact store, and both adapt the same way."""
    from_file = _task(settings, sine_model)
    in_row = new_id("tsk")
    x = torch.linspace(-3, 3, 5).unsqueeze(1)
    with session_scope(settings.sqlalchemy_url) as session:
        session.add(Task(id=in_row, model_id=sine_model, status="adapting", support_size=5, scalar_targets=True,
                         options={}, support=serialize({"x": x, "y": torch.sin(x)})))
    store = artifact_store(settings)
    assert not store.exists(support_key(in_row))
    assert pipelines.adapt_task(in_row, settings) == "ready"
    assert pipelines.adapt_task(from_file, settings) == "ready"
    a, b = store.load(state_key(in_row)), store.load(state_key(from_file))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    with session_scope(settings.sqlalchemy_url) as session:
        task = session.get(Task, in_row)
        assert task is not None and "support" not in task.__dict__  # deferred: reading a row leaves it out


def test_adapt_task_of_an_unknown_task_is_missing(settings):
    assert pipelines.adapt_task("tsk_doesnotexist", settings) == "missing"


def test_warm_model_caches_the_learner_and_changes_nothing(settings, omniglot_dir):
    # ProtoNet keeps BatchNorm running statistics: the warm-up must leave the cached learner
    # exactly as loaded, statistics included, since it serves every later task.
    model_id = _train(settings, "protonet", "omniglot",
                      {"steps": 2, "meta_batch_size": 2, "k_query": 2, "channels": 8, "eval_episodes": 2})
    pipelines._cached_learner.cache_clear()
    assert pipelines.warm_model(model_id, settings)
    assert pipelines._cached_learner.cache_info().currsize == 1
    with session_scope(settings.sqlalchemy_url) as session:
        model = session.get(Model, model_id)
        assert model is not None
    learner = pipelines.model_learner(model, settings)
    assert pipelines._cached_learner.cache_info().hits == 1
    stored = artifact_store(settings).load(theta_key(model_id))
    state = learner.state()
    assert any("running_mean" in k for k in state)
    assert all(torch.equal(state[k], stored[k]) for k in stored)


def test_warm_model_of_an_unknown_model_is_false(settings):
    assert not pipelines.warm_model("mdl_doesnotexist", settings)


def test_warm_process_runs(settings):
    pipelines.warm_process(settings)
