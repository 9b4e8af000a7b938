"""Celery tasks: thin wrappers that take ids and call the pipelines."""

from __future__ import annotations

from store.queue import ADAPT_TASK, TRAIN_JOB
from workers import pipelines
from workers.app import app, settings


@app.task(name=TRAIN_JOB, ignore_result=True)
def train_job(job_id: str) -> None:
    pipelines.train_job(job_id, settings)


@app.task(name=ADAPT_TASK)
def adapt_task(task_id: str) -> str:
    return pipelines.adapt_task(task_id, settings)
