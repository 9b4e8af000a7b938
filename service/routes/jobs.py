"""Meta-training jobs: submit, read, list."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select

from models.recipe import ConfigError, resolve
from service.deps import QueueDep, SessionDep
from service.errors import InvalidInput, NotFound, Unavailable
from service.routes.common import errors
from service.schemas import JobCreate, JobProgress, JobPublic, JobsPublic
from store.db import Job
from store.queue import TRAIN_JOB

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def job_public(job: Job) -> JobPublic:
    return JobPublic(
        id=job.id, algorithm=job.algorithm, dataset=job.dataset, config=job.config,
        status=job.status,  # type: ignore[arg-type]
        progress=JobProgress(step=job.step, total_steps=job.total_steps, metrics=job.metrics or {}),
        model_id=job.model_id, error=job.error, attempts=job.attempts,
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
    )


@router.post("", status_code=202, operation_id="create_job", response_model=JobPublic, responses=errors(400, 422, 503))
def create_job(body: JobCreate, session: SessionDep, queue: QueueDep) -> JobPublic:
    try:
        recipe = resolve(body.algorithm, body.dataset, body.config)
    except ConfigError as exc:
        raise InvalidInput(str(exc), param=exc.param, code="invalid_config") from None
    job = Job(
        algorithm=body.algorithm, dataset=body.dataset, config=recipe.to_json(),
        status="queued", total_steps=recipe.training.steps, metrics={},
    )
    session.add(job)
    session.commit()
    try:
        queue.send_task(TRAIN_JOB, args=[job.id])
    except Exception as exc:  # the broker is down: nothing was accepted
        session.delete(job)
        session.commit()
        raise Unavailable(f"the job queue is unavailable ({type(exc).__name__}); retry later") from None
    return job_public(job)


@router.get("", operation_id="list_jobs", response_model=JobsPublic, responses=errors(422))
def list_jobs(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(description="the last id of the previous page")] = None,
    status: JobStatus | None = None,
) -> JobsPublic:
    query = select(Job).order_by(Job.id.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(Job.id < after)
    if status is not None:
        query = query.where(Job.status == status)
    rows = list(session.scalars(query))
    return JobsPublic(data=[job_public(j) for j in rows[:limit]], has_more=len(rows) > limit)


@router.get("/{job_id}", operation_id="get_job", response_model=JobPublic, responses=errors(404))
def get_job(job_id: str, session: SessionDep) -> JobPublic:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound("job", job_id)
    return job_public(job)
