"""The schema tells the truth: schemathesis against a served `fewshot api`, every check and every
phase (examples, coverage, fuzzing, stateful), 50 examples per operation, 0 failures; once open
(no API key exists) and once with FEWSHOT_REQUIRE_AUTH and a key.

The API runs without workers: the jobs schemathesis creates stay queued and nothing trains. Each
test starts its own API on its own database (tests/conftest.py gives each test a fresh one on
PostgreSQL), so the open run never sees the other run's key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from models.learners.registry import LEARNERS
from tests.e2e.server import free_port

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
EXAMPLES = 50
SEED = 20261202

# Per-operation settings, each with its reason:
# - /readyz answers 503 without workers (here, none run): declared, and the truth.
# - A job's config and an upload's file are checked beyond what JSON Schema says (a learner's
#   ranges against the dataset; the archive's arrays), so a schema-valid body may get 422.
# - An event stream of a queued job stays open: read 3 events or for 1.5 s.
CONFIG = """
[[operations]]
include-path = "/readyz"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]

[[operations]]
include-operation-id = ["create_job", "create_dataset"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]

[[operations]]
include-operation-id = "list_job_events"
max-stream-events = 3
request-timeout = 1.5
"""


@contextmanager
def api_process(data_dir: Path, redis_db: int, **env: str) -> Iterator[str]:
    """`fewshot api` alone (no workers, no embedded Redis) on a free port; yields its base URL."""
    redis_url = f"redis://127.0.0.1:6379/{redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {**os.environ, **env, "FEWSHOT_DATA_DIR": str(data_dir), "REDIS_URL": redis_url}
    log = data_dir / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "fewshot"), "api", "--port", str(port), "--no-access-log"],
            env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"fewshot api exited:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"fewshot api not up after 60 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert "Traceback" not in log.read_text(), log.read_text()[-5000:]


def run_schemathesis(url: str, workdir: Path, *headers: str) -> str:
    """schemathesis with every check and phase; fails the test with its report unless 0 failures."""
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(BIN / "schemathesis"), "--config-file", str(config), "--no-color", "run", f"{url}/openapi.json",
        "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(EXAMPLES),
        "--seed", str(SEED), "--generation-database", "none",
        "--suppress-health-check", "too_slow", "--workers", "1", "--request-timeout", "20",
    ]
    for header in headers:
        command += ["--header", header]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=400)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-15000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in report, f"phase {phase} did not pass:\n{report[-6000:]}"
    print(report[report.find("SUMMARY"):])  # shown with -rP: operations, phases, cases generated
    return report


@pytest.fixture(scope="module")
def open_api(tmp_path_factory) -> Iterator[str]:
    """One API without keys (the local single-user mode) for the tests of this module that need no key."""
    with api_process(tmp_path_factory.mktemp("open"), redis_db=6) as url:
        yield url


def _error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert set(error) == {"type", "code", "message", "param"} and error["message"], error
    if param is not None:
        assert error["param"] == param, error
    return error


def _sse_events(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if fields:
            events.append(fields)
    return events


def test_what_schemathesis_found_is_fixed(open_api):
    """Regressions: each was a 500, a broken stream or an answer the schema did not declare."""
    with httpx.Client(base_url=open_api, timeout=30) as api:
        _check_regressions(api)


def _check_regressions(api: httpx.Client) -> None:
    job = api.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": {"steps": 5}}).json()
    events = f"/v1/jobs/{job['id']}/events"
    # Event cursors past int64 were a 500 (SQLite cannot bind them) and a stream cut mid-chunk.
    _error(api.get(events, params={"after": 2**63}), 422, "query.after")
    _error(api.get(events, params={"after": 2**63, "stream": "true"}), 422, "query.after")
    _error(api.get(events, headers={"Last-Event-ID": str(2**64), "Accept": "text/event-stream"}), 422, "header.Last-Event-ID")
    assert api.get(events, params={"after": 2**63 - 1}).json()["data"] == []
    # A NUL byte in an id or a cursor was a 500 on PostgreSQL (it refuses NUL in text).
    _error(api.get("/v1/jobs/job_%00"), 422, "path.job_id")
    _error(api.get("/v1/jobs", params={"after": "job_\x00"}), 422, "query.after")
    _error(api.get("/v1/datasets", params={"after": "x" * 65}), 422, "query.after")
    _error(api.post("/v1/jobs", json={"algorithm": "maml", "dataset": "ds_\x00"}), 404, "dataset")
    _error(api.post("/v1/datasets", files={"file": ("a.npz", b"PK")}, data={"name": "a\x00b"}), 422, "name")
    # A body that is not UTF-8 JSON: a declared 400.
    assert _error(api.post("/v1/jobs", content=b"\xff", headers={"Content-Type": "application/json"}), 400)["code"] == "malformed_body"
    # 405 names every method of the path (one route per method), not only the first route's.
    assert api.request("TRACE", "/v1/datasets").headers["Allow"] == "GET, POST"
    assert api.request("PUT", f"/v1/jobs/{job['id']}").headers["Allow"] == "GET"
    # The event stream as the schema describes it: JSON job events, then `end`.
    assert api.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    stream = _sse_events(api.get(events, params={"stream": "true"}).text)
    assert [e["event"] for e in stream] == ["status", "status", "end"], stream
    for event in stream[:-1]:
        body = json.loads(event["data"])
        assert body["object"] == "job.event" and str(body["id"]) == event["id"] and body["job_id"] == job["id"], event
    assert json.loads(stream[-1]["data"]) == {}
    schema = api.get("/openapi.json").json()
    assert schema["components"]["schemas"]["JobCreate"]["properties"]["algorithm"]["enum"] == sorted(LEARNERS)
    assert schema["components"]["schemas"]["SupportSet"]["properties"]["inputs"]["minItems"] == 1


def test_schema_holds_without_an_api_key(open_api, tmp_path):
    run_schemathesis(open_api, tmp_path)


def test_schema_holds_with_an_api_key(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    env = {**os.environ, "FEWSHOT_DATA_DIR": str(data)}  # and tests/conftest.py's DATABASE_URL, if any
    out = subprocess.run([str(BIN / "fewshot"), "keys", "create", "--name", "schemathesis"], env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    key = out.stdout.strip().splitlines()[-1]
    with api_process(data, redis_db=7, FEWSHOT_REQUIRE_AUTH="1") as url:
        assert httpx.get(f"{url}/v1/jobs").status_code == 401  # the key is needed, and sent below
        run_schemathesis(url, tmp_path, f"Authorization: Bearer {key}")
