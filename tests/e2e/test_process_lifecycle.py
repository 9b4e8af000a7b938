"""The processes of `fewshot serve` die with it, a worker stops within its grace without Redis, and the
embedded Redis needs the password in the data directory. Real processes, read through /proc.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.launcher import redis_password
from tests.e2e.redis_server import RedisServer
from tests.e2e.server import ServeProcess

pytestmark = pytest.mark.e2e

GRACE_S = 3.0


def _processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, state letter)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_line = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat_line.rsplit(")", 1)[1].split()
            table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def descendants(pid: int) -> list[int]:
    table, found, frontier = _processes(), [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (ppid, _) in table.items() if ppid == parent]
        found += children
        frontier += children
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its (new) parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")


def wait_all_gone(pids: list[int], within: float) -> float:
    start = time.monotonic()
    while any(alive(p) for p in pids) and time.monotonic() - start < within:
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("lifecycle") / "data", {}) as process:  # no REDIS_URL: embedded Redis
        yield process


def test_the_embedded_redis_needs_the_password_from_the_data_directory(serve: ServeProcess) -> None:
    folder = serve.data_dir / "redis"
    for secret in (folder / "password", folder / "redis.conf"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    password = (folder / "password").read_text().strip()
    assert len(password) >= 32
    redis_pid = int((serve.data_dir / "run" / "redis.pid").read_text())
    title = " ".join(cmdline(redis_pid))  # the server rewrites it to "<binary> 127.0.0.1:<port>"
    assert password not in title  # not on a command line every local user can read
    assert password not in serve.log.read_text(), "fewshot serve printed the Redis password"
    port = int(re.search(r"127\.0\.0\.1:(\d+)", title).group(1))  # type: ignore[union-attr]

    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, socket_timeout=2).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password="not-the-password", socket_timeout=2).ping()
    client = redis.Redis(port=port, password=password, socket_timeout=2)
    assert client.ping()
    client.close()
    assert serve.client.get("/readyz").status_code == 200  # the API and workers have the password


def test_the_redis_password_is_made_once_and_kept(tmp_path: Path) -> None:
    first = redis_password(tmp_path)
    assert redis_password(tmp_path) == first
    assert stat.S_IMODE((tmp_path / "password").stat().st_mode) == 0o600


def test_no_process_of_serve_survives_its_sigkill(serve: ServeProcess) -> None:
    assert serve.process is not None
    tree = descendants(serve.process.pid)
    # Redis, two worker main processes and their pool processes (one each).
    assert len(tree) >= 5, [cmdline(p) for p in tree]
    try:
        serve.process.send_signal(signal.SIGKILL)
        serve.process.wait()
        took = wait_all_gone(tree, within=15)
        print(f"seconds until the last of {len(tree)} processes was gone: {took:.2f}")  # noqa: T201
        survivors = [cmdline(p) for p in tree if alive(p)]
        assert not survivors and took < 6, (took, survivors)
    finally:
        for pid in tree:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_worker_without_redis_stops_within_its_grace(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as redis_server:
        env = {**os.environ, "REDIS_URL": redis_server.url, "FEWSHOT_DATA_DIR": str(tmp_path / "data"),
               "FEWSHOT_WORKER_GRACE_SECONDS": str(GRACE_S)}
        log = tmp_path / "worker.log"
        argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "adapt", "-c", "1", "--pool",
                "prefork", "--loglevel", "INFO", "--without-gossip", "--without-mingle", "-n", "grace@%h"]
        with log.open("ab") as out:
            worker = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while "ready." not in log.read_text(errors="replace"):
                assert worker.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.2)
            pool = descendants(worker.pid)
            assert pool, "no pool process"
            redis_server.kill()
            time.sleep(2)  # the worker has lost its broker and is reconnecting
            worker.send_signal(signal.SIGTERM)
            start = time.monotonic()
            try:
                code = worker.wait(GRACE_S + 10)
            except subprocess.TimeoutExpired:
                code = None
            took = time.monotonic() - start
            print(f"worker exited {code} {took:.2f} s after SIGTERM (grace {GRACE_S} s)")  # noqa: T201
            assert code is not None and took < GRACE_S + 1.5, (took, log.read_text(errors="replace")[-3000:])
            assert wait_all_gone(pool, within=2) < 2, "a pool process outlived its worker"
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
