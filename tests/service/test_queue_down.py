"""With the broker down, POST /v1/jobs answers 503 at once and leaves nothing behind: no job, no
event, and its Idempotency-Key free for the retry."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from service.main import create_app
from store.settings import Settings
from tests.e2e.api_support import assert_error
from tests.e2e.server import free_port


def test_job_submission_with_the_broker_down(tmp_path):
    settings = Settings(data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with TestClient(create_app(settings)) as c:
        body = {"algorithm": "maml", "dataset": "sinusoid"}
        for _ in range(2):  # the key is released after each failure, so the retry is not a 409
            start = time.monotonic()
            assert_error(c.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k"}), 503, "unavailable")
            assert time.monotonic() - start < 10
        assert c.get("/v1/jobs").json()["data"] == []
