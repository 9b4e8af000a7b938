"""The job ledger's leases on SQLite and PostgreSQL: one holder, takeover after expiry, a cap."""

from __future__ import annotations

import time

import pytest

from store.db import Job, JobEvent, init_db, session_scope
from store.leases import Heartbeat, acquire, renew
from tests.db_urls import fresh_database
from workers.pipelines import LeaseLost, ProgressRecorder


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    with fresh_database(request.param, tmp_path) as url:
        init_db(url)
        yield url


def _job(url: str) -> str:
    with session_scope(url) as session:
        job = Job(algorithm="maml", dataset="sinusoid", config={}, total_steps=10, metrics={})
        session.add(job)
        session.flush()
        return job.id


def _row(url: str, job_id: str) -> Job:
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_one_holder_at_a_time_and_takeover_after_expiry(db_url):
    job_id = _job(db_url)
    first = acquire(db_url, job_id, seconds=0.5, max_attempts=3)
    assert first is not None and first.attempt == 1
    assert acquire(db_url, job_id, seconds=0.5, max_attempts=3) is None  # held: a second delivery leaves
    assert renew(db_url, first)
    time.sleep(0.7)  # the first worker stopped renewing: lost
    second = acquire(db_url, job_id, seconds=30, max_attempts=3)
    assert second is not None and second.attempt == 2 and second.token != first.token
    assert not renew(db_url, first)  # the lost worker can no longer extend or write
    row = _row(db_url, job_id)
    assert row.status == "running" and row.lease_token == second.token and row.attempts == 2


def test_attempt_cap_fails_the_job_with_the_reason(db_url):
    job_id = _job(db_url)
    for attempt in (1, 2):
        lease = acquire(db_url, job_id, seconds=0.2, max_attempts=2)
        assert lease is not None and lease.attempt == attempt
        time.sleep(0.3)
    assert acquire(db_url, job_id, seconds=0.2, max_attempts=2) is None
    row = _row(db_url, job_id)
    assert row.status == "failed" and "gave up after 2 attempts" in (row.error or "")
    with session_scope(db_url) as session:
        statuses = [e.data["status"] for e in session.query(JobEvent).filter_by(job_id=job_id, type="status")]
    assert statuses == ["running", "running", "failed"]


def test_finished_and_cancelled_jobs_are_never_taken(db_url):
    job_id = _job(db_url)
    with session_scope(db_url) as session:
        session.get(Job, job_id).status = "cancelled"  # type: ignore[union-attr]
    assert acquire(db_url, job_id, seconds=1, max_attempts=3) is None
    assert _row(db_url, job_id).attempts == 0


def test_heartbeat_keeps_the_lease_and_a_lost_lease_stops_the_run(db_url):
    job_id = _job(db_url)
    lease = acquire(db_url, job_id, seconds=0.6, max_attempts=3)
    assert lease is not None
    recorder = ProgressRecorder(lease, db_url)
    with Heartbeat(db_url, lease):
        time.sleep(1.5)  # well past the lease length: renewed meanwhile
        assert acquire(db_url, job_id, seconds=0.6, max_attempts=3) is None
        recorder(1, 10, {"loss": 1.0})
        assert _row(db_url, job_id).step == 1
    time.sleep(0.8)
    thief = acquire(db_url, job_id, seconds=30, max_attempts=3)
    assert thief is not None
    with pytest.raises(LeaseLost):
        recorder(2, 10, {"loss": 0.5})
    assert _row(db_url, job_id).step == 1  # the old holder wrote nothing
