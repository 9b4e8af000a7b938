"""create_app: the FastAPI application, one router per resource."""

from __future__ import annotations

import logging
from typing import Any

import torch
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_response, install_error_handlers
from service.metrics import ApiMetrics
from service.predictor import Predictor
from service.ratelimit import RateLimiter
from service.routes import datasets, health, job_history, jobs, models, tasks
from store.artifacts import artifact_store
from store.db import init_db
from store.queue import make_celery
from store.settings import Settings, get_settings

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
UPLOAD_PATHS = ("/v1/datasets",)  # these take bodies up to max_upload_bytes

TAGS = [
    {"name": "health", "description": "liveness and readiness"},
    {"name": "datasets", "description": "built-in datasets and uploads (npz, or a zip of class folders of images)"},
    {"name": "jobs", "description": "meta-training jobs: submit, follow (events, checkpoints), cancel"},
    {"name": "models", "description": "meta-trained models"},
    {"name": "tasks", "description": "tasks adapted to a support set, and their predictions"},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(settings.torch_threads)
    db_url = settings.sqlalchemy_url  # a property that resolves a path (syscalls): once, not per request
    init_db(db_url)

    app = FastAPI(
        title="fewshot", version=API_VERSION, openapi_tags=TAGS,
        description="Few-shot adaptation as a service. Every /v1 route takes `Authorization: Bearer <API key>` "
                    "once any key exists; errors are `{\"error\": {\"type\", \"code\", \"message\", \"param\"}}`.",
    )
    app.state.settings = settings
    app.state.db_url = db_url
    app.state.artifacts = artifact_store(settings)
    app.state.celery = make_celery(settings)
    app.state.predictor = Predictor(app.state.artifacts, settings.task_cache_size)
    app.state.rate_limiter = RateLimiter(settings.redis_url, settings.rate_limit_per_minute)
    app.state.metrics = ApiMetrics()
    app.state.metrics.watch(db_url, app.state.celery, app.state.predictor)
    install_error_handlers(app)

    app.add_middleware(_body_size_limit, settings=settings)
    app.add_middleware(app.state.metrics.middleware)  # outermost: times every answer, 413s included

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    for router in (health.router, datasets.router, jobs.router, job_history.router, models.router, tasks.router):
        app.include_router(router)
    _mark_binary_uploads(app)
    return app


def _body_size_limit(app: ASGIApp, settings: Settings) -> ASGIApp:
    """`app` behind a 413 for requests that declare a body larger than the route takes (plain ASGI, as metrics)."""

    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
            limit = settings.max_upload_bytes if scope["path"] in UPLOAD_PATHS else settings.max_request_bytes
            if length is not None and length.isdigit() and int(length) > limit:
                response = error_response(
                    413, "invalid_request_error", "payload_too_large",
                    f"the request body has {length.decode()} bytes; at most {limit} are accepted",
                )
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return limited


def _mark_binary_uploads(app: FastAPI) -> None:
    """File fields also say `format: binary` (OpenAPI 3.0 style), so client generators send files."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        for component in schema.get("components", {}).get("schemas", {}).values():
            for prop in component.get("properties", {}).values():
                if prop.get("contentMediaType") == "application/octet-stream":
                    prop["format"] = "binary"
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
