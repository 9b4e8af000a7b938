"""POST /v1/models/{id}/tasks below FastAPI (service/fastpath.py fast_task_creation): a JSON body
that validates is answered by the route's own code without FastAPI's request machinery, with the
same answer the declared route gives; anything else is the declared route's, 422s included."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service import fastpath
from service.main import create_app
from store.artifacts import deserialize
from store.db import Task, init_db, session_scope
from store.settings import Settings
from tests.e2e.api_support import assert_error
from tests.service.test_model_tasks_list import _model

BODY = {"support": {"inputs": [[0.0], [1.0], [2.0]], "labels": [0.0, 0.8, 0.3]}, "options": {"inner_steps": 2}, "wait": False}


@pytest.fixture()
def served(tmp_path, monkeypatch):
    """A test client, the model's id, and the bodies the fast path validated (None: handed over)."""
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/13")
    init_db(settings.sqlalchemy_url)
    model_id = _model(settings.sqlalchemy_url, "tnt_local")
    seen: list[Any] = []

    def spy(body: bytes) -> Any:
        seen.append(real(body))
        return seen[-1]

    real = fastpath._task_create
    monkeypatch.setattr(fastpath, "_task_create", spy)
    with TestClient(create_app(settings)) as client:
        yield client, model_id, seen, settings


def _comparable(task: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in task.items() if k not in ("id", "created_at")}


def test_the_fast_path_answers_as_the_declared_route(served):
    client, model_id, seen, settings = served
    fast = client.post(f"/v1/models/{model_id}/tasks", json=BODY)
    assert len(seen) == 1 and seen[0] is not None  # answered in front of the router
    # FastAPI reads any application/*+json body as JSON; the fast path hands such a body over.
    declared = client.post(f"/v1/models/{model_id}/tasks", content=fastpath.orjson.dumps(BODY),
                           headers={"content-type": "application/vnd.api+json"})
    assert len(seen) == 1
    assert fast.status_code == declared.status_code == 202, (fast.text, declared.text)
    assert _comparable(fast.json()) == _comparable(declared.json())
    assert fast.json()["options"] == {"inner_steps": 2} and fast.json()["status"] == "adapting"
    assert fast.headers["content-type"] == declared.headers["content-type"] == "application/json"
    assert "send;dur=" in fast.headers["server-timing"] and "send;dur=" in declared.headers["server-timing"]
    with session_scope(settings.sqlalchemy_url) as session:  # both stored, the same way
        rows = {t.id: (t.support_size, t.status, t.options, deserialize(t.support)) for t in session.query(Task)}
    assert set(rows) == {fast.json()["id"], declared.json()["id"]}
    for size, status, options, support in rows.values():
        assert (size, status, options) == (3, "adapting", {"inner_steps": 2})
        assert support["x"].tolist() == [[0.0], [1.0], [2.0]] and support["y"].flatten().tolist() == pytest.approx([0.0, 0.8, 0.3])
    # The support set lives in the row (migration 0006): no file is written for it.
    assert not (settings.artifact_dir / "tasks").exists() or not any((settings.artifact_dir / "tasks").rglob("*.*"))


def test_bodies_that_do_not_validate_get_the_declared_routes_422(served):
    client, model_id, seen, _ = served
    path = f"/v1/models/{model_id}/tasks"
    missing = assert_error(client.post(path, json={"support": {"inputs": [[0.0]]}}), 422)
    assert "labels" in str(missing["param"]) + missing["message"]
    assert_error(client.post(path, json={**BODY, "unknown": 1}), 422)
    assert_error(client.post(path, json={**BODY, "options": {"inner_steps": -1}}), 422)
    assert_error(client.post(path, content=b"{not json", headers={"content-type": "application/json"}), 422)
    assert seen == [None, None, None, None]  # each handed over after the fast path's look
    assert client.get(path).json()["data"] == []  # nothing stored


def test_errors_raised_on_the_fast_path_keep_their_shape_and_headers(served):
    client, model_id, seen, _ = served
    assert_error(client.post("/v1/models/mdl_nope/tasks", json=BODY), 404, "not_found")
    too_long = client.post(f"/v1/models/{model_id}/tasks", json=BODY, headers={"Idempotency-Key": "k" * 256})
    assert_error(too_long, 422)  # the declared route's header validation
    assert len(seen) == 2 and seen[0] is not None  # the long key was looked at, then handed over
    first = client.post(f"/v1/models/{model_id}/tasks", json=BODY, headers={"Idempotency-Key": "same"})
    again = client.post(f"/v1/models/{model_id}/tasks", json=BODY, headers={"Idempotency-Key": "same"})
    assert first.status_code == 202 and again.json()["id"] == first.json()["id"]
    other = client.post(f"/v1/models/{model_id}/tasks", json={**BODY, "wait": True, "options": {}},
                        headers={"Idempotency-Key": "same"})
    assert_error(other, 409)


def test_sending_a_task_subscribes_to_no_result(served, monkeypatch):
    """The adapt worker announces outcomes itself and stores no Celery result; the send must not
    subscribe this process to a result channel per task (a Redis round trip on every new task)."""
    client, model_id, _, _ = served
    backend = type(client.app.state.celery.backend)  # Celery keeps one backend per thread: patch them all
    subscribed: list[str] = []
    monkeypatch.setattr(backend, "on_task_call", lambda self, producer, task_id: subscribed.append(task_id))
    sent = client.post(f"/v1/models/{model_id}/tasks", json=BODY)
    assert sent.status_code == 202, sent.text
    assert subscribed == []
