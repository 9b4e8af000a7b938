"""Every resource's lifecycle through one `fewshot serve` (real workers, real Redis): datasets,
jobs (pagination, idempotency, cancel, events as JSON and SSE, checkpoints), models, tasks,
metrics, and the 4xx paths of DESIGN.md with their error shape."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.e2e.api_support import QUICK_SINE, assert_error, blobs_npz, client, pattern_zip, served, wait_job

pytestmark = pytest.mark.e2e

SINE_SUPPORT = {"inputs": [[-2.0], [-1.0], [0.0], [1.0], [2.0]], "labels": [0.1, -0.8, -0.9, 0.0, 0.9]}


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    with served(tmp_path_factory.mktemp("resources"), redis_db=10) as serve:
        yield serve


@pytest.fixture(scope="module")
def api(serve):
    with client(serve) as c:
        yield c


def test_no_keys_on_localhost_serves_one_local_user_and_says_so(serve, api):
    assert "WITHOUT AUTHENTICATION" in serve.logs()
    assert api.get("/v1/jobs").status_code == 200


@pytest.fixture(scope="module")
def sine_model(api) -> dict:
    job = api.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE}).json()
    job = wait_job(api, job["id"])
    assert job["status"] == "succeeded", job
    return api.get(f"/v1/models/{job['model_id']}").json()


def test_datasets_upload_list_get_train_delete(api):
    builtins = {d["id"] for d in api.get("/v1/datasets", params={"limit": 100}).json()["data"] if d["builtin"]}
    assert builtins == {"sinusoid", "omniglot", "mnist", "mtl-synthetic"}
    r = api.post("/v1/datasets", files={"file": ("blobs.npz", blobs_npz())}, data={"name": "blobs"})
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["id"].startswith("ds_") and ds["format"] == "npz" and ds["output"] == "classification"
    assert ds["input_shape"] == [8] and ds["summary"]["classes"] == 12 and ds["summary"]["examples"] == 240
    assert api.get(f"/v1/datasets/{ds['id']}").json() == ds
    assert api.get("/v1/datasets").json()["data"][0]["id"] == ds["id"]  # newest upload first, then built-ins

    images = api.post("/v1/datasets", files={"file": ("shapes.zip", pattern_zip())}).json()
    assert images["format"] == "images" and images["input_shape"] == [1, 28, 28] and images["summary"]["classes"] == 8

    config = {"steps": 30, "n_way": 3, "k_shot": 2, "k_query": 4, "meta_batch_size": 4, "eval_episodes": 20,
              "hidden": [32], "inner_lr": 0.1}
    job = api.post("/v1/jobs", json={"algorithm": "maml", "dataset": ds["id"], "config": config}).json()
    assert_error(api.delete(f"/v1/datasets/{ds['id']}"), 409, "dataset_in_use")
    job = wait_job(api, job["id"])
    assert job["status"] == "succeeded", job
    model = api.get(f"/v1/models/{job['model_id']}").json()
    assert model["dataset"] == ds["id"] and model["ways"] == 3 and model["input_shape"] == [8]
    assert model["metrics"]["accuracy"] > 1 / 3 + 0.15, model["metrics"]  # well-separated blobs: far above chance

    too_wide = {**config, "n_way": 5}  # 12 classes cannot give 3 disjoint splits of 5
    assert "lower n_way" in assert_error(
        api.post("/v1/jobs", json={"algorithm": "maml", "dataset": ds["id"], "config": too_wide}), 422, "invalid_config"
    )["message"]
    assert api.delete(f"/v1/datasets/{ds['id']}").status_code == 204
    assert_error(api.get(f"/v1/datasets/{ds['id']}"), 404, "not_found")
    assert_error(api.delete(f"/v1/datasets/{ds['id']}"), 404, "not_found")
    assert_error(api.delete("/v1/datasets/omniglot"), 409, "builtin_dataset")
    assert_error(api.post("/v1/jobs", json={"algorithm": "maml", "dataset": ds["id"]}), 404, "not_found")


def test_jobs_paginate_filter_and_idempotency(api, sine_model):
    body = {"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE}
    first = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "abc-1"})
    again = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "abc-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert_error(api.post("/v1/jobs", json={**body, "config": {"steps": 3}}, headers={"Idempotency-Key": "abc-1"}),
                 409, "idempotency_key_reused")
    other = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "abc-2"}).json()
    assert other["id"] != first.json()["id"]
    wait_job(api, other["id"])
    wait_job(api, first.json()["id"])

    every = api.get("/v1/jobs", params={"limit": 100}).json()["data"]
    assert len({j["id"] for j in every}) == len(every) >= 3
    assert sum(j["id"] == first.json()["id"] for j in every) == 1  # the repeated POST made no second job
    seen, after = [], None
    while True:
        page = api.get("/v1/jobs", params={"limit": 2, **({"after": after} if after else {})}).json()
        assert page["object"] == "list" and len(page["data"]) <= 2
        seen += [j["id"] for j in page["data"]]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert seen == [j["id"] for j in every] == sorted(seen, reverse=True)
    succeeded = api.get("/v1/jobs", params={"status": "succeeded", "limit": 100}).json()["data"]
    assert succeeded and all(j["status"] == "succeeded" for j in succeeded)
    assert_error(api.get("/v1/jobs", params={"status": "paused"}), 422, "invalid_request")
    assert_error(api.get("/v1/jobs", params={"limit": 0}), 422, "invalid_request")


def test_concurrent_requests_with_one_idempotency_key_make_one_job(api):
    from concurrent.futures import ThreadPoolExecutor

    body = {"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE}
    before = len(api.get("/v1/jobs", params={"limit": 100}).json()["data"])
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "race"}), range(6)))
    ids = {r.json()["id"] for r in answers if r.status_code == 202}
    assert len(ids) == 1, [r.text for r in answers]
    for r in answers:
        if r.status_code != 202:
            assert_error(r, 409, "idempotency_key_in_progress")
    assert len(api.get("/v1/jobs", params={"limit": 100}).json()["data"]) == before + 1
    wait_job(api, ids.pop())


def _sse(api: httpx.Client, job_id: str, timeout: float = 60) -> list[tuple[str, dict]]:
    events, kind, data = [], "message", ""
    with api.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"}, timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif not line and data:
                events.append((kind, json.loads(data)))
                kind, data = "message", ""
    return events


def test_events_checkpoints_and_sse_of_a_finished_job(api):
    config = {**QUICK_SINE, "steps": 40, "checkpoint_every": 20}
    job = api.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": config}).json()
    streamed = _sse(api, job["id"])  # opened while queued; ends by itself when the job ends
    job = api.get(f"/v1/jobs/{job['id']}").json()
    assert job["status"] == "succeeded"
    statuses = [e["data"]["status"] for kind, e in streamed if kind == "status"]
    assert statuses == ["queued", "running", "succeeded"] and streamed[-1][0] == "end"
    steps = [e["data"]["step"] for kind, e in streamed if kind == "progress"]
    assert steps == sorted(steps) and steps[-1] == 40
    assert [e["data"]["step"] for kind, e in streamed if kind == "checkpoint"] == [20, 40]

    listed = api.get(f"/v1/jobs/{job['id']}/events", params={"limit": 1000}).json()
    assert [e["id"] for e in listed["data"]] == [e["id"] for kind, e in streamed if kind != "end"]
    page = api.get(f"/v1/jobs/{job['id']}/events", params={"limit": 2, "after": listed["data"][0]["id"]}).json()
    assert [e["id"] for e in page["data"]] == [e["id"] for e in listed["data"][1:3]] and page["has_more"]
    checkpoints = api.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"]
    assert [c["step"] for c in checkpoints] == [20, 40] and all("loss" in c["metrics"] for c in checkpoints)


def test_cancel_a_running_job_and_a_queued_one(api):
    long = {**QUICK_SINE, "steps": 200_000, "checkpoint_every": 25}
    job = api.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": long}).json()
    queued = api.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE}).json()
    deadline = time.monotonic() + 60
    while not api.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"]:
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.2)
    assert api.get(f"/v1/jobs/{queued['id']}").json()["status"] == "queued"  # one train worker, busy
    r = api.post(f"/v1/jobs/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = api.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert_error(api.post(f"/v1/jobs/{job['id']}/cancel"), 409, "job_finished")

    time.sleep(1.5)  # the worker notices at its next progress report, then takes the next message
    stopped = api.get(f"/v1/jobs/{job['id']}").json()
    time.sleep(1.0)
    later = api.get(f"/v1/jobs/{job['id']}").json()
    assert later["status"] == "cancelled" and later["progress"]["step"] == stopped["progress"]["step"] < 200_000
    assert later["model_id"] is None and later["finished_at"] is not None
    assert api.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"]  # kept
    never = api.get(f"/v1/jobs/{queued['id']}").json()
    assert never["status"] == "cancelled" and never["started_at"] is None and never["attempts"] == 0
    statuses = [e["data"]["status"] for kind, e in _sse(api, job["id"]) if kind == "status"]
    assert statuses == ["queued", "running", "cancelled"]
    follow = api.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE}).json()
    assert wait_job(api, follow["id"])["status"] == "succeeded"  # the worker is free again


def test_models_and_tasks_lifecycle(api, sine_model):
    listed = api.get("/v1/models").json()
    assert listed["object"] == "list" and sine_model["id"] in [m["id"] for m in listed["data"]]
    r = api.post(f"/v1/models/{sine_model['id']}/tasks", json={"support": SINE_SUPPORT, "wait": False})
    assert r.status_code == 202 and r.json()["status"] == "adapting"
    task_id = r.json()["id"]
    deadline = time.monotonic() + 30
    while (task := api.get(f"/v1/tasks/{task_id}").json())["status"] == "adapting":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert task["status"] == "ready"
    preds = api.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": [[0.5], [1.5]]}).json()
    assert len(preds["predictions"]) == 2 and all(isinstance(p, float) for p in preds["predictions"])

    key = {"Idempotency-Key": "task-1"}
    one = api.post(f"/v1/models/{sine_model['id']}/tasks", json={"support": SINE_SUPPORT}, headers=key)
    two = api.post(f"/v1/models/{sine_model['id']}/tasks", json={"support": SINE_SUPPORT}, headers=key)
    assert one.status_code == two.status_code == 201 and one.json()["id"] == two.json()["id"]

    assert api.delete(f"/v1/tasks/{task_id}").status_code == 204
    assert_error(api.get(f"/v1/tasks/{task_id}"), 404, "not_found")
    assert api.delete(f"/v1/models/{sine_model['id']}").status_code == 204  # its tasks go with it
    assert_error(api.get(f"/v1/models/{sine_model['id']}"), 404, "not_found")
    assert_error(api.get(f"/v1/tasks/{one.json()['id']}"), 404, "not_found")
    assert_error(api.post(f"/v1/tasks/{one.json()['id']}/predictions", json={"inputs": [[0.5]]}), 404, "not_found")
    assert sine_model["id"] not in [m["id"] for m in api.get("/v1/models").json()["data"]]


def test_metrics(api):
    text = api.get("/metrics").text
    for needle in (
        'fewshot_http_request_duration_seconds_count{method="GET",route="/v1/jobs/{job_id}",status="200"}',
        'fewshot_jobs{status="succeeded"}', 'fewshot_jobs{status="cancelled"}', 'fewshot_queue_depth{queue="train"}',
        "fewshot_adaptation_seconds_count", "fewshot_prediction_seconds_count",
        "fewshot_task_cache_hits_total", "fewshot_task_cache_misses_total",
    ):
        assert needle in text, needle


def test_4xx_paths_have_the_error_shape(api):
    for method, path in [
        ("GET", "/v1/jobs/job_nope"), ("POST", "/v1/jobs/job_nope/cancel"), ("GET", "/v1/jobs/job_nope/events"),
        ("GET", "/v1/jobs/job_nope/checkpoints"), ("GET", "/v1/models/mdl_nope"), ("DELETE", "/v1/models/mdl_nope"),
        ("GET", "/v1/tasks/tsk_nope"), ("DELETE", "/v1/tasks/tsk_nope"), ("GET", "/v1/datasets/ds_nope"),
        ("DELETE", "/v1/datasets/ds_nope"), ("GET", "/v1/nowhere"),
    ]:
        assert_error(api.request(method, path), 404)
    assert_error(api.post("/v1/models/mdl_nope/tasks", json={"support": SINE_SUPPORT}), 404, "not_found")
    assert_error(api.post("/v1/tasks/tsk_nope/predictions", json={"inputs": [[1.0]]}), 404, "not_found")
    assert_error(api.post("/v1/jobs", json={"algorithm": "maml"}), 422, "invalid_request")
    assert_error(api.post("/v1/jobs", content=b"{nope", headers={"content-type": "application/json"}), 422)
    assert_error(api.post("/v1/datasets", files={"file": ("x.npz", b"not an archive")}), 422, "invalid_dataset")
    assert_error(api.post("/v1/datasets"), 422, "invalid_request")
    assert_error(api.put("/v1/jobs"), 405)
