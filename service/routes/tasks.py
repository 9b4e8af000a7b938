"""Adapted tasks: create by adapting a model to a support set, read, delete, predict."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from models.episodes import ProblemSpec
from service.adaptation_waiter import AdaptationWaiter, Heard
from service.admission import Admission
from service.deps import (
    ArtifactsDep,
    IdempotencyKeyHeader,
    PredictorDep,
    SessionDep,
    TenantDep,
    cached_tenant_of,
)
from service.errors import InvalidInput, NotFound, Unavailable
from service.fastpath import json_inputs, predictions
from service.idempotency import Idempotency
from service.inputs import InputBudget, parse_inputs, parse_labels
from service.routes.common import BODY_ERRORS, SEND_RETRY, Cursor, ObjectId, errors
from service.routes.models import get_model_or_404
from service.schemas import PredictionCreate, PredictionsPublic, TaskCreate, TaskPublic, TasksPublic
from store.adaptation_events import Announcement
from store.artifacts import serialize, task_prefix
from store.db import Model, Task, session_scope
from store.ids import new_id
from store.queue import ADAPT_TASK
from store.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["tasks"])


Marks = list[tuple[str, float]]  # stage ends, sent back as Server-Timing (benchmarks read it)


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


def _answer(task: Task, conversions: list[str], marks: Marks) -> Response:
    """201 with a ready task, 202 with one still adapting (its JSON, as the declared response model
    writes it, and the stages' Server-Timing); a failed adaptation is the 422 it raises."""
    if task.status == "failed":
        raise InvalidInput(f"adaptation of task {task.id} failed: {task.error}", param="support", code="adaptation_failed")
    answer = task_public(task)
    answer.conversions = conversions
    return Response(
        answer.model_dump_json(), status_code=201 if task.status == "ready" else 202, media_type="application/json",
        headers={"Server-Timing": _server_timing(marks)},
    )


@dataclass
class _NewTask:
    """What one POST asks for, and where the database and the queue are."""

    request: Request
    model_id: str
    body: TaskCreate
    tenant: str
    idempotency_key: str | None
    task_id: str
    conversions: list[str] = field(default_factory=list)  # what parsing converted (colour, ...), for the answer


def _record_and_send(new: _NewTask, marks: Marks) -> tuple[Task, bool]:
    """Parse, claim the Idempotency-Key, store the row with its support set, send the message: the
    task and whether it was made now (False: the key's earlier task). Blocking (thread pool).

    The session commits before the send, so no connection is held while the broker is slow. A
    failure after the row is stored deletes it: a stored task is always one whose id its client
    gets (or whose idempotent retry will)."""
    state = new.request.app.state
    settings: Settings = state.settings
    model = state.hot.model(new.model_id)  # cached: no SQL for a model this process has seen
    if model is None or model.tenant_id != new.tenant:
        raise NotFound("model", new.model_id, param="model_id")
    spec = ProblemSpec.from_json(model.spec)
    x = parse_inputs(new.body.support.inputs, spec, "support.inputs", InputBudget.from_settings(settings), new.conversions)
    labels = parse_labels(new.body.support.labels, len(x), spec)
    marks.append(("parse", time.perf_counter()))
    with session_scope(state.db_url) as session:
        idem = Idempotency(
            session, new.tenant, new.idempotency_key, f"POST {new.request.url.path}",
            settings.idempotency_lease_seconds, settings.idempotency_ttl_hours,
        )
        existing = idem.begin(new.body.model_dump_json)
        if existing is not None:
            return get_task_or_404(session, existing, new.tenant), False
        try:
            support = serialize({"x": x, "y": labels.targets})  # stored in the row: the worker reads it with the row
            marks.append(("store", time.perf_counter()))
            task = Task(
                id=new.task_id, tenant_id=new.tenant, model_id=model.id, status="adapting", labels=labels.vocabulary,
                support_size=len(x), scalar_targets=labels.scalar,
                options=new.body.options.model_dump(exclude_none=True), support=support,
            )
            session.add(task)
            idem.record(new.task_id)  # the key names the task in the transaction that stores it
            try:
                session.commit()  # the connection goes back to the pool here
            except IntegrityError:
                session.rollback()
                if session.get(Model, model.id) is None:  # deleted since its row was read (or cached)
                    state.hot.forget("model", model.id)
                    raise NotFound("model", new.model_id, param="model_id") from None
                raise
            marks.append(("ledger", time.perf_counter()))
            try:
                # ignore_result: the worker announces the outcome (store/adaptation_events.py); without
                # it Celery subscribes this process to a result channel per task, a Redis round trip.
                state.celery.send_task(ADAPT_TASK, args=[new.task_id], retry_policy=SEND_RETRY, ignore_result=True)
            except Exception as exc:
                raise Unavailable(f"the adaptation queue is unavailable ({type(exc).__name__}); retry later") from None
            marks.append(("send", time.perf_counter()))
        except BaseException:
            _undo(session, new.task_id, idem)
            raise
    return task, True


def _undo(session: Session, task_id: str, idem: Idempotency) -> None:
    """Delete the task's row (its support set with it) and key after a failure; best effort
    (logged), so that the original error is the one the client sees. A message already sent finds
    no row and is dropped by the worker."""
    try:
        session.rollback()
        session.execute(delete(Task).where(Task.id == task_id))
        idem.release()
        session.commit()
    except Exception:  # noqa: BLE001
        log.exception("task %s: its row could not be removed after a failed request; it stays listed", task_id)


def _settled(task: Task, heard: Heard) -> Task | None:
    """The task as its worker's announcement says it was recorded (ready with its time, or failed
    with its error), without reading the row; None when the row must be read (no announcement, an
    older worker's without those details, or a task deleted meanwhile)."""
    if not isinstance(heard, Announcement) or heard.task_id != task.id:
        return None
    if heard.status == "ready" and heard.ready_at is not None:
        task.status, task.error, task.ready_at = "ready", None, heard.ready_at
        return task
    if heard.status == "failed" and heard.error is not None:
        task.status, task.error = "failed", heard.error
        return task
    return None


def _reread(request: Request, task: Task) -> Task:
    """The task's row as it is now; the row as this request stored it when the database fails
    (the client still gets the id, and GET /v1/tasks/{id} shows the rest). Blocking."""
    try:
        with session_scope(request.app.state.db_url) as session:
            return session.get(Task, task.id) or task
    except Exception as exc:  # noqa: BLE001 - the task exists and was sent: answer 202, not an error
        log.warning("task %s: row not re-read after the wait (%s: %s)", task.id, type(exc).__name__, exc)
        return task


def _server_timing(marks: Marks) -> str:
    durations = [f"{name};dur={(t - marks[i][1]) * 1000:.2f}" for i, (name, t) in enumerate(marks[1:])]
    return ", ".join([*durations, f"total;dur={(marks[-1][1] - marks[0][1]) * 1000:.2f}"])


@router.get(
    "/v1/models/{model_id}/tasks", operation_id="list_model_tasks", response_model=TasksPublic, responses=errors(404),
)
def list_model_tasks(
    model_id: ObjectId,
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Cursor = None,
) -> TasksPublic:
    """The model's tasks, newest first: every task a POST stored, whether or not its client got the answer."""
    get_model_or_404(session, model_id, tenant)
    query = (
        select(Task).where(Task.model_id == model_id, Task.tenant_id == tenant).order_by(Task.id.desc()).limit(limit + 1)
    )
    if after is not None:
        query = query.where(Task.id < after)
    rows = list(session.scalars(query))
    return TasksPublic(data=[task_public(t) for t in rows[:limit]], has_more=len(rows) > limit)


@router.post(
    "/v1/models/{model_id}/tasks", status_code=201, operation_id="create_task", response_model=TaskPublic,
    responses={202: {"model": TaskPublic, "description": "accepted, still adapting"},
               **errors(*BODY_ERRORS, 404, 409, 503)},
)
async def create_task(
    model_id: ObjectId, body: TaskCreate, request: Request, idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    # Most requests never reach this: service/fastpath.py answers them in front of the router with
    # the same code (task_answer()); this declares the operation and answers the bodies the fast
    # path hands over. No docstring: it would become the operation's description in openapi.json.
    return await task_answer(request.app.state, request, model_id, body, idempotency_key)


async def task_answer(state: Any, request: Request, model_id: str, body: TaskCreate, idempotency_key: str | None) -> Response:
    """The answer to POST /v1/models/{id}/tasks, for the declared route and the fast path alike.

    Async: admission before any database work, then short thread-pool calls that each close their
    session, and the wait for the worker on a future (no thread, no connection)."""
    admission: Admission = state.admission
    marks: Marks = [("start", time.perf_counter())]
    with admission.process_slot():
        tenant = await cached_tenant_of(state, request)
        marks.append(("auth", time.perf_counter()))
        async with admission.tenant_slot(tenant):
            new = _NewTask(request, model_id, body, tenant, idempotency_key, new_id("tsk"))
            waiter: AdaptationWaiter = state.adaptation_waiter
            announced = await waiter.expect(new.task_id) if body.wait else None  # before the send
            try:
                task, made = await run_in_threadpool(_record_and_send, new, marks)
                if made and announced is not None:
                    start = time.perf_counter()
                    heard = await waiter.wait(new.task_id, announced, state.settings.adapt_wait_seconds)
                    marks.append(("wait", time.perf_counter()))
                    settled = _settled(task, heard)
                    task = settled if settled is not None else await run_in_threadpool(_reread, request, task)
                    marks.append(("refresh", time.perf_counter()))
                    if task.status == "ready":
                        state.metrics.adaptation_seconds.observe(time.perf_counter() - start)
            finally:
                waiter.forget(new.task_id)
    return _answer(task, new.conversions, marks)


@router.get("/v1/tasks/{task_id}", operation_id="get_task", response_model=TaskPublic, responses=errors(404))
def get_task(task_id: ObjectId, session: SessionDep, tenant: TenantDep) -> TaskPublic:
    return task_public(get_task_or_404(session, task_id, tenant))


@router.delete("/v1/tasks/{task_id}", status_code=204, operation_id="delete_task", responses=errors(404))
def delete_task(
    task_id: ObjectId, request: Request, session: SessionDep, store: ArtifactsDep, predictor: PredictorDep, tenant: TenantDep,
) -> Response:
    task = get_task_or_404(session, task_id, tenant)
    session.delete(task)
    session.commit()
    predictor.forget_task(task_id)
    request.app.state.hot.publish("task", task_id)  # every API process drops its cached row and state
    store.delete_prefix(task_prefix(task_id))
    return Response(status_code=204)


# The raw bodies service/fastpath.py takes beside JSON, declared for the schema and the SDK.
RAW_INPUTS: dict[str, Any] = {"requestBody": {
    "description": "JSON `{\"inputs\": [...]}`; or `application/octet-stream`: float32, little-endian, inputs of the "
                   "model's input shape one after another (the batch is the body's length over one input's bytes); "
                   "or `image/png`: one image",
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
    },
}}


@router.post(
    "/v1/tasks/{task_id}/predictions", operation_id="create_predictions", response_model=PredictionsPublic,
    responses=errors(*BODY_ERRORS, 404, 409), openapi_extra=RAW_INPUTS,
)
async def create_predictions(task_id: ObjectId, body: PredictionCreate, request: Request) -> Response:
    # Most requests never reach this: service/fastpath.py answers them in front of the router with
    # the same code (predictions()); this declares the operation and answers the bodies the fast
    # path hands over. No docstring: it would become the operation's description in openapi.json.
    inline = len(body.inputs) <= 16
    content = await predictions(request.app.state, request, task_id, json_inputs(body.inputs), inline)
    return Response(content, media_type="application/json")

