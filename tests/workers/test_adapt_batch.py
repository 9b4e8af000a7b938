"""The adapt worker's batches (workers/pipelines.adapt_tasks), on the real ledger and real Redis:
one message adapts the model's waiting tasks, each stored as it would be alone; tasks another
batch claims are left to it; a bad support set fails only its task; claims are given back."""

from __future__ import annotations

import pytest
import redis
import torch

from models.learners import AdaptOptions
from store import adaptation_claims
from store.adaptation_events import Announcement
from store.artifacts import artifact_store, serialize, state_key, support_key
from store.db import Model, Task, init_db, session_scope
from store.ids import new_id
from store.settings import Settings
from tests.workers.test_adapt_pipeline import _train
from workers import pipelines

REDIS_URL = "redis://127.0.0.1:6379/12"


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    settings = Settings(data_dir=tmp_path_factory.mktemp("adapt-batch"), redis_url=REDIS_URL, adapt_batch_max=4)
    init_db(settings.sqlalchemy_url)
    return settings


@pytest.fixture(autouse=True)
def _clean_redis():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield
    client.flushdb()


@pytest.fixture(scope="module")
def sine_model(settings) -> str:
    return _train(settings, "maml", "sinusoid", {"steps": 3, "meta_batch_size": 2, "eval_episodes": 3})


def _task(settings: Settings, model_id: str, phase: float, x: torch.Tensor | None = None, options: dict | None = None,
          in_row: bool = False) -> str:
    """A task as the API leaves it for the worker, row adapting: its support set in its row (as the
    API stores it since migration 0006) or in the artifact store (as before)."""
    task_id = new_id("tsk")
    x = torch.linspace(-3, 3, 5).unsqueeze(1) if x is None else x
    support = {"x": x, "y": torch.sin(x + phase)}
    if not in_row:
        artifact_store(settings).save(support_key(task_id), support)
    with session_scope(settings.sqlalchemy_url) as session:
        session.add(Task(id=task_id, model_id=model_id, status="adapting", support_size=len(x), scalar_targets=True,
                         options=options or {}, support=serialize(support) if in_row else None))
    return task_id


def _statuses(settings: Settings, ids: list[str]) -> list[str]:
    with session_scope(settings.sqlalchemy_url) as session:
        return [session.get(Task, t).status for t in ids]  # type: ignore[union-attr]


def _drain(settings: Settings, model_id: str) -> None:
    """Settle every task of the model left adapting by an earlier test."""
    with session_scope(settings.sqlalchemy_url) as session:
        session.query(Task).filter(Task.model_id == model_id, Task.status == "adapting").update({"status": "failed"})


def test_one_message_adapts_the_waiting_tasks_of_its_model(settings, sine_model):
    _drain(settings, sine_model)
    ids = [_task(settings, sine_model, phase, options={"inner_steps": 3} if phase == 2 else None, in_row=phase % 2 == 1)
           for phase in range(6)]  # support sets in rows and in files, mixed in one batch
    statuses = pipelines.adapt_tasks(ids[0], settings)
    assert statuses == dict.fromkeys(ids[:4], "ready")  # adapt_batch_max 4: the oldest four, the sent one first
    assert _statuses(settings, ids) == ["ready"] * 4 + ["adapting"] * 2
    # Each stored state is what adapting that task alone gives.
    with session_scope(settings.sqlalchemy_url) as session:
        model = session.get(Model, sine_model)
    learner = pipelines.model_learner(model, settings)
    store = artifact_store(settings)
    x = torch.linspace(-3, 3, 5).unsqueeze(1)
    for i, task_id in enumerate(ids[:4]):
        alone = learner.adapt(x, torch.sin(x + i), AdaptOptions(inner_steps=3) if i == 2 else None)
        stored = store.load(state_key(task_id))
        assert stored.keys() == alone.keys()
        for k in alone:
            torch.testing.assert_close(stored[k], alone[k], atol=1e-5, rtol=1e-5)
    # The batched tasks' own messages, delivered later, adapt nothing; the rest adapt.
    assert pipelines.adapt_tasks(ids[1], settings) == {ids[1]: "ready"}
    assert pipelines.adapt_tasks(ids[5], settings) == {ids[5]: "ready", ids[4]: "ready"}
    assert redis.Redis.from_url(REDIS_URL).keys(adaptation_claims.PREFIX + "*") == []  # every claim given back


