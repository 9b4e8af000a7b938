"""`fewshot serve` as a real child process: API, celery workers, and Redis (system or embedded)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    def __init__(self, data_dir: Path, env: dict[str, str], port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        # DATABASE_URL comes from os.environ unless given: tests/conftest.py owns it (unset on SQLite).
        self.env = {**os.environ, **env, "FEWSHOT_DATA_DIR": str(data_dir)}
        if "REDIS_URL" not in env:
            self.env.pop("REDIS_URL", None)
        self.log = data_dir / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)

    def __enter__(self) -> ServeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fewshot = Path(sys.executable).parent / "fewshot"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(fewshot), "serve", "--port", str(self.port)], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"fewshot serve exited with {self.process.returncode}:\n{self.logs()}")
            try:
                r = self.client.get("/readyz")
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.3)
        raise RuntimeError(f"fewshot serve not ready after {timeout} s ({last}):\n{self.logs()}")

    def logs(self) -> str:
        parts = [self.log.read_text(errors="replace")[-4000:]]
        for worker_log in sorted((self.data_dir / "logs").glob("*.log")):
            parts.append(f"--- {worker_log.name}\n" + worker_log.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def stop(self) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
        self.client.close()

    def wait_job(self, job_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        seen_running = False
        while time.monotonic() < deadline:
            job = self.client.get(f"/v1/jobs/{job_id}").json()
            seen_running |= job["status"] == "running" and job["progress"]["step"] > 0
            if job["status"] in ("succeeded", "failed", "cancelled"):
                job["seen_running"] = seen_running
                return job
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} did not finish in {timeout} s:\n{self.logs()}")
