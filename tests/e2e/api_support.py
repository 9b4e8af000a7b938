"""Shared by the tests/e2e/test_api_* modules: one served instance per module, test data, checks."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import redis
from PIL import Image

from tests.e2e.server import ServeProcess

QUICK_SINE = {"steps": 20, "meta_batch_size": 2, "eval_episodes": 5, "checkpoint_every": 0}
FINISHED = ("succeeded", "failed", "cancelled")


@contextmanager
def served(data_dir: Path, redis_db: int, **env: str) -> Iterator[ServeProcess]:
    """`fewshot serve` on SQLite and a database of the real Redis, emptied first."""
    url = f"redis://127.0.0.1:6379/{redis_db}"
    redis.Redis.from_url(url).flushdb()
    with ServeProcess(data_dir, {"REDIS_URL": url, **env}) as serve:
        yield serve


def client(serve: ServeProcess, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=f"http://127.0.0.1:{serve.port}", headers=headers, timeout=120)


def wait_job(c: httpx.Client, job_id: str, timeout: float = 120, until: tuple[str, ...] = FINISHED) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} not in {until} after {timeout} s: {job}")


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """The DESIGN.md error shape with the given status (and code)."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "code", "message", "param"}, body
    assert body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def blobs_npz(n_classes: int = 12, per_class: int = 20, dim: int = 8, seed: int = 0) -> bytes:
    """Classification arrays: each class a Gaussian blob around its own centre, string-free int labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (n_classes, dim))
    x = np.concatenate([c + rng.normal(0, 0.5, (per_class, dim)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(n_classes) * 10, per_class)  # labels need not be 0..n-1
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return buf.getvalue()


def pattern_png(cls: int, variant: int, size: int = 28) -> bytes:
    """Class `cls`: a white bar at a class-specific place on black, slightly shifted per variant."""
    pixels = np.zeros((size, size), dtype=np.uint8)
    row, col = 3 + 3 * (cls % 7), 3 + 5 * (cls // 7) + variant % 3
    pixels[row : row + 3, col : col + 12] = 255
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def pattern_zip(n_classes: int = 8, per_class: int = 6, top: str = "shapes") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for cls in range(n_classes):
            for v in range(per_class):
                z.writestr(f"{top}/class_{cls}/{v}.png", pattern_png(cls, v))
    return buf.getvalue()
