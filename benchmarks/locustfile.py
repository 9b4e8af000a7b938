"""locust load for benchmarks/http_predictions.py: every user predicts one image for one task, again and again.

FEWSHOT_BENCH_TASK names the task, FEWSHOT_BENCH_BODY a file holding the JSON request body.

    locust -f benchmarks/locustfile.py --headless -u 16 -r 16 -t 15s --host http://127.0.0.1:8000
"""

from __future__ import annotations

import os
from pathlib import Path

from locust import FastHttpUser, task


class Predictor(FastHttpUser):
    """No wait between requests: each user sends its next request when the answer arrives."""

    body = Path(os.environ["FEWSHOT_BENCH_BODY"]).read_bytes() if "FEWSHOT_BENCH_BODY" in os.environ else b""
    path = f"/v1/tasks/{os.environ.get('FEWSHOT_BENCH_TASK', '')}/predictions"

    @task
    def predict(self) -> None:
        self.client.post(self.path, data=self.body, headers={"Content-Type": "application/json"})
