"""Workers that never lose a job: real processes, real Redis, real SQLite and PostgreSQL.

Leases are 2 s and the reconciler runs every second, so recovery takes seconds here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.e2e.server import ServeProcess, free_port

pytestmark = pytest.mark.e2e

FAST_RECOVERY = {"FEWSHOT_LEASE_SECONDS": "2", "FEWSHOT_RECONCILE_SECONDS": "1"}
LONG_SINE = {"steps": 1200, "meta_batch_size": 8, "eval_episodes": 20, "checkpoint_every": 200}
SHORT_SINE = {"steps": 60, "meta_batch_size": 4, "eval_episodes": 5, "checkpoint_every": 0}


def _worker_pid(serve: ServeProcess, queue: str = "train") -> int:
    return int((serve.data_dir / "run" / f"{queue}-worker.pid").read_text())


def _kill_worker(serve: ServeProcess, queue: str = "train") -> int:
    """SIGKILL a worker and its pool processes, as the kernel's OOM killer or a lost machine would."""
    pid = _worker_pid(serve, queue)
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _worker_pid(serve, queue) == pid:
        time.sleep(0.1)  # `fewshot serve` restarts its worker
    assert _worker_pid(serve, queue) != pid, "serve did not restart its worker"
    return pid


def _wait(c, job_id: str, predicate, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if predicate(job):
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id}: {job}")


def _events(c, job_id: str) -> list[dict]:
    events, after = [], 0
    while True:
        page = c.get(f"/v1/jobs/{job_id}/events", params={"after": after, "limit": 1000}).json()
        events += page["data"]
        if not page["has_more"]:
            return events
        after = events[-1]["id"]


def _models_of(c, job_id: str) -> list[dict]:
    return [m for m in c.get("/v1/models", params={"limit": 100}).json()["data"] if m["job_id"] == job_id]


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_sigkilled_worker_job_resumes_from_its_checkpoint_and_succeeds_once(tmp_path, redis_url, request, database):
    env = {"REDIS_URL": redis_url, **FAST_RECOVERY}
    if database == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("postgres_url")
    with ServeProcess(tmp_path / "data", env) as serve:
        c = serve.client
        job = c.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": LONG_SINE}).json()
        _wait(c, job["id"], lambda j: j["progress"]["step"] >= 450)
        checkpoints = c.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"]
        last_checkpoint = max(ck["step"] for ck in checkpoints)
        assert last_checkpoint >= 400
        _kill_worker(serve)

        job = _wait(c, job["id"], lambda j: j["status"] in ("succeeded", "failed"), timeout=240)
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 2
        assert len(_models_of(c, job["id"])) == 1  # exactly one model
        events = _events(c, job["id"])
        starts = [i for i, e in enumerate(events) if e["type"] == "status" and e["data"]["status"] == "running"]
        assert len(starts) == 2
        resumed_steps = [e["data"]["step"] for e in events[starts[1]:] if e["type"] == "progress"]
        assert resumed_steps and min(resumed_steps) > last_checkpoint  # resumed, not restarted
        assert resumed_steps == sorted(resumed_steps) and resumed_steps[-1] == LONG_SINE["steps"]
        # Once resumed, the job's step never went back past the checkpoint it resumed from.
        steps_after_kill = [e["data"]["step"] for e in events[starts[1]:] if e["type"] == "progress"]
        assert all(s >= last_checkpoint for s in steps_after_kill)


def test_a_job_that_kills_its_worker_every_time_fails_at_the_cap_and_the_queue_flows(tmp_path, redis_url):
    env = {"REDIS_URL": redis_url, **FAST_RECOVERY, "FEWSHOT_MAX_ATTEMPTS": "2"}
    with ServeProcess(tmp_path / "data", env) as serve:
        c = serve.client
        doomed = c.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": LONG_SINE}).json()
        for attempt in (1, 2):
            _wait(c, doomed["id"], lambda j, a=attempt: j["attempts"] == a and j["progress"]["step"] > 0)
            _kill_worker(serve)
        doomed = _wait(c, doomed["id"], lambda j: j["status"] == "failed", timeout=60)
        assert "gave up after 2 attempts" in doomed["error"]
        assert _models_of(c, doomed["id"]) == []
        after = c.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": SHORT_SINE}).json()
        assert _wait(c, after["id"], lambda j: j["status"] in ("succeeded", "failed"))["status"] == "succeeded"


def _extra_worker(serve: ServeProcess, log: Path) -> subprocess.Popen[bytes]:
    fewshot = Path(sys.executable).parent / "fewshot"
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(fewshot), "worker", "--queues", "train"], env=serve.env, stdout=out, stderr=subprocess.STDOUT
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_two_workers_drain_a_queue_and_no_job_runs_twice(tmp_path, redis_url):
    # A visibility timeout shorter than the jobs: Redis hands each running job's message out
    # again while it runs; the lease makes the second delivery leave.
    env = {"REDIS_URL": redis_url, **FAST_RECOVERY, "FEWSHOT_VISIBILITY_TIMEOUT": "3"}
    with ServeProcess(tmp_path / "data", env) as serve:
        second = _extra_worker(serve, tmp_path / "second-worker.log")
        try:
            c = serve.client
            config = {**SHORT_SINE, "steps": 500}  # several seconds each, longer than the visibility timeout
            ids = [c.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": {**config, "seed": s}}).json()["id"]
                   for s in range(4)]
            jobs = [_wait(c, i, lambda j: j["status"] in ("succeeded", "failed"), timeout=240) for i in ids]
        finally:
            _stop(second)
        assert [j["status"] for j in jobs] == ["succeeded"] * 4
        for job in jobs:
            assert job["attempts"] == 1
            starts = [e for e in _events(c, job["id"]) if e["type"] == "status" and e["data"]["status"] == "running"]
            assert len(starts) == 1
            assert len(_models_of(c, job["id"])) == 1
        workers = {e["data"]["worker"] for job in jobs for e in _events(c, job["id"]) if e["data"].get("worker")}
        assert len(workers) == 2, workers  # both workers took jobs


class RedisServer:
    """A redis-server of the test's own on a free port, to stop and start again."""

    def __init__(self, folder: Path, persistent: bool) -> None:
        self.port = free_port()
        self.folder = folder
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
                "--save", "", "--appendonly", "yes" if self.persistent else "no"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                if redis.Redis.from_url(self.url).ping():
                    return
            except (OSError, redis.RedisError):
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)  # appendonly: fsynced on shutdown
        self.process.wait(10)


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "volatile"])
def test_every_accepted_job_finishes_across_a_redis_restart(tmp_path, persistent):
    server = RedisServer(tmp_path / "redis", persistent)
    server.start()
    try:
        with ServeProcess(tmp_path / "data", {"REDIS_URL": server.url, **FAST_RECOVERY}) as serve:
            c = serve.client
            config = {**SHORT_SINE, "steps": 400}
            ids = [c.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": {**config, "seed": s}}).json()["id"]
                   for s in range(3)]
            _wait(c, ids[0], lambda j: j["status"] == "running")  # one running, two queued
            server.stop()
            time.sleep(2)
            server.start()
            jobs = [_wait(c, i, lambda j: j["status"] in ("succeeded", "failed"), timeout=240) for i in ids]
            assert [j["status"] for j in jobs] == ["succeeded"] * 3, jobs
            for job in jobs:
                assert len(_models_of(c, job["id"])) == 1
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop()
