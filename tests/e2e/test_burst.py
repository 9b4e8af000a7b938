"""200 adaptations at once against a real `fewshot serve`, on SQLite and on PostgreSQL.

Every request is answered within its deadline: 201/202, or 429/503 in the JSON error shape with
Retry-After (admission control); none hangs, none is a plain-text 500. Afterwards every task the
model lists is one whose id some client was given: nothing stored behind a client's back.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import redis

from store.settings import Settings
from tests.db_urls import fresh_database
from tests.e2e.api_support import QUICK_SINE, wait_job
from tests.e2e.server import ServeProcess

pytestmark = pytest.mark.e2e

BURST = 200
DEADLINE_S = 60.0
REDIS_URL = "redis://127.0.0.1:6379/11"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served_model(request, tmp_path_factory) -> Iterator[tuple[ServeProcess, str]]:
    """`fewshot serve` on the database, with a tiny sinusoid model trained on it."""
    tmp = tmp_path_factory.mktemp(f"burst-{request.param}")
    redis.Redis.from_url(REDIS_URL).flushdb()
    with fresh_database(request.param, tmp) as url:
        env = {"REDIS_URL": REDIS_URL, **({"DATABASE_URL": url} if request.param == "postgres" else {})}
        with ServeProcess(tmp / "data", env) as serve:
            job = serve.client.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE})
            done = wait_job(serve.client, job.json()["id"])
            assert done["status"] == "succeeded", done
            yield serve, done["model_id"]


def _support(i: int) -> dict:
    xs = [-4.0 + 8.0 * k / 9 for k in range(10)]
    return {"inputs": [[x] for x in xs], "labels": [math.sin(x + i / 10) for x in xs]}


async def _burst(port: int, model_id: str) -> list[httpx.Response | BaseException]:
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE_S, limits=limits) as client:

        async def one(i: int) -> httpx.Response:
            body = {"support": _support(i), "wait": i % 2 == 0}  # half wait for the adaptation, half not
            return await asyncio.wait_for(client.post(f"/v1/models/{model_id}/tasks", json=body), DEADLINE_S)

        return await asyncio.gather(*(one(i) for i in range(BURST)), return_exceptions=True)


def _listed(client: httpx.Client, model_id: str) -> list[str]:
    ids, after = [], None
    while True:
        page = client.get(f"/v1/models/{model_id}/tasks", params={"limit": 100, **({"after": after} if after else {})})
        assert page.status_code == 200, page.text
        ids += [t["id"] for t in page.json()["data"]]
        if not page.json()["has_more"]:
            return ids
        after = ids[-1]


def test_a_burst_of_adaptations_is_answered_and_leaves_only_tasks_clients_know(served_model, request):
    serve, model_id = served_model
    start = time.monotonic()
    answers = asyncio.run(_burst(serve.port, model_id))
    wall = time.monotonic() - start
    failures = [a for a in answers if isinstance(a, BaseException)]
    assert not failures, f"{len(failures)} requests got no answer: {failures[:3]!r}\n{serve.logs()}"
    responses = [a for a in answers if isinstance(a, httpx.Response)]
    counts = Counter(r.status_code for r in responses)
    print(f"\n{request.node.callspec.id}: {BURST} at once -> {dict(sorted(counts.items()))} in {wall:.1f} s")
    assert set(counts) <= {201, 202, 429, 503}, (counts, [r.text for r in responses if r.status_code >= 500][:3])
    received = set()
    for r in responses:
        body = r.json()  # JSON always, never a plain-text 500
        if r.status_code in (201, 202):
            assert body["object"] == "task" and body["status"] == ("ready" if r.status_code == 201 else "adapting")
            received.add(body["id"])
        else:
            assert set(body) == {"error"} and set(body["error"]) == {"type", "code", "message", "param"}, body
            assert body["error"]["code"] in ("too_many_adaptations", "overloaded"), body
            assert int(r.headers["retry-after"]) >= 1
    assert counts[201] + counts[202] >= 16, counts  # at least the tenant's bound got in
    assert wall < DEADLINE_S
    assert set(_listed(serve.client, model_id)) == received  # every stored task was answered with its id
    # The service is still itself: a retry after the burst gets its ready task.
    retry = serve.client.post(f"/v1/models/{model_id}/tasks", json={"support": _support(0)})
    assert retry.status_code == 201, retry.text
    assert "wait;dur=" in retry.headers["server-timing"] and "total;dur=" in retry.headers["server-timing"]
    # `fewshot serve` sized the adapt worker's pool by FEWSHOT_ADAPT_PROCESSES' default.
    banner = (serve.data_dir / "logs" / "worker-adapt.log").read_text(errors="replace")
    assert f"concurrency: {Settings().adapt_processes} (prefork)" in banner, banner[-2000:]
