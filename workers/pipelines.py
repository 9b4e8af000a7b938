"""The work itself, as plain functions of ids: testable without a broker or a worker."""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import update

from models.episodes import ProblemSpec
from models.learners import AdaptOptions, Learner, build_learner, load_learner
from models.recipe import DataSources, Recipe, build_tasks, resolve
from models.training import evaluate, meta_train
from store.artifacts import ArtifactStore, state_key, support_key, task_prefix, theta_key
from store.db import Job, Model, Task, session_scope, utcnow
from store.ids import new_id
from store.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5


class JobCancelled(Exception):
    pass


class ProgressRecorder:
    """on_step callback: writes step and metrics to the job row at most every 0.5 s and
    stops the run when the job was cancelled."""

    def __init__(self, job_id: str, db_url: str) -> None:
        self.job_id = job_id
        self.db_url = db_url
        self.last = 0.0

    def __call__(self, step: int, total: int, metrics: dict[str, float]) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_INTERVAL_S and step != total:
            return
        self.last = now
        with session_scope(self.db_url) as session:
            job = session.get(Job, self.job_id)
            if job is None or job.status == "cancelled":
                raise JobCancelled
            job.step, job.total_steps, job.metrics = step, total, dict(metrics)


def train_job(job_id: str, settings: Settings) -> str | None:
    """Meta-train the job's learner, evaluate it on meta-test tasks, store the model.

    Returns the model id, or None when the job did not succeed (its row says why).
    """
    url = settings.sqlalchemy_url
    with session_scope(url) as session:
        # Only a queued job starts, and only once: the conditional update is the claim.
        claimed = session.execute(
            update(Job).where(Job.id == job_id, Job.status == "queued")
            .values(status="running", started_at=utcnow(), attempts=Job.attempts + 1)
        ).rowcount
        job = session.get(Job, job_id)
        if job is None or not claimed:
            log.info("job %s not started: %s", job_id, "missing" if job is None else job.status)
            return job.model_id if job is not None else None
        algorithm, dataset, config = job.algorithm, job.dataset, dict(job.config)
    try:
        recipe = resolve(algorithm, dataset, config)
        tasks = build_tasks(recipe, DataSources(settings.omniglot_path, settings.cache_dir))
        cfg = recipe.training
        torch.manual_seed(cfg.seed)  # the initial theta is part of the seeded run
        learner = build_learner(algorithm, tasks.spec, recipe.learner)
        meta_train(learner, tasks, cfg.steps, cfg.meta_batch_size, cfg.seed, ProgressRecorder(job_id, url))
        metrics = _evaluate(learner, tasks, recipe)
        model_id = new_id("mdl")
        key = theta_key(model_id)
        ArtifactStore(settings.artifact_dir).save(key, learner.state())
        with session_scope(url) as session:
            session.add(
                Model(
                    id=model_id, job_id=job_id, algorithm=algorithm, dataset=dataset,
                    spec=tasks.spec.to_json(), learner_config=recipe.learner_json(),
                    metrics=metrics, artifact=key,
                )
            )
            job = session.get(Job, job_id)
            assert job is not None
            job.status, job.model_id, job.finished_at = "succeeded", model_id, utcnow()
        log.info("job %s succeeded: model %s %s", job_id, model_id, metrics)
        return model_id
    except JobCancelled:
        log.info("job %s cancelled", job_id)
        return None
    except Exception as exc:
        log.exception("job %s failed", job_id)
        with session_scope(url) as session:
            job = session.get(Job, job_id)
            if job is not None:
                job.status, job.error, job.finished_at = "failed", f"{type(exc).__name__}: {exc}", utcnow()
        return None


def _evaluate(learner: Learner, tasks: Any, recipe: Recipe) -> dict[str, Any]:
    cfg = recipe.training
    metrics: dict[str, Any] = dict(evaluate(learner, tasks, cfg.eval_episodes, cfg.seed).to_json())
    if learner.spec.output == "regression" and hasattr(learner.config, "inner_steps"):
        unadapted = evaluate(learner, tasks, cfg.eval_episodes, cfg.seed, options=AdaptOptions(inner_steps=0))
        metrics["mse_unadapted"] = unadapted.mean
    return metrics


@functools.lru_cache(maxsize=8)
def _cached_learner(model_id: str, artifact_root: str, algorithm: str, spec_json: str, config_json: str) -> Learner:
    theta = ArtifactStore(Path(artifact_root)).load(theta_key(model_id))
    return load_learner(algorithm, ProblemSpec.from_json(json.loads(spec_json)), json.loads(config_json), theta)


def model_learner(model: Model, settings: Settings) -> Learner:
    """The model's learner with theta loaded; models never change, so this is cached."""
    return _cached_learner(
        model.id, str(settings.artifact_dir), model.algorithm,
        json.dumps(model.spec, sort_keys=True), json.dumps(model.learner_config, sort_keys=True),
    )


def adapt_task(task_id: str, settings: Settings) -> str:
    """Adapt the task's model to its stored support set; returns the task's final status."""
    url = settings.sqlalchemy_url
    store = ArtifactStore(settings.artifact_dir)
    with session_scope(url) as session:
        task = session.get(Task, task_id)
        if task is None:
            log.warning("task %s does not exist; message dropped", task_id)
            return "missing"
        if task.status != "adapting":
            return task.status
        model = session.get(Model, task.model_id)
        assert model is not None
        options = AdaptOptions(**task.options)
    try:
        learner = model_learner(model, settings)
        support = store.load(support_key(task_id))
        phi = learner.adapt(support["x"], support["y"], options)
        if any(not torch.isfinite(v).all() for v in phi.values()):
            raise ValueError("adaptation diverged (non-finite parameters); try a smaller inner_lr")
        store.save(state_key(task_id), phi)
        status, error = "ready", None
    except Exception as exc:
        log.exception("adaptation of task %s failed", task_id)
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    with session_scope(url) as session:
        task = session.get(Task, task_id)
        if task is None:  # deleted while adapting
            store.delete_prefix(task_prefix(task_id))
            return "missing"
        task.status, task.error = status, error
        if status == "ready":
            task.artifact, task.ready_at = state_key(task_id), utcnow()
    return status
