"""The reconciler: the ledger in SQL is the truth, and Redis is brought back in line with it.

Re-sends jobs whose lease expired (their worker was lost) and jobs and adaptations that the
ledger says are waiting but no Redis queue holds (Redis restarted without persistence, or a
send was lost). Every worker runs it at start-up and then periodically; a message sent twice
is harmless, because a job runs only under its lease and a task adapts only while adapting.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import timedelta

from celery import Celery
from sqlalchemy import select

from store.db import Job, Task, session_scope, utcnow
from store.queue import ADAPT_QUEUE, ADAPT_TASK, TRAIN_JOB, TRAIN_QUEUE

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(rb"(job|tsk)_[0-9a-f]{20,}")
GRACE_SECONDS = 5.0  # a just-created job may be committed but not yet sent


@dataclass(frozen=True)
class Reconciliation:
    jobs_resent: int
    tasks_resent: int


def ids_in_redis(celery: Celery) -> tuple[set[str], set[str]]:
    """Job and task ids in the queues' waiting messages, and in unacknowledged (delivered) ones."""
    with celery.connection_for_write() as conn:
        client = conn.default_channel.client  # type: ignore[attr-defined]
        waiting = [*client.lrange(TRAIN_QUEUE, 0, -1), *client.lrange(ADAPT_QUEUE, 0, -1)]
        delivered = list(client.hvals("unacked"))
    return _ids(waiting), _ids(delivered)


def _ids(blobs: list[bytes]) -> set[str]:
    return {m.group(0).decode() for blob in blobs for m in ID_PATTERN.finditer(blob)}


def reconcile(db_url: str, celery: Celery) -> Reconciliation:
    now = utcnow()
    settled = now - timedelta(seconds=GRACE_SECONDS)
    with session_scope(db_url) as session:
        expired = list(session.scalars(select(Job.id).where(Job.status == "running", Job.lease_expires_at < now)))
        queued_jobs = list(session.scalars(select(Job.id).where(Job.status == "queued", Job.created_at < settled)))
        adapting = list(session.scalars(select(Task.id).where(Task.status == "adapting", Task.created_at < settled)))
    if not (expired or queued_jobs or adapting):
        return Reconciliation(0, 0)
    waiting, delivered = ids_in_redis(celery)
    # A lost worker's message stays unacknowledged until the visibility timeout: an expired
    # job is re-sent unless a message for it already waits in a queue.
    jobs = [j for j in expired if j not in waiting]
    jobs += [j for j in queued_jobs if j not in waiting and j not in delivered]
    tasks = [t for t in adapting if t not in waiting and t not in delivered]
    for job_id in jobs:
        celery.send_task(TRAIN_JOB, args=[job_id], ignore_result=True)
    for task_id in tasks:
        celery.send_task(ADAPT_TASK, args=[task_id], ignore_result=True)
    if jobs or tasks:
        log.info("reconciler re-sent jobs %s and tasks %s", jobs, tasks)
    return Reconciliation(len(jobs), len(tasks))


class PeriodicReconciler:
    """Runs reconcile() at once and then every `interval` seconds in a daemon thread."""

    def __init__(self, db_url: str, celery: Celery, interval: float) -> None:
        self.db_url, self.celery, self.interval = db_url, celery, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            try:
                reconcile(self.db_url, self.celery)
            except Exception:  # Redis or the database away: try again next round
                log.warning("reconciliation failed; retrying in %.0f s", self.interval, exc_info=True)
            if self._stop.wait(self.interval):
                return
