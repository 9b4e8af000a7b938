"""GET /v1/models/{id}/tasks in-process: paged newest first, scoped to the model and its tenant;
and a POST that fails after storing its task (the broker is down) leaves no task behind."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from models.episodes import ProblemSpec
from service.auth import create_key
from service.main import create_app
from store.db import Job, Model, Task, init_db, session_scope
from store.ids import new_id
from store.settings import Settings
from tests.e2e.api_support import assert_error
from tests.e2e.server import free_port

SINE_SPEC = ProblemSpec(input_shape=(1,), output="regression").to_json()


def _model(url: str, tenant: str) -> str:
    with session_scope(url) as session:
        job = Job(tenant_id=tenant, algorithm="maml", dataset="sinusoid", config={})
        session.add(job)
        session.flush()
        model = Model(tenant_id=tenant, job_id=job.id, algorithm="maml", dataset="sinusoid", spec=SINE_SPEC,
                      learner_config={}, artifact="none")
        session.add(model)
        session.flush()
        return model.id


def _tasks(url: str, tenant: str, model_id: str, n: int) -> list[str]:
    ids = [new_id("tsk") for _ in range(n)]  # time-ordered: the last is the newest
    with session_scope(url) as session:
        session.add_all(Task(id=i, tenant_id=tenant, model_id=model_id, support_size=5) for i in ids)
    return ids


def test_model_tasks_are_paged_newest_first_and_scoped_to_the_tenant(tmp_path):
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/13")
    url = settings.sqlalchemy_url
    init_db(url)
    with session_scope(url) as session:
        a, b = create_key(session), create_key(session)
    mine, other = _model(url, a.tenant_id), _model(url, a.tenant_id)
    theirs = _model(url, b.tenant_id)
    made = _tasks(url, a.tenant_id, mine, 25)
    _tasks(url, a.tenant_id, other, 3)
    _tasks(url, b.tenant_id, theirs, 2)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {a.key}"}) as c:
        pages, after = [], None
        while True:
            page = c.get(f"/v1/models/{mine}/tasks", params={"limit": 10, **({"after": after} if after else {})}).json()
            assert page["object"] == "list"
            pages.append(page)
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        assert [len(p["data"]) for p in pages] == [10, 10, 5]
        listed = [t["id"] for p in pages for t in p["data"]]
        assert listed == made[::-1]  # newest first, every task once, none of another model
        assert all(t["model_id"] == mine and t["object"] == "task" for p in pages for t in p["data"])
        assert c.get(f"/v1/models/{mine}/tasks", params={"limit": 100}).json()["has_more"] is False
        assert_error(c.get(f"/v1/models/{theirs}/tasks"), 404, "not_found")  # another tenant's model
        assert_error(c.get("/v1/models/mdl_nope/tasks"), 404, "not_found")
        assert_error(c.get(f"/v1/models/{mine}/tasks", params={"limit": 0}), 422)
        other_tenant = {"Authorization": f"Bearer {b.key}"}
        assert_error(c.get(f"/v1/models/{mine}/tasks", headers=other_tenant), 404, "not_found")
        assert len(c.get(f"/v1/models/{theirs}/tasks", headers=other_tenant).json()["data"]) == 2


def test_a_task_whose_message_cannot_be_sent_is_rolled_back(tmp_path):
    settings = Settings(data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    init_db(settings.sqlalchemy_url)
    model_id = _model(settings.sqlalchemy_url, "tnt_local")
    body = {"support": {"inputs": [[0.0], [1.0]], "labels": [0.0, 0.8]}}
    with TestClient(create_app(settings)) as c:
        for wait in (False, True):
            r = c.post(f"/v1/models/{model_id}/tasks", json={**body, "wait": wait}, headers={"Idempotency-Key": "k"})
            assert_error(r, 503, "unavailable")
            assert int(r.headers["retry-after"]) >= 1
        assert c.get(f"/v1/models/{model_id}/tasks").json()["data"] == []
    tasks_dir = settings.artifact_dir / "tasks"
    assert not tasks_dir.exists() or not any(tasks_dir.rglob("*.*")), list(tasks_dir.rglob("*"))


def test_a_model_deleted_under_a_cached_row_answers_404_and_stores_nothing(tmp_path):
    """POST /v1/models/{id}/tasks reads the model from the API process's cache; a model deleted
    without this process hearing of it yet (here: deleted in the database directly) fails the
    task's insert, and the answer is the 404 a fresh read gives, with nothing stored."""
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/13")
    url = settings.sqlalchemy_url
    init_db(url)
    model_id = _model(url, "tnt_local")
    body = {"support": {"inputs": [[0.0], [1.0]], "labels": [0.0, 0.8]}, "wait": False}
    app = create_app(settings)
    with TestClient(app) as c:
        deadline = time.monotonic() + 10
        while not app.state.hot.live:  # the invalidation listener subscribed: the caches are on
            assert time.monotonic() < deadline, "the hot-row cache never went live"
            time.sleep(0.01)
        first = c.post(f"/v1/models/{model_id}/tasks", json=body)
        assert first.status_code == 202, first.text
        assert app.state.hot.models.get(model_id) is not None  # cached by that request
        with session_scope(url) as session:  # deleted behind the cache's back
            session.query(Task).filter(Task.model_id == model_id).delete()
            session.query(Model).filter(Model.id == model_id).delete()
        assert_error(c.post(f"/v1/models/{model_id}/tasks", json=body), 404, "not_found")
        assert app.state.hot.models.get(model_id) is None  # and no longer cached
        assert_error(c.post(f"/v1/models/{model_id}/tasks", json=body), 404, "not_found")
    with session_scope(url) as session:
        assert session.query(Task).count() == 0
    tasks_dir = settings.artifact_dir / "tasks"
    assert not tasks_dir.exists() or not any(tasks_dir.rglob("*.*"))  # support sets are stored in task rows
