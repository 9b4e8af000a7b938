"""A trained model records which classes (or dataset tasks) went to meta-train, meta-val and
meta-test; with test_fraction 0 its metrics come from meta-val, say so, and the job warns."""

from __future__ import annotations

import pytest

from models.arrays import read_npz
from models.omniglot import load_omniglot, split_characters
from models.recipe import resolve
from store.artifacts import artifact_store, dataset_key
from store.db import Job, JobEvent, Model, init_db, session_scope
from store.settings import Settings
from tests.e2e.api_support import blobs_npz
from workers import pipelines

QUICK = {"steps": 2, "meta_batch_size": 2, "eval_episodes": 3, "checkpoint_every": 0}


@pytest.fixture(scope="module")
def settings(tmp_path_factory, omniglot_dir) -> Settings:
    settings = Settings(data_dir=tmp_path_factory.mktemp("splits"), omniglot_dir=omniglot_dir)
    init_db(settings.sqlalchemy_url)
    data = read_npz(blobs_npz(n_classes=16, per_class=8, dim=8))  # labels 0, 10, ..., 150: what POST /v1/datasets stores
    artifact_store(settings).save(dataset_key("ds_blobs"), data.tensors(), metadata=data.metadata())
    return settings


def _train(settings: Settings, algorithm: str, dataset: str, config: dict) -> tuple[Model, Job, list[JobEvent]]:
    recipe = resolve(algorithm, dataset, config)
    with session_scope(settings.sqlalchemy_url) as session:
        job = Job(algorithm=algorithm, dataset=dataset, config=recipe.to_json(), total_steps=recipe.training.steps)
        session.add(job)
        session.flush()
        job_id = job.id
    model_id = pipelines.train_job(job_id, settings)
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        assert job is not None and model_id is not None, job and job.error
        model = session.get(Model, model_id)
        assert model is not None
        events = list(session.query(JobEvent).filter(JobEvent.job_id == job_id).order_by(JobEvent.seq))
        return model, job, events


def test_an_omniglot_model_records_its_characters_per_split(settings, omniglot_dir):
    model, _, events = _train(settings, "protonet", "omniglot", {**QUICK, "k_query": 2, "channels": 8, "n_way": 5,
                                                                       "rotations": False, "split_by": "character"})
    data = load_omniglot(omniglot_dir, settings.cache_dir)
    expected = split_characters(data, "character", seed=0)  # the defaults: val 0.1, test 0.25
    assert model.splits is not None and model.splits["kind"] == "classes"
    for split in ("train", "val", "test"):
        assert model.splits[split] == {"count": len(expected[split]), "names": [data.characters[i] for i in expected[split]]}
    assert [model.splits[s]["count"] for s in ("train", "val", "test")] == [158, 24, 60]
    assert model.metrics["evaluated_on"] == "test"
    assert not [e for e in events if e.type == "warning"]


def test_test_fraction_zero_evaluates_on_val_and_warns(settings):
    config = {**QUICK, "n_way": 3, "k_shot": 2, "k_query": 3, "val_fraction": 0.25, "test_fraction": 0}
    model, job, events = _train(settings, "protonet", "ds_blobs", config)
    assert job.config["test_fraction"] == 0 and job.config["val_fraction"] == 0.25
    assert model.metrics["evaluated_on"] == "val" and model.metrics["episodes"] == 3
    assert model.splits is not None and model.splits["test"] == {"count": 0, "names": []}
    assert model.splits["val"]["count"] == 4 and model.splits["train"]["count"] == 12
    labels = {str(10 * c) for c in range(16)}  # the npz's label values
    assert set(model.splits["train"]["names"]) | set(model.splits["val"]["names"]) == labels
    assert not set(model.splits["train"]["names"]) & set(model.splits["val"]["names"])
    warnings = [e.data for e in events if e.type == "warning"]
    assert len(warnings) == 1 and "test_fraction is 0" in warnings[0]["message"], warnings
    assert "meta-val" in warnings[0]["message"] and warnings[0]["param"] == "config.test_fraction"
    assert events[-1].type == "status" and events[-1].data["status"] == "succeeded"


def test_a_family_without_classes_records_no_splits(settings):
    model, _, _ = _train(settings, "maml", "sinusoid", QUICK)
    assert model.splits is None and model.metrics["evaluated_on"] == "test"
