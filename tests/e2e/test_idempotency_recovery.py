"""An API killed while it holds an `Idempotency-Key` does not leave the key in progress forever:
after the lease (FEWSHOT_IDEMPOTENCY_LEASE_SECONDS), a retry with the same key takes the key
over and makes the one object.

The window: a dataset upload claims its key, then parses the zip (tens of thousands of tiny
images take seconds), then stores the dataset and its key together. The test watches the
database for the claim and SIGKILLs the API process inside that window.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import redis
from PIL import Image
from sqlalchemy import create_engine, select

from store.db import Dataset, IdempotencyKey
from store.settings import Settings
from tests.e2e.server import free_port

BIN = Path(sys.executable).parent
LEASE_SECONDS = 3.0
REDIS_URL = "redis://127.0.0.1:6379/4"
KEY = "upload-2026-12-02"


class ApiProcess:
    """`fewshot api` alone (no workers) on a port of its own; SIGKILLed or stopped, and started again."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ, "FEWSHOT_DATA_DIR": str(data_dir), "REDIS_URL": REDIS_URL,
            "FEWSHOT_IDEMPOTENCY_LEASE_SECONDS": str(LEASE_SECONDS),
        }
        self.log = data_dir / "api.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(BIN / "fewshot"), "api", "--port", str(self.port), "--no-access-log"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, f"fewshot api exited:\n{self.logs()}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"fewshot api not up after 60 s:\n{self.logs()}"
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def api(data_dir: Path) -> Iterator[ApiProcess]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    data_dir.mkdir(parents=True, exist_ok=True)
    process = ApiProcess(data_dir)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def slow_zip(n_classes: int = 8, per_class: int = 5000) -> bytes:
    """40,000 tiny PNGs: a few MB that take the API seconds to decode, one image at a time."""
    images = []
    for cls in range(n_classes):
        pixels = np.zeros((16, 16), dtype=np.uint8)
        pixels[2 * cls : 2 * cls + 3, 2:14] = 255
        buf = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buf, format="PNG")
        images.append(buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for cls in range(n_classes):
            for v in range(per_class):
                z.writestr(f"glyphs/class_{cls}/{v}.png", images[cls])
    return buf.getvalue()


def upload(url: str, content: bytes, timeout: float = 120) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/datasets", files={"file": ("glyphs.zip", content, "application/zip")}, data={"image_size": "8"},
        headers={"Idempotency-Key": KEY}, timeout=timeout,
    )


def key_rows(engine) -> list[IdempotencyKey]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return list(conn.execute(select(IdempotencyKey).where(IdempotencyKey.key == KEY)))


def test_a_retry_takes_over_the_key_of_a_killed_request_and_makes_one_object(tmp_path):
    data_dir = tmp_path / "data"
    content = slow_zip()
    with api(data_dir) as server:
        engine = create_engine(Settings(data_dir=data_dir).sqlalchemy_url)
        first = threading.Thread(target=lambda: _ignore_errors(lambda: upload(server.url, content)), daemon=True)
        first.start()
        deadline = time.monotonic() + 60
        while not key_rows(engine):  # the key is claimed: the request is parsing its upload
            assert time.monotonic() < deadline, f"the upload never claimed its key:\n{server.logs()}"
            time.sleep(0.005)
        server.kill()
        killed_at = time.time()
        first.join(30)
        rows = key_rows(engine)
        with engine.connect() as conn:
            assert rows[0].object_id is None and not list(conn.execute(select(Dataset.id))), (
                "the API finished the upload before it was killed: make slow_zip slower"
            )

        server.start()  # the same database; the dead request's claim is still there
        time.sleep(max(0.0, killed_at + LEASE_SECONDS - time.time()))  # the claim, older still, is past its lease
        retry = upload(server.url, content)
        assert retry.status_code == 201, (retry.status_code, retry.text, server.logs())
        dataset = retry.json()

        again = upload(server.url, content)
        assert again.status_code == 201 and again.json()["id"] == dataset["id"], again.text
        uploaded = [d for d in httpx.get(f"{server.url}/v1/datasets", params={"limit": 100}).json()["data"] if not d["builtin"]]
        assert [d["id"] for d in uploaded] == [dataset["id"]]
        assert key_rows(engine)[0].object_id == dataset["id"]
        engine.dispose()
    assert "Traceback" not in server.log.read_text(), server.logs()


def _ignore_errors(call) -> None:  # type: ignore[no-untyped-def]
    try:
        call()
    except httpx.HTTPError:
        pass  # the API was killed under it
