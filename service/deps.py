"""Every injectable, declared once as an Annotated alias and reused in signatures.

The ones that only read app.state are `async def`: FastAPI runs a sync dependency in the
thread pool, one hop per dependency per request, which showed in the profile of hot
predictions (benchmarks/results/http_predictions.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from celery import Celery
from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.auth import authenticate, presented_key
from service.idempotency import Idempotency
from service.predictor import Predictor
from store.artifacts import ArtifactStore
from store.db import session_scope
from store.settings import Settings


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.db_url) as session:
        yield session


async def _artifacts(request: Request) -> ArtifactStore:
    return request.app.state.artifacts  # type: ignore[no-any-return]


async def _queue(request: Request) -> Celery:
    return request.app.state.celery  # type: ignore[no-any-return]


async def _predictor(request: Request) -> Predictor:
    return request.app.state.predictor  # type: ignore[no-any-return]


def _tenant(request: Request, session: Annotated[Session, Depends(_session)]) -> str:
    return tenant_of(request, session)


def tenant_of(request: Request, session: Session) -> str:
    """The request's tenant, authenticated, and counted against its rate limit (429 over it)."""
    tenant = authenticate(request, session, request.app.state.settings.require_auth)
    request.app.state.rate_limiter.check(tenant)
    return tenant


async def cached_tenant_of(state: Any, request: Request) -> str:
    """tenant_of through the API process's key cache (service/hot.py: SQL only on a miss, in the
    thread pool, and no connection held after it): for async routes, the prediction fast path and
    POST /v1/models/{id}/tasks. `state`: the app's state (the raw prediction handler has no app
    on its request)."""
    hot = state.hot
    require_auth = state.settings.require_auth
    key = presented_key(request)
    tenant = hot.cached_tenant(key, require_auth)
    if tenant is None:
        tenant = await run_in_threadpool(hot.load_tenant, key, require_auth)
    if state.rate_limiter.per_minute > 0:
        await run_in_threadpool(state.rate_limiter.check, tenant)
    return str(tenant)


# The header, declared once for the routes that read it themselves (async routes).
IDEMPOTENCY_KEY_MAX_LENGTH = 255
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=IDEMPOTENCY_KEY_MAX_LENGTH, description="the same key returns the same object, never a second one"),
]


def _idempotency(
    request: Request,
    session: Annotated[Session, Depends(_session)],
    tenant: Annotated[str, Depends(_tenant)],
    key: IdempotencyKeyHeader = None,
) -> Idempotency:
    settings: Settings = request.app.state.settings
    return Idempotency(
        session, tenant, key, f"{request.method} {request.url.path}",
        settings.idempotency_lease_seconds, settings.idempotency_ttl_hours,
    )


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionDep = Annotated[Session, Depends(_session)]
ArtifactsDep = Annotated[ArtifactStore, Depends(_artifacts)]
QueueDep = Annotated[Celery, Depends(_queue)]
PredictorDep = Annotated[Predictor, Depends(_predictor)]
TenantDep = Annotated[str, Depends(_tenant)]
IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]
