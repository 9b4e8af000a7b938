"""Celery tasks: thin wrappers that take ids and call the pipelines."""

from __future__ import annotations

import logging

from store import adaptation_events
from store.queue import ADAPT_TASK, TRAIN_JOB, WARM_MODEL
from workers import pipelines
from workers.app import app, settings

log = logging.getLogger(__name__)

WARM_EXPIRES_S = 600.0  # a warm-up no adapt worker took by then is dropped, not run late


@app.task(name=TRAIN_JOB, ignore_result=True)
def train_job(job_id: str) -> None:
    model_id = pipelines.train_job(job_id, settings)
    if model_id is not None:
        try:  # the job has succeeded already: a lost warm-up only makes the first task slower
            warm_model.apply_async(args=[model_id], expires=WARM_EXPIRES_S, retry=False)
        except Exception as exc:  # noqa: BLE001
            log.warning("model %s: warm-up not sent (%s: %s)", model_id, type(exc).__name__, exc)


@app.task(name=ADAPT_TASK, ignore_result=True)
def adapt_task(task_id: str) -> str:
    # This task and the model's others waiting, announced chunk by chunk as they are recorded: the
    # API waits on these announcements, not on a Celery result (none is stored).
    statuses = pipelines.adapt_tasks(task_id, settings, lambda chunk: adaptation_events.announce_many(settings.redis_url, chunk))
    return statuses.get(task_id, "adapting")


@app.task(name=WARM_MODEL, ignore_result=True)
def warm_model(model_id: str) -> None:
    pipelines.warm_model(model_id, settings)
