"""Adapted tasks: create by adapting a model to a support set, read, delete, predict."""

from __future__ import annotations

import time
from typing import Any

import torch
from celery.exceptions import TimeoutError as CeleryTimeout
from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from models.episodes import ProblemSpec
from service.deps import (
    ArtifactsDep,
    IdempotencyDep,
    PredictorDep,
    QueueDep,
    SessionDep,
    SettingsDep,
    TenantDep,
    tenant_of,
)
from service.errors import Conflict, InvalidInput, NotFound, Unavailable
from service.inputs import parse_inputs, parse_labels
from service.predictor import Predictor
from service.routes.common import SEND_RETRY, errors
from service.routes.models import get_model_or_404
from service.schemas import PredictionCreate, PredictionsPublic, TaskCreate, TaskPublic
from store.artifacts import support_key, task_prefix
from store.db import Model, Task, get_engine
from store.ids import new_id
from store.queue import ADAPT_TASK

router = APIRouter(tags=["tasks"])


def task_public(task: Task) -> TaskPublic:
    return TaskPublic(
        id=task.id, model_id=task.model_id, status=task.status,  # type: ignore[arg-type]
        labels=task.labels, support_size=task.support_size, options=task.options or {},
        error=task.error, created_at=task.created_at, ready_at=task.ready_at,
    )


def get_task_or_404(session: Session, task_id: str, tenant: str) -> Task:
    task = session.get(Task, task_id)
    if task is None or task.tenant_id != tenant:
        raise NotFound("task", task_id, param="task_id")
    return task


def _answer(task: Task, response: Response) -> TaskPublic:
    if task.status == "failed":
        raise InvalidInput(f"adaptation of task {task.id} failed: {task.error}", param="support", code="adaptation_failed")
    response.status_code = 201 if task.status == "ready" else 202
    return task_public(task)


@router.post(
    "/v1/models/{model_id}/tasks", status_code=201, operation_id="create_task", response_model=TaskPublic,
    responses={202: {"model": TaskPublic, "description": "accepted, still adapting"}, **errors(404, 409, 503)},
)
def create_task(
    model_id: str, body: TaskCreate, request: Request, response: Response, session: SessionDep, store: ArtifactsDep,
    queue: QueueDep, settings: SettingsDep, tenant: TenantDep, idem: IdempotencyDep,
) -> TaskPublic:
    marks = [("start", time.perf_counter())]  # stage ends, sent back as Server-Timing (benchmarks read it)
    model = get_model_or_404(session, model_id, tenant)
    spec = ProblemSpec.from_json(model.spec)
    x = parse_inputs(body.support.inputs, spec, "support.inputs")
    labels = parse_labels(body.support.labels, len(x), spec)
    marks.append(("parse", time.perf_counter()))
    existing = idem.begin(body.model_dump_json())
    if existing is not None:
        return _answer(get_task_or_404(session, existing, tenant), response)
    task_id = new_id("tsk")
    try:
        store.save(support_key(task_id), {"x": x, "y": labels.targets})
        marks.append(("store", time.perf_counter()))
        task = Task(
            id=task_id, tenant_id=tenant, model_id=model.id, status="adapting", labels=labels.vocabulary,
            support_size=len(x), scalar_targets=labels.scalar, options=body.options.model_dump(exclude_none=True),
        )
        session.add(task)
        session.commit()
        marks.append(("ledger", time.perf_counter()))
        try:
            result = queue.send_task(ADAPT_TASK, args=[task_id], retry_policy=SEND_RETRY)
            marks.append(("send", time.perf_counter()))
        except Exception as exc:
            session.delete(task)
            session.commit()
            store.delete_prefix(task_prefix(task_id))
            raise Unavailable(f"the adaptation queue is unavailable ({type(exc).__name__}); retry later") from None
    except BaseException:
        idem.abandon()
        raise
    idem.finish(task_id)
    if body.wait:
        start = time.perf_counter()
        try:
            result.get(timeout=settings.adapt_wait_seconds, propagate=False)
        except CeleryTimeout:
            pass
        finally:
            result.forget()
        marks.append(("wait", time.perf_counter()))
        session.refresh(task)
        marks.append(("refresh", time.perf_counter()))
        if task.status == "ready":
            request.app.state.metrics.adaptation_seconds.observe(time.perf_counter() - start)
    durations = [f"{name};dur={(t - marks[i][1]) * 1000:.2f}" for i, (name, t) in enumerate(marks[1:])]
    response.headers["Server-Timing"] = ", ".join([*durations, f"total;dur={(marks[-1][1] - marks[0][1]) * 1000:.2f}"])
    return _answer(task, response)


