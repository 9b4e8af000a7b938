"""Meta-training jobs: submit, list, read, cancel."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.arrays import DatasetError, check_episodes
from models.recipe import UPLOADED_PREFIX, ConfigError, Recipe, resolve
from models.splits import SplitError
from service.deps import IdempotencyDep, QueueDep, SessionDep, TenantDep
from service.errors import Conflict, InvalidInput, NotFound, Unavailable
from service.routes.common import BODY_ERRORS, SEND_RETRY, Cursor, ObjectId, errors
from service.schemas import (
    ID_MAX_LENGTH,
    MAX_METADATA_PAIRS,
    UPLOADED_DATASET_PATTERN,
    JobCreate,
    JobProgress,
    JobPublic,
    JobsPublic,
)
from store.db import Dataset, Job, JobEvent, JobMetadata, record_event, utcnow
from store.queue import TRAIN_JOB

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED = ("succeeded", "failed", "cancelled")


def job_public(job: Job) -> JobPublic:
    return JobPublic(
        id=job.id, algorithm=job.algorithm, dataset=job.dataset, config=job.config,
        status=job.status,  # type: ignore[arg-type]
        progress=JobProgress(step=job.step, total_steps=job.total_steps, metrics=job.metrics or {}),
        model_id=job.model_id, error=job.error, attempts=job.attempts,
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        name=job.name, metadata=job.metadata_pairs,
    )


def get_job_or_404(session: Session, tenant: str, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.tenant_id != tenant:
        raise NotFound("job", job_id, param="job_id")
    return job


def _check_uploaded_dataset(session: Session, tenant: str, recipe: Recipe) -> None:
    """An uploaded dataset must be this tenant's and hold enough classes and examples."""
    if not re.fullmatch(UPLOADED_DATASET_PATTERN, recipe.dataset) or len(recipe.dataset) > ID_MAX_LENGTH:
        raise NotFound("dataset", recipe.dataset, param="dataset")  # no such id is ever made
    dataset = session.get(Dataset, recipe.dataset)
    if dataset is None or dataset.tenant_id != tenant:
        raise NotFound("dataset", recipe.dataset, param="dataset")
    cfg = recipe.training
    assert cfg.val_fraction is not None and cfg.test_fraction is not None  # resolve() gives uploads their defaults
    try:
        check_episodes(dataset.output, dataset.spec["counts"], cfg.n_way, cfg.k_shot, cfg.k_query, cfg.seed,
                       cfg.val_fraction, cfg.test_fraction)
    except SplitError as exc:
        raise InvalidInput(str(exc), param=f"config.{exc.param}", code="invalid_config") from None
    except DatasetError as exc:
        raise InvalidInput(str(exc), param="config", code="invalid_config") from None


@router.post("", status_code=202, operation_id="create_job", response_model=JobPublic,
             responses=errors(*BODY_ERRORS, 404, 409, 503))
def create_job(body: JobCreate, session: SessionDep, queue: QueueDep, tenant: TenantDep, idem: IdempotencyDep) -> JobPublic:
    try:
        recipe = resolve(body.algorithm, body.dataset, body.config)
    except ConfigError as exc:
        raise InvalidInput(str(exc), param=exc.param, code="invalid_config") from None
    if recipe.dataset.startswith(UPLOADED_PREFIX):
        _check_uploaded_dataset(session, tenant, recipe)
    existing = idem.begin(body.model_dump_json)
    if existing is not None:
        return job_public(get_job_or_404(session, tenant, existing))
    try:
        job = Job(
            tenant_id=tenant, algorithm=body.algorithm, dataset=body.dataset, config=recipe.to_json(),
            status="queued", total_steps=recipe.training.steps, metrics={}, name=body.name,
            metadata_items=[JobMetadata(key=k, value=v) for k, v in body.metadata.items()],
        )
        session.add(job)
        session.flush()
        record_event(session, job.id, "status", status="queued")
        idem.record(job.id)  # with the job: a request killed after this commit left a job its retry finds
        session.commit()
        try:
            queue.send_task(TRAIN_JOB, args=[job.id], task_id=job.id, retry_policy=SEND_RETRY, ignore_result=True)
        except Exception as exc:  # the broker is down: nothing was accepted
            session.execute(delete(JobEvent).where(JobEvent.job_id == job.id))
            session.delete(job)
            idem.release()
            session.commit()
            raise Unavailable(f"the job queue is unavailable ({type(exc).__name__}); retry later") from None
    except BaseException:
        idem.abandon()
        raise
    return job_public(job)


@router.get("", operation_id="list_jobs", response_model=JobsPublic, responses=errors())
def list_jobs(
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Cursor = None,
    status: JobStatus | None = None,
    name: Annotated[str | None, Query(max_length=255, description="only the jobs of this name")] = None,
) -> JobsPublic:
    """Newest first. `metadata[KEY]=VALUE` (repeatable) lists only the jobs that have each pair."""
    query = select(Job).where(Job.tenant_id == tenant).order_by(Job.id.desc()).limit(limit + 1)
    if name is not None:
        query = query.where(Job.name == name)
    for key, value in _metadata_filters(request):
        query = query.where(Job.id.in_(select(JobMetadata.job_id).where(JobMetadata.key == key,
                                                                         JobMetadata.value == value)))
    if after is not None:
        query = query.where(Job.id < after)
    if status is not None:
        query = query.where(Job.status == status)
    rows = list(session.scalars(query))
    return JobsPublic(data=[job_public(j) for j in rows[:limit]], has_more=len(rows) > limit)


def _metadata_filters(request: Request) -> list[tuple[str, str]]:
    pairs = []
    for param, value in request.query_params.multi_items():
        found = re.fullmatch(r"metadata\[(.+)\]", param)
        if param.startswith("metadata") and found is None:
            raise InvalidInput(f"{param!r}: filter by metadata as metadata[KEY]=VALUE", param=param)
        if found is not None:
            pairs.append((found.group(1), value))
    if len(pairs) > MAX_METADATA_PAIRS:
        raise InvalidInput(f"at most {MAX_METADATA_PAIRS} metadata filters", param="metadata")
    return pairs


@router.get("/{job_id}", operation_id="get_job", response_model=JobPublic, responses=errors(404))
def get_job(job_id: ObjectId, session: SessionDep, tenant: TenantDep) -> JobPublic:
    return job_public(get_job_or_404(session, tenant, job_id))


@router.post("/{job_id}/cancel", operation_id="cancel_job", response_model=JobPublic, responses=errors(404, 409))
def cancel_job(job_id: ObjectId, session: SessionDep, queue: QueueDep, tenant: TenantDep) -> JobPublic:
    """A queued job never starts; a running one stops at its next progress report and keeps its checkpoints."""
    job = get_job_or_404(session, tenant, job_id)
    session.refresh(job, with_for_update=True)
    if job.status in FINISHED:
        raise Conflict(f"job {job_id} already {job.status}; only queued or running jobs can be cancelled",
                       param="job_id", code="job_finished")
    was = job.status
    job.status, job.finished_at = "cancelled", utcnow()
    record_event(session, job.id, "status", status="cancelled", previous=was)
    session.commit()
    if was == "queued":
        try:
            queue.control.revoke(job.id)
        except Exception:  # noqa: BLE001 - the ledger already says cancelled; the worker will skip it
            pass
    return job_public(job)
