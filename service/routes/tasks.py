"""Adapted tasks: create by adapting a model to a support set, read, delete, predict."""

from __future__ import annotations

import time
from typing import Any

import torch
from celery.exceptions import TimeoutError as CeleryTimeout
from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from models.episodes import ProblemSpec
from service.deps import ArtifactsDep, IdempotencyDep, PredictorDep, QueueDep, SessionDep, SettingsDep, TenantDep
from service.errors import Conflict, InvalidInput, NotFound, Unavailable
from service.inputs import parse_inputs, parse_labels
from service.routes.common import SEND_RETRY, errors
from service.routes.models import get_model_or_404
from service.schemas import PredictionCreate, PredictionsPublic, TaskCreate, TaskPublic
from store.artifacts import support_key, task_prefix
from store.db import Model, Task
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
    model = get_model_or_404(session, model_id, tenant)
    spec = ProblemSpec.from_json(model.spec)
    x = parse_inputs(body.support.inputs, spec, "support.inputs")
    labels = parse_labels(body.support.labels, len(x), spec)
    existing = idem.begin(body.model_dump_json())
    if existing is not None:
        return _answer(get_task_or_404(session, existing, tenant), response)
    task_id = new_id("tsk")
    try:
        store.save(support_key(task_id), {"x": x, "y": labels.targets})
        task = Task(
            id=task_id, tenant_id=tenant, model_id=model.id, status="adapting", labels=labels.vocabulary,
            support_size=len(x), scalar_targets=labels.scalar, options=body.options.model_dump(exclude_none=True),
        )
        session.add(task)
        session.commit()
        try:
            result = queue.send_task(ADAPT_TASK, args=[task_id], retry_policy=SEND_RETRY)
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
        session.refresh(task)
        if task.status == "ready":
            request.app.state.metrics.adaptation_seconds.observe(time.perf_counter() - start)
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
def create_predictions(
    task_id: str, body: PredictionCreate, request: Request, session: SessionDep, predictor: PredictorDep, tenant: TenantDep,
) -> PredictionsPublic:
    task = get_task_or_404(session, task_id, tenant)
    if task.status != "ready":
        raise Conflict(f"task {task_id} is {task.status}, not ready; predictions need a ready task", param="task_id", code="task_not_ready")
    model = session.get(Model, task.model_id)
    if model is None:
        raise NotFound("model", task.model_id, param="model_id")
    spec = ProblemSpec.from_json(model.spec)
    x = parse_inputs(body.inputs, spec, "inputs")
    start = time.perf_counter()
    outputs = predictor.predict(model, task, x)
    request.app.state.metrics.prediction_seconds.observe(time.perf_counter() - start)
    if spec.output == "classification":
        probs = torch.softmax(outputs, dim=-1)
        labels: list[Any] = task.labels or []
        predictions = [labels[i] for i in probs.argmax(dim=-1).tolist()]
        return PredictionsPublic(task_id=task.id, predictions=predictions, probabilities=probs.tolist(), labels=labels)
    rows = outputs.tolist()
    return PredictionsPublic(task_id=task.id, predictions=[r[0] for r in rows] if task.scalar_targets else rows)
