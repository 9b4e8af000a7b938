"""A job's history: its events (JSON or a Server-Sent Events stream) and its checkpoints."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import BigInteger, literal, select
from sqlalchemy.orm import Session

from service.deps import SessionDep, TenantDep
from service.routes.common import Cursor, ObjectId, errors
from service.routes.jobs import FINISHED, get_job_or_404
from service.schemas import CheckpointPublic, CheckpointsPublic, JobEventPublic, JobEventsPublic
from store.db import Checkpoint, Job, JobEvent, session_factory

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

POLL_S = 0.25  # how often the stream looks for new events
KEEPALIVE_S = 15.0
STREAM_BATCH = 500
EVENT_ID_MAX = 2**63 - 1  # a cursor is any 64-bit integer (ids are 32-bit on PostgreSQL: a larger one finds none)

# One Server-Sent Event as parsed by a client (OpenAPI 3.1: the schema of a text/event-stream
# describes each event): the job's events, then `end` once the job has finished.
SSE_EVENT_SCHEMA = {
    "oneOf": [
        {
            "type": "object", "required": ["event", "data", "id"],
            "properties": {
                "event": {"enum": ["status", "progress", "checkpoint", "warning"], "description": "the event's type"},
                "id": {"type": "string", "pattern": "^[0-9]+$", "description": "the event's id (resume with Last-Event-ID)"},
                "data": {"type": "string", "contentMediaType": "application/json",
                         "contentSchema": {"$ref": "#/components/schemas/JobEventPublic"}},
            },
        },
        {
            "type": "object", "required": ["event", "data"],
            "properties": {
                "event": {"const": "end", "description": "the job has finished: the stream ends"},
                "data": {"type": "string", "contentMediaType": "application/json",
                         "contentSchema": {"type": "object", "maxProperties": 0}},
            },
        },
    ],
}


def event_public(event: JobEvent) -> JobEventPublic:
    return JobEventPublic(id=event.seq, job_id=event.job_id, type=event.type, data=event.data,  # type: ignore[arg-type]
                          created_at=event.created_at)


def _events(session: Session, job_id: str, after: int, limit: int) -> list[JobEvent]:
    # `after` as a 64-bit bind: compared with the column's own type (a 32-bit INTEGER on PostgreSQL),
    # a cursor past 2**31 was an out-of-range error there.
    newer = JobEvent.seq > literal(after, BigInteger)
    query = select(JobEvent).where(JobEvent.job_id == job_id, newer).order_by(JobEvent.seq).limit(limit)
    return list(session.scalars(query))


@router.get(
    "/{job_id}/events", operation_id="list_job_events", response_model=JobEventsPublic,
    responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
                     "description": "events as JSON, or as a Server-Sent Events stream that ends with the job "
                                    "(`Accept: text/event-stream` or `stream=true`): each event's `data` is the "
                                    "JSON of a job.event, then an `end` event; a `: keep-alive` comment every 15 s"},
               **errors(404)},
)
def list_job_events(
    job_id: ObjectId,
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    after: Annotated[int, Query(ge=0, le=EVENT_ID_MAX, description="the last event id seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    stream: Annotated[bool, Query(description="a Server-Sent Events stream instead of a JSON page")] = False,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=EVENT_ID_MAX, include_in_schema=False)] = None,
) -> JobEventsPublic | StreamingResponse:
    get_job_or_404(session, tenant, job_id)
    if stream or "text/event-stream" in request.headers.get("accept", ""):
        start = last_event_id if last_event_id is not None else after
        return StreamingResponse(
            # the API's own database URL: the request path's connect and statement timeouts
            _stream(request.app.state.db_url, job_id, start), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    rows = _events(session, job_id, after, limit + 1)
    return JobEventsPublic(data=[event_public(e) for e in rows[:limit]], has_more=len(rows) > limit)


async def _stream(db_url: str, job_id: str, after: int) -> AsyncIterator[str]:
    """Every event after `after`, as it is recorded; ends once the job has finished.

    Async, so an open stream holds no worker thread between polls (only during a query).
    """
    last_sent = time.monotonic()
    while True:
        finished, rows = await run_in_threadpool(_poll, db_url, job_id, after)
        for event in rows:
            after = event["id"]
            yield f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
            last_sent = time.monotonic()
        if finished and len(rows) < STREAM_BATCH:
            yield "event: end\ndata: {}\n\n"
            return
        if time.monotonic() - last_sent > KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        if not rows:
            await asyncio.sleep(POLL_S)


def _poll(db_url: str, job_id: str, after: int) -> tuple[bool, list[dict[str, Any]]]:
    """Whether the job has finished, and its events after `after` (read after the status, so none is missed)."""
    with session_factory(db_url)() as session:
        job = session.get(Job, job_id)
        finished = job is None or job.status in FINISHED
        rows = _events(session, job_id, after, STREAM_BATCH)
        return finished, [event_public(e).model_dump(mode="json") for e in rows]


@router.get("/{job_id}/checkpoints", operation_id="list_job_checkpoints", response_model=CheckpointsPublic,
            responses=errors(404))
def list_job_checkpoints(
    job_id: ObjectId,
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Cursor = None,
) -> CheckpointsPublic:
    get_job_or_404(session, tenant, job_id)
    query = select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step, Checkpoint.id).limit(limit + 1)
    if after is not None:
        seen = session.get(Checkpoint, after)
        if seen is not None:
            query = query.where(Checkpoint.step > seen.step)
    rows = list(session.scalars(query))
    return CheckpointsPublic(
        data=[CheckpointPublic(id=c.id, job_id=c.job_id, step=c.step, metrics=c.metrics, created_at=c.created_at)
              for c in rows[:limit]],
        has_more=len(rows) > limit,
    )