def test_tasks_claimed_by_another_batch_are_left_to_it(settings, sine_model):
    _drain(settings, sine_model)
    ids = [_task(settings, sine_model, phase) for phase in range(3)]
    other = adaptation_claims.Claims(REDIS_URL)
    assert other.take([ids[0], ids[2]]) == [ids[0], ids[2]]
    assert pipelines.adapt_tasks(ids[0], settings) == {}  # held elsewhere: neither adapted nor announced
    assert pipelines.adapt_task(ids[0], settings) == "adapting"
    assert pipelines.adapt_tasks(ids[1], settings) == {ids[1]: "ready"}
    assert _statuses(settings, ids) == ["adapting", "ready", "adapting"]
    other.release()
    assert pipelines.adapt_tasks(ids[2], settings) == {ids[2]: "ready", ids[0]: "ready"}


def test_a_bad_support_set_fails_its_task_alone(settings, sine_model):
    _drain(settings, sine_model)
    good = _task(settings, sine_model, 0.0)
    bad = _task(settings, sine_model, 1.0, x=torch.zeros(5, 3))  # the model takes 1 input feature
    late = _task(settings, sine_model, 2.0)
    assert pipelines.adapt_tasks(good, settings) == {good: "ready", bad: "failed", late: "ready"}
    with session_scope(settings.sqlalchemy_url) as session:
        error = session.get(Task, bad).error  # type: ignore[union-attr]
    assert error is not None and "shape" in error


def test_without_redis_a_message_adapts_its_own_task(tmp_path, sine_model, settings):
    _drain(settings, sine_model)
    ids = [_task(settings, sine_model, phase) for phase in range(2)]
    unreachable = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    assert pipelines.adapt_tasks(ids[0], unreachable) == {ids[0]: "ready"}
    assert _statuses(settings, ids) == ["ready", "adapting"]


def test_a_task_deleted_while_its_batch_adapts_is_missing(settings, sine_model):
    _drain(settings, sine_model)
    ids = [_task(settings, sine_model, phase) for phase in range(2)]
    real = pipelines.check_adapted

    def delete_the_second(learner, phi, x, y):  # runs between adapting and recording
        with session_scope(settings.sqlalchemy_url) as session:
            session.query(Task).filter(Task.id == ids[1]).delete()
        return real(learner, phi, x, y)

    pipelines.check_adapted = delete_the_second  # type: ignore[assignment]
    try:
        assert pipelines.adapt_tasks(ids[0], settings) == {ids[0]: "ready", ids[1]: "missing"}
    finally:
        pipelines.check_adapted = real  # type: ignore[assignment]
    assert not artifact_store(settings).exists(state_key(ids[1]))


def test_a_batch_is_recorded_and_told_chunk_by_chunk(settings, sine_model):
    _drain(settings, sine_model)
    ids = [_task(settings, sine_model, phase) for phase in range(5)]
    chunked = settings.model_copy(update={"adapt_batch_max": 5, "adapt_chunk": 2})
    told: list[dict[str, str]] = []

    def settled(chunk: list[Announcement]) -> None:
        told.append({a.task_id: a.status for a in chunk})
        with session_scope(settings.sqlalchemy_url) as session:  # recorded before it is told, as it is told
            for a in chunk:
                row = session.get(Task, a.task_id)
                assert row is not None and row.status == "ready" and a.error is None
                assert a.ready_at is not None and a.ready_at == row.ready_at

    statuses = pipelines.adapt_tasks(ids[0], chunked, settled)
    assert told == [{ids[0]: "ready", ids[1]: "ready"}, {ids[2]: "ready", ids[3]: "ready"}, {ids[4]: "ready"}]
    assert statuses == dict.fromkeys(ids, "ready")
