"""Re-sending work that a stopped single-node service left unfinished."""

from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy import select, update

from store.db import Job, Task, session_scope
from store.queue import ADAPT_TASK, TRAIN_JOB

log = logging.getLogger(__name__)


def requeue_unfinished(db_url: str, celery: Celery) -> tuple[int, int]:
    """Jobs left running go back to queued; every queued job and adapting task is sent again.

    Only for `fewshot serve`, where no other worker can hold them. A message sent twice is
    harmless: a job starts only from `queued`, a task adapts only while `adapting`.
    """
    with session_scope(db_url) as session:
        session.execute(update(Job).where(Job.status == "running").values(status="queued"))
        job_ids = list(session.scalars(select(Job.id).where(Job.status == "queued")))
        task_ids = list(session.scalars(select(Task.id).where(Task.status == "adapting")))
    for job_id in job_ids:
        celery.send_task(TRAIN_JOB, args=[job_id])
    for task_id in task_ids:
        celery.send_task(ADAPT_TASK, args=[task_id])
    if job_ids or task_ids:
        log.info("re-sent %d unfinished jobs and %d adapting tasks", len(job_ids), len(task_ids))
    return len(job_ids), len(task_ids)
