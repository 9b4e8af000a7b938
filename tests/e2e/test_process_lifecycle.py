"""The processes of `fewshot serve` die with it, a worker stops within its grace without Redis, and the
embedded Redis needs the password in the data directory. Real processes, read through /proc.
"""

from __future__ import annotations

import http.client
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


def _tcp_sockets(port: int) -> dict[int, str]:
    """Socket inode -> TCP state (hex, as /proc/net/tcp writes it) of every IPv4 socket whose local port is `port`."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            found[int(fields[9])] = fields[3]
    return found


def _sockets_by_process(pids: list[int], port: int, state: str) -> dict[int, set[int]]:
    """pid -> the inodes of its sockets on local `port` in `state` ("0A" listening, "01" established)."""
    wanted = {inode for inode, st in _tcp_sockets(port).items() if st == state}
    found = {}
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        found[pid] = {int(link[8:-1]) for link in links if link.startswith("socket:[") and int(link[8:-1]) in wanted}
    return {pid: inodes for pid, inodes in found.items() if inodes}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one API process on one core: nothing to spread")
def test_connections_spread_over_the_api_processes(serve: ServeProcess) -> None:
    """Each API process listens on a socket of its own: with one socket shared, whichever process
    woke first accepted every waiting connection (16 keep-alive clients all went to one process in
    one 10 s run of four under load). Counted from /proc: the listening
    sockets, and which process holds each of 16 established connections."""
    assert serve.process is not None
    deadline = time.monotonic() + 60
    while len(listening := _sockets_by_process(descendants(serve.process.pid), serve.port, "0A")) < 2:
        assert time.monotonic() < deadline, f"API processes listening on {serve.port}: {listening}"
        time.sleep(0.2)
    inodes = [inode for held in listening.values() for inode in held]
    assert len(inodes) == len(set(inodes)), f"API processes share a listening socket: {listening}"
    connections = [http.client.HTTPConnection("127.0.0.1", serve.port, timeout=30) for _ in range(16)]
    try:
        for conn in connections:
            conn.connect()
        for conn in connections:
            conn.request("GET", "/healthz")
        for conn in connections:
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        held = {pid: len(inodes) for pid, inodes in _sockets_by_process(list(listening), serve.port, "01").items()}
        # Spread by a hash: each of two processes holds at least 2 of 16 but for 1 run in 2,000 (17 in
        # all with the fixture's own keep-alive client).
        assert len(held) >= 2 and min(held.values()) >= 2 and sum(held.values()) >= 16, held
    finally:
        for conn in connections:
            conn.close()


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
