"""The job ledger's leases: a worker runs a job only while it holds the job's lease.

A worker takes a queued job, or a running job whose lease expired (its worker was lost), by
one conditional UPDATE; a heartbeat renews the lease while the job runs; every write the job
makes afterwards (progress, checkpoints, its model, its final status) is conditional on the
lease token, so a worker that lost its lease can no longer change the job.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.orm import Session

from store.db import Job, record_event, session_scope, utcnow

log = logging.getLogger(__name__)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Lease:
    job_id: str
    token: str
    owner: str
    seconds: float
    attempt: int
    lost: threading.Event = field(default_factory=threading.Event)

    def held_by(self) -> object:
        """A WHERE clause: the job row still carries this lease."""
        return and_(Job.id == self.job_id, Job.lease_token == self.token, Job.status == "running")


def acquire(db_url: str, job_id: str, seconds: float, max_attempts: int) -> Lease | None:
    """Take the job's lease, or None when it is held, finished, or out of attempts (then failed)."""
    token, owner, now = secrets.token_hex(16), worker_identity(), utcnow()
    takeable = or_(Job.status == "queued", and_(Job.status == "running", Job.lease_expires_at < now))
    with session_scope(db_url) as session:
        taken = session.execute(
            update(Job)
            .where(Job.id == job_id, takeable, Job.attempts < max_attempts)
            .values(
                status="running", lease_owner=owner, lease_token=token, attempts=Job.attempts + 1,
                lease_expires_at=now + timedelta(seconds=seconds), started_at=now,
            )
        ).rowcount  # type: ignore[attr-defined]
        job = session.get(Job, job_id)
        if job is None:
            return None
        if taken:
            record_event(session, job_id, "status", status="running", attempt=job.attempts, worker=owner)
            return Lease(job_id, token, owner, seconds, job.attempts)
        _fail_if_exhausted(session, job_id, max_attempts, now)
    return None


def _fail_if_exhausted(session: Session, job_id: str, max_attempts: int, now: object) -> None:
    takeable = or_(Job.status == "queued", and_(Job.status == "running", Job.lease_expires_at < now))
    error = (
        f"gave up after {max_attempts} attempts: the worker running this job was lost each time "
        "(killed, out of memory, or the machine went away)"
    )
    failed = session.execute(
        update(Job)
        .where(Job.id == job_id, takeable, Job.attempts >= max_attempts)
        .values(status="failed", error=error, finished_at=utcnow(), lease_token=None)
    ).rowcount  # type: ignore[attr-defined]
    if failed:
        record_event(session, job_id, "status", status="failed", error=error)
        log.warning("job %s failed: %s", job_id, error)


def renew(db_url: str, lease: Lease) -> bool:
    with session_scope(db_url) as session:
        renewed = session.execute(
            update(Job).where(lease.held_by()).values(lease_expires_at=utcnow() + timedelta(seconds=lease.seconds))
        ).rowcount  # type: ignore[attr-defined]
    return bool(renewed)


class Heartbeat:
    """Renews a lease every third of its length in a background thread; sets `lease.lost`
    when the lease is gone (expired and taken over, or the job cancelled)."""

    def __init__(self, db_url: str, lease: Lease) -> None:
        self.db_url = db_url
        self.lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{lease.job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.lease.seconds / 3):
            try:
                if not renew(self.db_url, self.lease):
                    log.warning("job %s: lease lost", self.lease.job_id)
                    self.lease.lost.set()
                    return
            except Exception:  # the database may be briefly away: try again next beat
                log.exception("job %s: lease renewal failed", self.lease.job_id)