@router.get("/v1/tasks/{task_id}", operation_id="get_task", response_model=TaskPublic, responses=errors(404))
def get_task(task_id: str, session: SessionDep, tenant: TenantDep) -> TaskPublic:
    return task_public(get_task_or_404(session, task_id, tenant))


@router.delete("/v1/tasks/{task_id}", status_code=204, operation_id="delete_task", responses=errors(404))
def delete_task(task_id: str, session: SessionDep, store: ArtifactsDep, predictor: PredictorDep, tenant: TenantDep) -> Response:
    task = get_task_or_404(session, task_id, tenant)
    session.delete(task)
    session.commit()
    predictor.forget_task(task_id)
    store.delete_prefix(task_prefix(task_id))
    return Response(status_code=204)


@router.post(
    "/v1/tasks/{task_id}/predictions", operation_id="create_predictions", response_model=PredictionsPublic,
    responses=errors(404, 409),
)
async def create_predictions(task_id: str, body: PredictionCreate, request: Request, predictor: PredictorDep) -> Response:
    # async, with its blocking part (SQL, torch) in one thread-pool call: a sync route with sync
    # dependencies pays one thread hop for each, and an ORM session per request costs more than
    # the two small queries it makes (benchmarks/results/http_predictions.md). No docstring: it
    # would become the operation's description in openapi.json.
    content = await run_in_threadpool(_predict, request, task_id, body.inputs, predictor)
    return Response(content, media_type="application/json")


_TASK_ROW = select(Task.tenant_id, Task.status, Task.model_id, Task.labels, Task.scalar_targets, Task.artifact)


def _predict(request: Request, task_id: str, inputs: list[Any], predictor: Predictor) -> bytes:
    """The JSON answer: auth, the task's row (it may have been deleted by any API process), then the model."""
    with get_engine(request.app.state.db_url).connect() as conn:
        # An ORM session on the same connection for the API-key lookup (it loads ApiKey rows);
        # the task's row is read with Core: no session setup, flush or commit for a read.
        tenant = tenant_of(request, Session(bind=conn))
        task = conn.execute(_TASK_ROW.where(Task.id == task_id)).first()
        if task is None or task.tenant_id != tenant:
            raise NotFound("task", task_id, param="task_id")
        if task.status != "ready":
            raise Conflict(f"task {task_id} is {task.status}, not ready; predictions need a ready task", param="task_id", code="task_not_ready")
        learners = predictor.learner_for(task.model_id, lambda: _model_row(conn, task.model_id))
    spec = learners.spec
    x = parse_inputs(inputs, spec, "inputs")
    start = time.perf_counter()
    outputs = predictor.run(learners, task_id, task.artifact, x)
    request.app.state.metrics.prediction_seconds.observe(time.perf_counter() - start)
    if spec.output == "classification":
        probs = torch.softmax(outputs, dim=-1)
        labels: list[Any] = task.labels or []
        predictions = [labels[i] for i in probs.argmax(dim=-1).tolist()]
        answer = PredictionsPublic(task_id=task_id, predictions=predictions, probabilities=probs.tolist(), labels=labels)
    else:
        rows = outputs.tolist()
        answer = PredictionsPublic(task_id=task_id, predictions=[r[0] for r in rows] if task.scalar_targets else rows)
    return answer.model_dump_json().encode()


def _model_row(conn: Connection, model_id: str) -> Model:
    model = Session(bind=conn).get(Model, model_id)
    if model is None:
        raise NotFound("model", model_id, param="model_id")
    return model
